package playbookrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// execution drives one playbook run. Its conductor goroutine decides what
// starts and how the run ends; one follower goroutine per step in flight
// creates the step's run (once) and follows it to its end.
type execution struct {
	e  *Executor
	ev *playbook.Evaluator

	// mu guards run, its steps and the fields below.
	mu        sync.Mutex
	run       *Run
	caseTitle string
	cancelled bool
	cancelBy  string
	doneSeq   int

	// spans are the playbook.step spans of the steps started here and not
	// ended yet, by step id.
	spans map[string]trace.Span

	// Owned by the conductor.
	inflight map[string]bool
	results  chan stepResult
	wake     chan struct{}
}

// stepResult is what a follower reports when its step's run ends.
type stepResult struct {
	id    string
	final *operatorv1.Run
	err   error
	// operation is set for an operation step, whose outputs are the
	// operation's, not one run's.
	operation bool
	outputs   map[string]any
}

func (e *Executor) spawnID(ctx context.Context, id string) {
	r, err := e.db.getRun(ctx, id)
	if err != nil {
		e.cfg.Logger.Error("loading a playbook run to resume", "playbook_run", id, "error", err)
		return
	}
	e.spawn(r)
}

// spawn starts executing a running playbook run, unless it already is or
// the executor is not running (Run resumes it then).
func (e *Executor) spawn(r *Run) { e.spawnIf(r, false) }

// spawnIf is spawn; with unconducted, it also leaves alone a run whose
// execution already ended during this Run (a rescan's finding).
func (e *Executor) spawnIf(r *Run, unconducted bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.base == nil || e.base.Err() != nil || e.active[r.ID] != nil || (unconducted && e.conducted[r.ID]) {
		return
	}
	x := &execution{e: e, run: r, spans: map[string]trace.Span{}, inflight: map[string]bool{}, results: make(chan stepResult, len(r.Steps)+1), wake: make(chan struct{}, 1)}
	for _, st := range r.Steps {
		x.doneSeq = max(x.doneSeq, st.doneSeq)
	}
	if r.stopping == stopCancel {
		x.cancelled = true
		x.cancelBy = "operator"
	}
	e.active[r.ID] = x
	e.wg.Add(1)
	go func(ctx context.Context) {
		defer e.wg.Done()
		defer func() {
			e.mu.Lock()
			delete(e.active, r.ID)
			e.conducted[r.ID] = true
			e.mu.Unlock()
		}()
		x.conduct(ctx)
	}(e.base)
}

func (x *execution) snapshot() *Run {
	x.mu.Lock()
	defer x.mu.Unlock()
	return cloneRun(x.run)
}

// actor is who the playbook's runs are created by: the system actor
// playbook:NAME, a responder. It acts for the operator on whose authority
// the playbook runs (see Run.OnBehalfOf), who therefore cannot approve
// those runs.
func (x *execution) actor() runs.Actor {
	return runs.Actor{Name: "playbook:" + x.run.Playbook, Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER, OnBehalfOf: x.run.OnBehalfOf()}
}

// stepRunKey is the idempotency key of a step's run: one run per step of
// a playbook run, however often the step's creation is retried or resumed.
func stepRunKey(playbookRunID, stepID string) string {
	return "pbrun:" + playbookRunID + ":" + stepID
}

// rollbackRunKey is the idempotency key of the rollback run of one target
// of a step.
func rollbackRunKey(playbookRunID, stepID string, index int) string {
	return fmt.Sprintf("pbrun:%s:%s:rollback:%d", playbookRunID, stepID, index)
}

func (x *execution) conduct(ctx context.Context) {
	e := x.e
	// Everything the run does is in its stored trace.
	ctx = x.run.traceContext(ctx)
	defer x.endOpenSpans()
	pb, err := playbook.Parse(x.run.sourceName, x.run.source)
	var cat Catalog
	if err == nil {
		cat, err = FleetCatalog(ctx, e.cfg.Actions, e.cfg.KnownActions)
	}
	if err == nil {
		x.ev, err = playbook.NewEvaluator(pb, cat)
	}
	if err != nil {
		if ctx.Err() == nil {
			x.abandon(ctx, "the playbook can no longer be evaluated against the fleet's actions: "+err.Error())
		}
		return
	}
	if c, err := e.cfg.Cases.Get(ctx, x.run.CaseID); err == nil {
		x.caseTitle = c.Title
	}
	for _, st := range x.run.Steps {
		if st.Status.InFlight() {
			x.startFollower(ctx, st)
		}
	}
	if x.isCancelled() {
		x.cancelInFlight(ctx)
	}
	for {
		if ctx.Err() != nil {
			return
		}
		x.launchReady(ctx)
		if len(x.inflight) == 0 {
			x.finish(ctx)
			return
		}
		select {
		case res := <-x.results:
			delete(x.inflight, res.id)
			x.stepEnded(ctx, res)
		case <-x.wake:
			x.cancelInFlight(ctx)
		case <-ctx.Done():
			return
		}
	}
}

func (x *execution) isCancelled() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.cancelled
}

// launchReady starts every pending step whose needs have ended, until no
// more can start. Steps that end at once (skipped, unresolvable) may make
// others ready.
func (x *execution) launchReady(ctx context.Context) {
	for ctx.Err() == nil {
		var ready *Step
		x.mu.Lock()
		if x.run.stopping == stopNone {
			for _, st := range x.run.Steps {
				if st.Status == StepPending && x.needsEnded(st) {
					ready = st
					break
				}
			}
		}
		x.mu.Unlock()
		if ready == nil {
			return
		}
		x.launch(ctx, ready)
	}
}

// needsEnded reports whether every step st needs has ended. x.mu is held.
func (x *execution) needsEnded(st *Step) bool {
	for _, n := range st.Needs {
		if dep := x.run.Step(n); dep == nil || !dep.Status.Ended() {
			return false
		}
	}
	return true
}

// scope is what expressions see now. x.mu is held.
func (x *execution) scope() playbook.Scope {
	sc := playbook.Scope{Inputs: x.run.Inputs, Case: playbook.Case{ID: x.run.CaseID, Title: x.caseTitle}, Steps: map[string]playbook.StepResult{}}
	if x.run.Finding != nil {
		sc.Finding = x.run.Finding.Map()
	}
	for _, st := range x.run.Steps {
		var s playbook.StepStatus
		switch st.Status {
		case StepSucceeded:
			s = playbook.StatusSucceeded
		case StepSkipped:
			s = playbook.StatusSkipped
		case StepFailed, StepCancelled:
			s = playbook.StatusFailed
		default:
			continue
		}
		sc.Steps[st.ID] = playbook.StepResult{Status: s, Outputs: st.Outputs}
	}
	return sc
}

func (x *execution) launch(ctx context.Context, st *Step) {
	x.beginStep(ctx, st.ID)
	x.mu.Lock()
	rs, err := x.ev.Resolve(st.ID, x.scope())
	x.mu.Unlock()
	switch {
	case err != nil:
		x.endStep(ctx, st, StepFailed, "resolving the step: "+err.Error(), nil)
		return
	case rs.Skip:
		x.endStep(ctx, st, StepSkipped, "its when condition is false", nil)
		return
	}
	x.mu.Lock()
	st.Resolved, st.Status, st.StartedAt = rs, StepSubmitting, x.e.cfg.Clock()
	st.token = stepRunKey(x.run.ID, st.ID)
	c := cloneStep(st)
	x.mu.Unlock()
	// The run's idempotency key is stored before the run is created: that
	// is what keeps a restarted controller from creating the run a second
	// time.
	if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil {
		if ctx.Err() != nil {
			return
		}
		x.endStep(ctx, st, StepFailed, "recording the step before creating its run: "+err.Error(), nil)
		return
	}
	x.publishStep(c)
	x.startFollower(ctx, st)
}

func (x *execution) startFollower(ctx context.Context, st *Step) {
	x.mu.Lock()
	id, token, runID, rs := st.ID, st.token, st.RunID, st.Resolved
	x.mu.Unlock()
	x.inflight[id] = true
	ctx = x.beginStep(ctx, id)
	// Followers are waited for like conductors, so a stopping controller
	// closes its store only after they have let go of it.
	x.e.wg.Add(1)
	go func() {
		defer x.e.wg.Done()
		x.follow(ctx, id, token, runID, rs)
	}()
}

// stepSpec is the run spec of a resolved step: reason is the run's
// reason text, key its idempotency key.
func (x *execution) stepSpec(rs *playbook.ResolvedStep, reason, key string) (runs.Spec, error) {
	params, err := rs.ParamsJSON()
	if err != nil {
		return runs.Spec{}, err
	}
	spec := runs.Spec{Action: rs.Action, Selector: rs.Selector, ParamsJSON: params, Reason: reason, CaseID: x.run.CaseID,
		Accounts: rs.Accounts, Regions: strings.Join(rs.Regions, ","), RequireApproval: rs.ApprovalRequired, Deadline: runs.DefaultDeadline,
		IdempotencyKey: key}
	if spec.Selector == "" && spec.Accounts != "" {
		// Account-targeted tasks go to workers.
		spec.Selector = "role=worker"
	}
	if rs.Timeout > 0 {
		spec.Deadline = rs.Timeout
	}
	return spec, nil
}

// stepReason is the reason text of a step's run: it names the playbook,
// the step and the playbook run.
func (x *execution) stepReason(stepID string) string {
	return fmt.Sprintf("playbook %s step %s [%s]", x.run.Playbook, stepID, x.run.ID)
}

// follow creates the step's run unless it exists, and follows it to its
// end. On a controller shutdown it returns without reporting; the step
// stays in flight and is followed again on resume.
func (x *execution) follow(ctx context.Context, stepID, token, runID string, rs *playbook.ResolvedStep) {
	res := stepResult{id: stepID}
	defer func() {
		if ctx.Err() == nil {
			x.results <- res
		}
	}()
	if rs.Operation != "" {
		res.operation = true
		res.outputs, res.err = x.operate(ctx, stepID, token, rs)
		return
	}
	if runID == "" {
		spec, err := x.stepSpec(rs, x.stepReason(stepID), token)
		if err != nil {
			res.err = err
			return
		}
		id, runStatus, err := x.e.createOnce(ctx, x.actor(), spec)
		if err != nil {
			res.err = err
			return
		}
		runID = id
		x.stepRunCreated(ctx, stepID, runID, runStatus)
		if x.isCancelled() {
			x.cancelRun(ctx, runID)
		}
	} else {
		x.recordStarted(ctx, stepID)
	}
	res.final, res.err = x.e.followRun(ctx, runID,
		func(t *operatorv1.Task) {
			x.e.hub.publish(Event{Kind: EventTask, StepID: stepID, Task: t, runID: x.run.ID})
		},
		func(h *operatorv1.Run) { x.stepRunStatus(ctx, stepID, h.GetStatus()) })
}

func (x *execution) stepRunCreated(ctx context.Context, stepID, runID string, rs operatorv1.RunStatus) {
	x.stepRunSpan(stepID, runID)
	x.mu.Lock()
	st := x.run.Step(stepID)
	st.RunID = runID
	st.Status = StepRunning
	if rs == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
		st.Status = StepAwaitingApproval
	}
	c := cloneStep(st)
	x.mu.Unlock()
	if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil && ctx.Err() == nil {
		// The run exists and its idempotency key finds it again on resume.
		x.e.cfg.Logger.Error("recording a step's run", "playbook_run", x.run.ID, "step", stepID, "run", runID, "error", err)
	}
	x.recordStarted(ctx, stepID)
	x.publishStep(c)
}

// recordStarted records the step's start (and any approval wait) on the
// case timeline; the entry keys make it idempotent.
func (x *execution) recordStarted(ctx context.Context, stepID string) {
	x.mu.Lock()
	st := cloneStep(x.run.Step(stepID))
	x.mu.Unlock()
	target := st.Resolved.Selector
	switch {
	case st.Resolved.Accounts != "":
		target = "accounts " + st.Resolved.Accounts
	case st.Resolved.Operation != "":
		target = "the controller"
	}
	x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: x.stepKey(stepID, "started"), At: st.StartedAt, Kind: cases.KindStep,
		Phase: st.Phase, Status: cases.EntryStarted, Actor: x.actor().Name, PlaybookRunID: x.run.ID, StepID: stepID, RunID: st.RunID,
		Summary: fmt.Sprintf("step %s started: %s on %s (run %s)", stepID, st.Action, target, st.RunID)})
	if st.Status == StepAwaitingApproval {
		x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: x.stepKey(stepID, "awaiting"), At: st.StartedAt, Kind: cases.KindStep,
			Phase: st.Phase, Status: string(StepAwaitingApproval), Actor: x.actor().Name, PlaybookRunID: x.run.ID, StepID: stepID,
			RunID: st.RunID, Summary: fmt.Sprintf("step %s awaits approval by an operator other than %s: firebreak approve %s", stepID, x.run.OnBehalfOf(), st.RunID)})
	}
}

func (x *execution) stepKey(stepID, what string) string {
	return "pbr/" + x.run.ID + "/step/" + stepID + "/" + what
}

// stepRunStatus follows the step run's header: awaiting approval or
// running.
func (x *execution) stepRunStatus(ctx context.Context, stepID string, rs operatorv1.RunStatus) {
	var want StepStatus
	switch rs {
	case operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL:
		want = StepAwaitingApproval
	case operatorv1.RunStatus_RUN_STATUS_RUNNING:
		want = StepRunning
	default:
		return
	}
	x.mu.Lock()
	st := x.run.Step(stepID)
	if st.Status == want || st.Status.Ended() {
		x.mu.Unlock()
		return
	}
	st.Status = want
	c := cloneStep(st)
	x.mu.Unlock()
	if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil && ctx.Err() == nil {
		x.e.cfg.Logger.Error("saving a step", "playbook_run", x.run.ID, "step", stepID, "error", err)
	}
	if want == StepAwaitingApproval {
		x.recordStarted(ctx, stepID)
	}
	x.publishStep(c)
}

func (x *execution) publishStep(st *Step) {
	x.e.hub.publish(Event{Kind: EventStep, Step: st, runID: x.run.ID})
}

// stepEnded turns a follower's report into the step's outcome.
func (x *execution) stepEnded(ctx context.Context, res stepResult) {
	x.mu.Lock()
	st := x.run.Step(res.id)
	cancelled := x.cancelled
	x.mu.Unlock()
	if res.operation {
		x.mu.Lock()
		st.Outputs = res.outputs
		if st.Outputs == nil {
			st.Outputs = map[string]any{}
		}
		x.mu.Unlock()
	}
	if res.err != nil {
		x.endStep(ctx, st, StepFailed, strings.TrimPrefix(res.err.Error(), errStepFailed.Error()+": "), nil)
		return
	}
	if res.operation {
		x.endStep(ctx, st, StepSucceeded, "", nil)
		return
	}
	f := res.final
	switch f.GetStatus() {
	case operatorv1.RunStatus_RUN_STATUS_SUCCEEDED:
		x.endStep(ctx, st, StepSucceeded, "", f)
	case operatorv1.RunStatus_RUN_STATUS_CANCELLED:
		if cancelled {
			x.endStep(ctx, st, StepCancelled, "the playbook run was cancelled", f)
		} else {
			x.endStep(ctx, st, StepFailed, "the step's run was cancelled: "+failureSummary(f), f)
		}
	case operatorv1.RunStatus_RUN_STATUS_REJECTED:
		x.endStep(ctx, st, StepFailed, "the step's run was rejected: "+rejection(f), f)
	default:
		x.endStep(ctx, st, StepFailed, failureSummary(f), f)
	}
}

func rejection(r *operatorv1.Run) string {
	for _, a := range r.GetApprovals() {
		if !a.GetApproved() {
			s := "rejected by " + a.GetOperator()
			if a.GetComment() != "" {
				s += ": " + a.GetComment()
			}
			return s
		}
	}
	return "rejected"
}

// failureSummary says which targets did not succeed, and why.
func failureSummary(r *operatorv1.Run) string {
	var bad []string
	for _, t := range r.GetTasks() {
		if t.GetStatus() == agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			continue
		}
		name := t.GetHostname()
		if t.GetAccount() != "" {
			name += " (" + t.GetAccount() + "/" + t.GetRegion() + ")"
		}
		bad = append(bad, fmt.Sprintf("%s: %s %s", name, taskStatus(t.GetStatus()), t.GetError()))
	}
	if len(bad) == 0 {
		return "the run ended " + runStatus(r.GetStatus())
	}
	s := fmt.Sprintf("%d of %d targets did not succeed: %s", len(bad), len(r.GetTasks()), strings.Join(bad[:min(len(bad), 3)], "; "))
	if len(s) > 1024 {
		s = s[:1024] + "…"
	}
	return s
}

func taskStatus(s agentv1.TaskStatus) string {
	return apiview.EnumName(s)
}

func runStatus(s operatorv1.RunStatus) string {
	return apiview.EnumName(s)
}

// endStep records a step's outcome and applies its failure policy.
func (x *execution) endStep(ctx context.Context, st *Step, s StepStatus, why string, final *operatorv1.Run) {
	now := x.e.cfg.Clock()
	x.mu.Lock()
	st.Status, st.Error, st.FinishedAt = s, why, now
	if final != nil {
		st.Targets = targetsOf(final)
		st.Outputs = outputsOf(st.Targets)
		if final.GetFinishedAt() != nil {
			st.FinishedAt = final.GetFinishedAt().AsTime()
		}
	}
	if st.StartedAt.IsZero() {
		st.StartedAt = st.FinishedAt
	}
	x.doneSeq++
	st.doneSeq = x.doneSeq
	runChanged := false
	if s == StepFailed && !x.cancelled {
		switch st.OnFailure {
		case playbook.OnFailureRollback:
			runChanged = x.run.stopping != stopRollback
			x.run.stopping = stopRollback
		case playbook.OnFailureStop:
			if x.run.stopping == stopNone {
				x.run.stopping, runChanged = stopFailed, true
			}
		}
		if runChanged && x.run.Error == "" {
			x.run.Error = fmt.Sprintf("step %s failed: %s", st.ID, why)
		}
	}
	c, h := cloneStep(st), header(x.run)
	x.mu.Unlock()
	ctx = x.stepContext(ctx, c.ID)
	defer x.endStepSpan(c.ID, s, why)
	if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil && ctx.Err() == nil {
		x.e.cfg.Logger.Error("saving a step's outcome", "playbook_run", x.run.ID, "step", st.ID, "error", err)
	}
	if runChanged {
		if err := x.e.db.saveRun(ctx, h); err != nil && ctx.Err() == nil {
			x.e.cfg.Logger.Error("saving a playbook run", "playbook_run", x.run.ID, "error", err)
		}
	}
	x.recordEnd(ctx, c, final)
	x.publishStep(c)
	if runChanged {
		x.e.hub.publish(Event{Kind: EventRun, Run: h})
	}
}

// recordEnd records a step's outcome, its run's approvals and its evidence
// on the case timeline.
func (x *execution) recordEnd(ctx context.Context, st *Step, final *operatorv1.Run) {
	ok := 0
	for _, t := range st.Targets {
		if t.Status == "succeeded" {
			ok++
		}
	}
	summary := fmt.Sprintf("step %s (%s) %s", st.ID, st.Action, st.Status)
	if final != nil {
		summary += fmt.Sprintf(" on %d of %d targets", ok, len(st.Targets))
	}
	if st.Error != "" {
		summary += ": " + st.Error
	}
	detail, _ := json.Marshal(map[string]any{"action": st.Action, "outputs": st.Outputs})
	x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: x.stepKey(st.ID, "end"), At: st.FinishedAt, Kind: cases.KindStep,
		Phase: st.Phase, Status: string(st.Status), Actor: x.actor().Name, PlaybookRunID: x.run.ID, StepID: st.ID, RunID: st.RunID,
		EvidenceIDs: st.EvidenceIDs(), Summary: summary, Detail: detail})
	if final == nil {
		return
	}
	x.recordApprovals(ctx, st.ID, st.Phase, final, func(i int) string { return fmt.Sprintf("approval/%d", i) })
	if ev := st.EvidenceIDs(); len(ev) > 0 {
		x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: x.stepKey(st.ID, "evidence"), At: st.FinishedAt, Kind: cases.KindEvidence,
			Phase: st.Phase, Status: "stored", Actor: x.actor().Name, PlaybookRunID: x.run.ID, StepID: st.ID, RunID: st.RunID,
			EvidenceIDs: ev, Summary: fmt.Sprintf("step %s stored %d evidence item(s): %s", st.ID, len(ev), strings.Join(ev, ", "))})
	}
}

// recordApprovals records the approvals of a step's run on the case
// timeline; key names each within the step.
func (x *execution) recordApprovals(ctx context.Context, stepID string, phase playbook.Phase, final *operatorv1.Run, key func(i int) string) {
	for i, a := range final.GetApprovals() {
		verb := "approved"
		if !a.GetApproved() {
			verb = "rejected"
		}
		d, _ := json.Marshal(map[string]string{"comment": a.GetComment()})
		x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: x.stepKey(stepID, key(i)), At: a.GetAt().AsTime(),
			Kind: cases.KindApproval, Phase: phase, Status: verb, Actor: a.GetOperator(), PlaybookRunID: x.run.ID, StepID: stepID,
			RunID: final.GetId(), Detail: d, Summary: fmt.Sprintf("%s %s run %s of step %s", a.GetOperator(), verb, final.GetId(), stepID)})
	}
}

func targetsOf(r *operatorv1.Run) []*TargetResult {
	out := make([]*TargetResult, 0, len(r.GetTasks()))
	for _, t := range r.GetTasks() {
		out = append(out, &TargetResult{TaskID: t.GetId(), AgentID: t.GetAgentId(), Hostname: t.GetHostname(), Account: t.GetAccount(),
			Region: t.GetRegion(), Status: taskStatus(t.GetStatus()), Error: t.GetError(), Output: json.RawMessage(t.GetOutputJson()),
			EvidenceIDs: t.GetEvidenceIds()})
	}
	return out
}

// objectOf decodes a task output as an object: non-object outputs are
// wrapped as {"value": …}, and no output is {}.
func objectOf(b []byte) map[string]any {
	if len(b) == 0 {
		return map[string]any{}
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return map[string]any{}
	}
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{"value": v}
}

// outputsOf is a step's outputs: the single target's output object, or
// {"targets": [...]} for several targets (or none).
func outputsOf(ts []*TargetResult) map[string]any {
	if len(ts) == 1 {
		return objectOf(ts[0].Output)
	}
	list := make([]any, len(ts))
	for i, t := range ts {
		list[i] = map[string]any{"agent_id": t.AgentID, "hostname": t.Hostname, "account": t.Account, "region": t.Region,
			"status": t.Status, "error": t.Error, "output": objectOf(t.Output)}
	}
	return map[string]any{"targets": list}
}

// requestCancel asks the conductor to stop the playbook run.
func (x *execution) requestCancel(ctx context.Context, operator, reason string) error {
	x.mu.Lock()
	switch {
	case x.run.Status.Final():
		x.mu.Unlock()
		return fmt.Errorf("playbook run %s is %s: %w", x.run.ID, x.run.Status, ErrEnded)
	case x.run.stopping == stopRollback:
		x.mu.Unlock()
		return fmt.Errorf("playbook run %s is rolling back; cancel its rollback runs one by one with firebreak cancel RUN_ID if you must", x.run.ID)
	case x.cancelled:
		x.mu.Unlock()
		return nil
	}
	x.cancelled, x.cancelBy = true, operator
	x.run.stopping = stopCancel
	x.run.Error = "cancelled by " + operator
	if reason != "" {
		x.run.Error += ": " + reason
	}
	h := header(x.run)
	x.mu.Unlock()
	if err := x.e.db.saveRun(ctx, h); err != nil {
		return err
	}
	x.e.cfg.Audit(ctx, operator, "playbook.cancel", h.ID, map[string]string{"reason": reason})
	x.e.hub.publish(Event{Kind: EventRun, Run: h})
	select {
	case x.wake <- struct{}{}:
	default:
	}
	return nil
}

// cancelInFlight cancels the runs of the steps in flight. Steps whose run
// is still being created cancel it themselves once it exists.
func (x *execution) cancelInFlight(ctx context.Context) {
	x.mu.Lock()
	var runIDs []string
	for _, st := range x.run.Steps {
		if st.Status.InFlight() && st.RunID != "" {
			runIDs = append(runIDs, st.RunID)
		}
	}
	x.mu.Unlock()
	for _, id := range runIDs {
		x.cancelRun(ctx, id)
	}
}

func (x *execution) cancelRun(ctx context.Context, runID string) {
	x.mu.Lock()
	by, why := x.cancelBy, x.run.Error
	x.mu.Unlock()
	_, err := x.e.cfg.Watcher.Cancel(ctx, runID, by, why)
	// A run that has ended, or was never approved, needs no cancelling.
	ended := errors.Is(err, dispatch.ErrRunNotRunning) || errors.Is(err, dispatch.ErrNotAwaiting)
	if err != nil && !ended && ctx.Err() == nil {
		x.e.cfg.Logger.Warn("cancelling a step's run", "playbook_run", x.run.ID, "run", runID, "error", err)
	}
}

// finish ends the playbook run once nothing is in flight: it cancels the
// steps that never started, rolls back when a rollback step failed, and
// records the outcome.
func (x *execution) finish(ctx context.Context) {
	x.mu.Lock()
	stopping, why := x.run.stopping, x.run.Error
	var cancelled []*Step
	for _, st := range x.run.Steps {
		if st.Status == StepPending {
			st.Status, st.Error = StepCancelled, "not started: "+why
			cancelled = append(cancelled, cloneStep(st))
		}
	}
	x.mu.Unlock()
	for _, c := range cancelled {
		if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil && ctx.Err() == nil {
			x.e.cfg.Logger.Error("saving a cancelled step", "playbook_run", x.run.ID, "step", c.ID, "error", err)
		}
		x.publishStep(c)
	}
	var final Status
	switch stopping {
	case stopRollback:
		final = x.rollback(ctx)
		if ctx.Err() != nil {
			return
		}
	case stopFailed:
		final = StatusFailed
	case stopCancel:
		final = StatusCancelled
	default:
		final = StatusSucceeded
	}
	x.mu.Lock()
	x.run.Status, x.run.FinishedAt = final, x.e.cfg.Clock()
	r := cloneRun(x.run)
	x.mu.Unlock()
	if err := x.e.db.saveRun(ctx, r); err != nil {
		if ctx.Err() == nil {
			x.e.cfg.Logger.Error("saving a playbook run's outcome", "playbook_run", r.ID, "error", err)
		}
		return
	}
	x.e.recordEnd(ctx, r)
	x.e.cfg.Audit(ctx, "playbook:"+r.Playbook, "playbook.end", r.ID, map[string]string{"status": string(r.Status), "error": r.Error})
	x.e.hub.finish(r)
}

// abandon ends a playbook run that cannot be evaluated any more.
func (x *execution) abandon(ctx context.Context, why string) {
	x.mu.Lock()
	var flying []string
	for _, st := range x.run.Steps {
		if st.Status.InFlight() && st.RunID != "" {
			flying = append(flying, st.RunID)
		}
	}
	if len(flying) > 0 {
		why += fmt.Sprintf("; the runs in flight (%s) continue on their own", strings.Join(flying, ", "))
	}
	x.run.Status, x.run.FinishedAt, x.run.Error = StatusFailed, x.e.cfg.Clock(), why
	r := cloneRun(x.run)
	x.mu.Unlock()
	x.e.cancelPendingSteps(ctx, r, why)
	if err := x.e.db.saveRun(ctx, r); err != nil {
		x.e.cfg.Logger.Error("saving an abandoned playbook run", "playbook_run", r.ID, "error", err)
		return
	}
	x.e.recordEnd(ctx, r)
	x.e.hub.finish(r)
}

// rollback undoes, newest first, every ended step that has a rollback and
// a target that succeeded. It returns the playbook run's final status, or
// "" when ctx ended first.
func (x *execution) rollback(ctx context.Context) Status {
	x.mu.Lock()
	var todo []*Step
	for _, st := range x.run.Steps {
		if !st.HasRollback || (st.Status != StepSucceeded && st.Status != StepFailed) {
			continue
		}
		if slices.ContainsFunc(st.Targets, func(t *TargetResult) bool { return t.Status == "succeeded" }) {
			todo = append(todo, st)
		}
	}
	x.mu.Unlock()
	if len(todo) == 0 {
		x.mu.Lock()
		x.run.Error += "; nothing to roll back"
		x.mu.Unlock()
		return StatusFailed
	}
	slices.SortFunc(todo, func(a, b *Step) int { return b.doneSeq - a.doneSeq })
	final := StatusRolledBack
	for _, st := range todo {
		x.rollbackStep(ctx, st)
		if ctx.Err() != nil {
			return ""
		}
		x.mu.Lock()
		if st.Rollback.Status != StepSucceeded {
			final = StatusRollbackFailed
		}
		x.mu.Unlock()
	}
	return final
}

// rollbackStep runs a step's rollback: one run per target of the step that
// succeeded, on that target, with that target's output as the step's
// outputs. A rollback already under way resumes where it was.
func (x *execution) rollbackStep(ctx context.Context, st *Step) {
	x.mu.Lock()
	if st.Rollback != nil && st.Rollback.Status.Ended() {
		x.mu.Unlock()
		return
	}
	if st.Rollback == nil {
		rb := &Rollback{Status: StepRunning, StartedAt: x.e.cfg.Clock()}
		for i, t := range st.Targets {
			if t.Status == "succeeded" {
				rb.Targets = append(rb.Targets, &RollbackTarget{Index: i, Status: StepPending, Token: rollbackRunKey(x.run.ID, st.ID, i)})
			}
		}
		st.Rollback = rb
	}
	c := cloneStep(st)
	x.mu.Unlock()
	ctx, span := x.startRollbackSpan(ctx, st)
	defer span.End()
	x.saveStep(ctx, c)
	x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: "pbr/" + x.run.ID + "/rollback/" + st.ID + "/started", At: c.Rollback.StartedAt,
		Kind: cases.KindRollback, Phase: st.Phase, Status: cases.EntryStarted, Actor: x.actor().Name, PlaybookRunID: x.run.ID, StepID: st.ID,
		Summary: fmt.Sprintf("rollback of step %s started on %d target(s)", st.ID, len(c.Rollback.Targets))})
	x.publishStep(c)

	for i := range c.Rollback.Targets {
		x.mu.Lock()
		t := st.Rollback.Targets[i]
		ended, runID, token, index := t.Status.Ended(), t.RunID, t.Token, t.Index
		x.mu.Unlock()
		if ended {
			continue
		}
		if runID == "" {
			spec, err := x.rollbackSpec(st, index, token)
			if err == nil {
				x.mu.Lock()
				st.Rollback.Action = spec.Action
				x.mu.Unlock()
				runID, _, err = x.e.createOnce(ctx, x.actor(), spec)
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				x.rollbackTargetEnded(ctx, st, i, StepFailed, strings.TrimPrefix(err.Error(), errStepFailed.Error()+": "), "")
				continue
			}
			x.mu.Lock()
			t.RunID, t.Status = runID, StepRunning
			c := cloneStep(st)
			x.mu.Unlock()
			x.saveStep(ctx, c)
			x.publishStep(c)
		}
		// Every rollback run is named on the timeline, so the case's
		// report shows it as the rollback of its step.
		x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: fmt.Sprintf("pbr/%s/rollback/%s/target/%d", x.run.ID, st.ID, index),
			Kind: cases.KindRollback, Phase: st.Phase, Status: "target_started", Actor: x.actor().Name, PlaybookRunID: x.run.ID,
			StepID: st.ID, RunID: runID, Summary: fmt.Sprintf("rollback of step %s on target %d: run %s", st.ID, index, runID)})
		final, err := x.e.followRun(ctx, runID, func(task *operatorv1.Task) {
			x.e.hub.publish(Event{Kind: EventTask, StepID: st.ID, Rollback: true, Task: task, runID: x.run.ID})
		}, nil)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			x.rollbackTargetEnded(ctx, st, i, StepFailed, err.Error(), runID)
		case final.GetStatus() == operatorv1.RunStatus_RUN_STATUS_SUCCEEDED:
			x.rollbackTargetEnded(ctx, st, i, StepSucceeded, "", runID)
		default:
			x.rollbackTargetEnded(ctx, st, i, StepFailed, failureSummary(final), runID)
		}
	}

	x.mu.Lock()
	rb := st.Rollback
	rb.Status = StepSucceeded
	var errs []string
	for _, t := range rb.Targets {
		if t.Status != StepSucceeded {
			rb.Status = StepFailed
			errs = append(errs, fmt.Sprintf("target %d: %s", t.Index, t.Error))
		}
	}
	rb.Error, rb.FinishedAt = strings.Join(errs, "; "), x.e.cfg.Clock()
	c = cloneStep(st)
	x.mu.Unlock()
	span.SetAttributes(attrStatus.String(string(c.Rollback.Status)))
	if c.Rollback.Status != StepSucceeded {
		span.SetStatus(otelcodes.Error, c.Rollback.Error)
	}
	x.saveStep(ctx, c)
	summary := fmt.Sprintf("rollback of step %s (%s) %s", st.ID, c.Rollback.Action, c.Rollback.Status)
	if c.Rollback.Error != "" {
		summary += ": " + c.Rollback.Error
	}
	var runIDs []string
	for _, t := range c.Rollback.Targets {
		if t.RunID != "" {
			runIDs = append(runIDs, t.RunID)
		}
	}
	detail, _ := json.Marshal(map[string]any{"runs": runIDs})
	x.e.record(ctx, &cases.Entry{CaseID: x.run.CaseID, Key: "pbr/" + x.run.ID + "/rollback/" + st.ID + "/end", At: c.Rollback.FinishedAt,
		Kind: cases.KindRollback, Phase: st.Phase, Status: string(c.Rollback.Status), Actor: x.actor().Name, PlaybookRunID: x.run.ID,
		StepID: st.ID, RunID: strings.Join(runIDs[:min(len(runIDs), 1)], ""), Summary: summary, Detail: detail})
	x.publishStep(c)
}

func (x *execution) rollbackTargetEnded(ctx context.Context, st *Step, i int, s StepStatus, why, runID string) {
	x.mu.Lock()
	t := st.Rollback.Targets[i]
	t.Status, t.Error = s, why
	if runID != "" {
		t.RunID = runID
	}
	c := cloneStep(st)
	x.mu.Unlock()
	x.saveStep(ctx, c)
	x.publishStep(c)
}

func (x *execution) saveStep(ctx context.Context, c *Step) {
	if err := x.e.db.saveStep(ctx, x.run.ID, c); err != nil && ctx.Err() == nil {
		x.e.cfg.Logger.Error("saving a step", "playbook_run", x.run.ID, "step", c.ID, "error", err)
	}
}

// rollbackSpec resolves the rollback of one target of a step: the step's
// outputs are that target's own output, and the run goes to that target
// only. key is the rollback run's idempotency key.
func (x *execution) rollbackSpec(st *Step, index int, key string) (runs.Spec, error) {
	x.mu.Lock()
	sc := x.scope()
	target := *st.Targets[index]
	accounts := st.Resolved != nil && st.Resolved.Accounts != ""
	selector := ""
	if st.Resolved != nil {
		selector = st.Resolved.Selector
	}
	if len(st.Targets) > 1 {
		res := sc.Steps[st.ID]
		res.Outputs = objectOf(target.Output)
		sc.Steps[st.ID] = res
	}
	x.mu.Unlock()
	rs, err := x.ev.ResolveRollback(st.ID, sc)
	if err != nil {
		return runs.Spec{}, fmt.Errorf("%w: resolving the rollback: %v", errStepFailed, err)
	}
	if accounts {
		rs.Selector, rs.Accounts, rs.Regions = selector, target.Account, nil
		if target.Region != "" {
			rs.Regions = []string{target.Region}
		}
	} else {
		rs.Selector, rs.Accounts, rs.Regions = "id="+target.AgentID, "", nil
	}
	return x.stepSpec(rs, fmt.Sprintf("playbook %s rollback of step %s target %d [%s]", x.run.Playbook, st.ID, index, x.run.ID), key)
}

// createOnce has the planner create a run with the spec's idempotency
// key, or return the run an earlier attempt created with it, retrying
// failures of the store. A refusal, which retrying cannot cure, is
// returned wrapping errStepFailed.
func (e *Executor) createOnce(ctx context.Context, actor runs.Actor, spec runs.Spec) (string, operatorv1.RunStatus, error) {
	wait := e.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		plan, err := e.cfg.Planner.Create(ctx, actor, spec)
		if err == nil {
			return plan.Run.ID, plan.Run.Status, nil
		}
		if ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		var refusal *runs.Error
		if errors.As(err, &refusal) || attempt >= 5 {
			return "", 0, fmt.Errorf("%w: %s", errStepFailed, err.Error())
		}
		e.cfg.Logger.Warn("creating a step's run failed; retrying", "idempotency_key", spec.IdempotencyKey, "error", err, "in", wait)
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// followRun follows a run to its end and returns it as it ended. onTask
// gets task updates and onHeader run header changes (either may be nil).
func (e *Executor) followRun(ctx context.Context, runID string, onTask func(*operatorv1.Task), onHeader func(*operatorv1.Run)) (*operatorv1.Run, error) {
	for {
		snap, sub, err := e.cfg.Watcher.Watch(ctx, runID)
		if err != nil {
			return nil, err
		}
		if sub == nil {
			// Not active: it ended. Wait for the dispatcher's writes, then
			// read the stored run.
			if err := e.cfg.Watcher.Sync(ctx); err != nil {
				return nil, err
			}
			r, tasks, err := e.cfg.RunStore.GetRun(ctx, runID)
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("%w: run %s: %w", errStepFailed, runID, errRunDisappears)
			}
			if err != nil {
				return nil, err
			}
			aps, err := e.cfg.RunStore.ListApprovals(ctx, runID)
			if err != nil {
				return nil, err
			}
			p := storeview.Run(r, tasks, aps)
			if r.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING || r.Status == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Second):
				}
				continue
			}
			return p, nil
		}
		if onHeader != nil {
			onHeader(runView(snap))
		}
		final, err := drain(ctx, sub, onTask, onHeader)
		e.cfg.Watcher.Unwatch(sub)
		if err != nil || final != nil {
			return final, err
		}
	}
}

// drain reads a run subscription to its done message; nil, nil means the
// subscription ended without one (it was ended by Unwatch).
func drain(ctx context.Context, sub *dispatch.Subscription, onTask func(*operatorv1.Task), onHeader func(*operatorv1.Run)) (*operatorv1.Run, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m, ok := <-sub.C:
			if !ok {
				return nil, nil
			}
			switch m.Kind {
			case dispatch.EventSnapshot:
				// Updates were coalesced into a fresh snapshot.
				snap := runView(m.Run)
				if onHeader != nil {
					onHeader(snap)
				}
				for _, t := range snap.GetTasks() {
					if onTask != nil {
						onTask(t)
					}
				}
			case dispatch.EventTask:
				if onTask != nil {
					onTask(storeview.Task(m.Task))
				}
			case dispatch.EventRun:
				if onHeader != nil {
					onHeader(runView(m.Run))
				}
			case dispatch.EventDone:
				return runView(m.Run), nil
			}
		}
	}
}
