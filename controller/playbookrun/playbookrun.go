// Package playbookrun executes playbooks. A playbook run walks a
// playbook's graph of steps: each step is resolved (its when condition,
// targets and parameters, from the inputs, the finding, the case and the
// outputs of earlier steps) and becomes one ordinary run, created by the
// run planner (controller/runs) as the system actor playbook:NAME on behalf
// of the operator or rule the playbook acts for, and followed through the
// dispatcher.
//
// Semantics:
//
//   - A step starts once every step it needs has ended, whatever their
//     outcome; a when condition can read steps.<id>.status to depend on
//     one. Steps whose needs are met run at the same time.
//   - A step's outputs (steps.<id>.outputs) are the JSON output object of
//     its run's single task. A run over several targets gives
//     {"targets": [{"agent_id", "hostname", "account", "region", "status",
//     "error", "output"}, …]} in task order instead.
//   - approval: required creates the step's run awaiting a second
//     operator's approval (firebreak approve RUN_ID); the step waits.
//   - timeout is the deadline of the step's run (counted from approval):
//     targets not done by then are marked offline or timed out.
//   - A step fails when it cannot be resolved, when no agent matches its
//     targets, or when its run ends with a target that did not succeed
//     (rejected, cancelled by someone else, failed, offline, timed out).
//     on_failure then says what happens: continue goes on; stop starts no
//     further step and, once the steps in flight end, ends the playbook run
//     failed; rollback does the same and then runs the rollback of every
//     ended step that has one, newest first — the failed step included —
//     for each of the step's targets that succeeded, with that target's own
//     output as steps.<id>.outputs, on that same target.
//   - Every change lands on the case's timeline with the step's phase.
//
// Exactly once: before a step's run is created, the executor records the
// run's idempotency key (pbrun:PLAYBOOK_RUN:STEP, unique to the playbook
// run, step and, for a rollback, target) and creates the run with it; after
// a controller restart it asks the planner again with that key, which
// returns the run already created instead of creating another, so no step
// runs twice. The run's reason is descriptive text, never a key.
package playbookrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
)

// RunCreator creates runs; *runs.Planner satisfies it.
type RunCreator interface {
	// Create plans and creates a run for an actor; see runs.Planner.
	Create(ctx context.Context, actor runs.Actor, spec runs.Spec) (*runs.Plan, error)
}

// RunWatcher follows active runs; *dispatch.Dispatcher satisfies it.
type RunWatcher interface {
	// Watch subscribes to an active run, or returns a nil subscription when
	// the run is not active.
	Watch(ctx context.Context, runID string) (*dispatch.RunView, *dispatch.Subscription, error)
	// Unwatch ends a subscription.
	Unwatch(sub *dispatch.Subscription)
	// Sync waits until everything the dispatcher handled is stored.
	Sync(ctx context.Context) error
	// Cancel cancels an active run on an operator's behalf.
	Cancel(ctx context.Context, runID, operator, reason string) (*dispatch.RunView, error)
}

// RunStore reads stored runs; store.Store satisfies it.
type RunStore interface {
	// GetRun returns a run and its tasks.
	GetRun(ctx context.Context, id string) (*store.Run, []*store.Task, error)
	// ListApprovals returns a run's approval decisions.
	ListApprovals(ctx context.Context, runID string) ([]*store.Approval, error)
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the executor's dependencies.
type Config struct {
	// Store keeps the playbook runs and their steps.
	Store store.PlaybookRuns
	// Library holds the playbooks.
	Library *Library
	// Cases records the timeline.
	Cases *cases.Service
	// Planner creates the steps' runs.
	Planner RunCreator
	// Actions lists the fleet's actions (the operator service).
	Actions ActionLister
	// KnownActions are actions a playbook may name even when no agent
	// offers them now (the first-party actions).
	KnownActions Catalog
	// Watcher follows and cancels runs (the dispatcher).
	Watcher RunWatcher
	// RunStore reads ended runs (the store).
	RunStore RunStore
	// Operations runs the operation steps (the eradication service); nil
	// fails them, saying so.
	Operations OperationRunner
	// Audit records changes; defaults to nothing.
	Audit AuditFunc
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// RetryBackoff is the first wait before retrying a run creation the
	// store refused for a passing reason (default 500ms).
	RetryBackoff time.Duration
	// Rescan, when set, makes Run look this often for running playbook
	// runs it has not executed yet: runs started or approved through
	// another controller sharing the store, whose executor is not running
	// because this one holds the lease. 0 looks only when Run starts.
	Rescan time.Duration
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "Library": c.Library != nil, "Cases": c.Cases != nil,
		"Planner": c.Planner != nil, "Actions": c.Actions != nil, "Watcher": c.Watcher != nil, "RunStore": c.RunStore != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("playbookrun: missing %s", strings.Join(missing, ", "))
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 500 * time.Millisecond
	}
	return nil
}

// Errors the executor returns.
var (
	ErrNotFound      = errors.New("playbook run not found")
	ErrNotAwaiting   = errors.New("the playbook run is not awaiting approval")
	ErrSelfApproval  = errors.New("a playbook run must be approved by an operator other than its creator")
	ErrEnded         = errors.New("the playbook run has already ended")
	ErrInvalid       = errors.New("the playbook is not valid against the fleet's actions")
	ErrInputs        = errors.New("the playbook's inputs are not valid")
	ErrCaseClosed    = errors.New("the case is closed")
	ErrCaseNotFound  = errors.New("case not found")
	ErrNotRunning    = errors.New("the executor is not running")
	errStepFailed    = errors.New("step failed")
	errRunDisappears = errors.New("the run is not in the store")
)

// Executor runs playbooks. It is safe for concurrent use.
type Executor struct {
	cfg Config
	db  runDB
	hub *hub

	mu     sync.Mutex
	base   context.Context
	active map[string]*execution
	// conducted names the playbook runs whose execution ended during the
	// current Run: a rescan does not start them again.
	conducted map[string]bool
	wg        sync.WaitGroup
}

// New returns an executor; call Run to start it.
func New(cfg Config) (*Executor, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	e := &Executor{cfg: cfg, db: runDB{s: cfg.Store}, active: map[string]*execution{}, conducted: map[string]bool{}}
	e.hub = newHub(func(id string) (*Run, error) { return e.currentRun(context.Background(), id) })
	return e, nil
}

// Run resumes the playbook runs that were running and executes new ones
// until ctx ends. It returns once every execution has stopped; their state
// is persisted, so the next Run picks them up where they were.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	e.base = ctx
	e.conducted = map[string]bool{}
	e.mu.Unlock()
	running, err := e.db.runningIDs(ctx)
	if err != nil {
		return fmt.Errorf("listing playbook runs to resume: %w", err)
	}
	for _, id := range running {
		e.spawnID(ctx, id)
	}
	if len(running) > 0 {
		e.cfg.Logger.Info("resumed playbook runs", "playbook_runs", len(running))
	}
	if e.cfg.Rescan > 0 {
		e.rescan(ctx)
	}
	<-ctx.Done()
	e.wg.Wait()
	e.mu.Lock()
	e.base = nil
	e.mu.Unlock()
	return nil
}

// rescan starts, every Rescan until ctx ends, the running playbook runs
// that this Run neither executes nor has executed.
func (e *Executor) rescan(ctx context.Context) {
	t := time.NewTicker(e.cfg.Rescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ids, err := e.db.runningIDs(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("looking for playbook runs started elsewhere failed; retrying", "error", err)
			}
			continue
		}
		running := make(map[string]bool, len(ids))
		var todo []string
		e.mu.Lock()
		for _, id := range ids {
			running[id] = true
			if e.active[id] == nil && !e.conducted[id] {
				todo = append(todo, id)
			}
		}
		// A run no longer running in the store is never running again.
		for id := range e.conducted {
			if !running[id] {
				delete(e.conducted, id)
			}
		}
		e.mu.Unlock()
		for _, id := range todo {
			r, err := e.db.getRun(ctx, id)
			if err != nil {
				e.cfg.Logger.Error("loading a playbook run started elsewhere", "playbook_run", id, "error", err)
				continue
			}
			if r.Status != StatusRunning {
				continue
			}
			e.cfg.Logger.Info("executing a playbook run started through another controller", "playbook_run", id)
			e.spawnIf(r, true)
		}
	}
}

// StartRequest asks for a playbook run.
type StartRequest struct {
	// Playbook is the playbook's name in the library.
	Playbook string
	// Inputs are the input values: typed (string, int64, bool,
	// time.Duration, []string) or text to parse by the declared type.
	Inputs map[string]any
	// CaseID is the case to work for; empty opens a new case.
	CaseID string
	// Finding is the finding that started the run, if any.
	Finding *finding.Finding
	// Rule is the rule that started the run, if any.
	Rule string
	// RequireApproval proposes the run: it waits for ApproveRun by an
	// approver other than CreatedBy.
	RequireApproval bool
	// CreatedBy is the operator, or "rule:NAME".
	CreatedBy string
	// Reason is kept with the run.
	Reason string
	// DryRun returns the plan and changes nothing.
	DryRun bool
}

// MaxReason caps a start reason.
const MaxReason = 1024

// Start starts (or proposes) a playbook run, or with DryRun returns its
// resolved plan. Every error wraps ErrInvalid, ErrInputs, ErrCaseClosed,
// ErrCaseNotFound or ErrUnknownPlaybook when that is the cause.
func (e *Executor) Start(ctx context.Context, req StartRequest) (_ *Run, _ *playbook.Plan, err error) {
	if len(req.Reason) > MaxReason {
		return nil, nil, fmt.Errorf("%w: the reason is longer than %d characters", ErrInputs, MaxReason)
	}
	entry, err := e.cfg.Library.Get(req.Playbook)
	if err != nil {
		return nil, nil, err
	}
	if entry.ParseErr != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, entry.ParseErr)
	}
	cat, err := FleetCatalog(ctx, e.cfg.Actions, e.cfg.KnownActions)
	if err != nil {
		return nil, nil, err
	}
	ev, err := playbook.NewEvaluator(entry.Playbook, cat)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	inputs, err := entry.Playbook.BindInputs(req.Inputs)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInputs, err)
	}
	var c *cases.Case
	if req.CaseID != "" {
		if c, err = e.cfg.Cases.Get(ctx, req.CaseID); err != nil {
			if errors.Is(err, cases.ErrNotFound) {
				return nil, nil, fmt.Errorf("%w: %q", ErrCaseNotFound, req.CaseID)
			}
			return nil, nil, err
		}
		if c.Status == cases.StatusClosed {
			return nil, nil, fmt.Errorf("%w: case %s takes no new playbook runs", ErrCaseClosed, c.ID)
		}
	}
	sc := playbook.Scope{Inputs: inputs}
	if req.Finding != nil {
		sc.Finding = req.Finding.Map()
	}
	if req.DryRun {
		sc.Case = playbook.Case{ID: "(new case)", Title: "(new case)"}
		if c != nil {
			sc.Case = playbook.Case{ID: c.ID, Title: c.Title}
		}
		return nil, ev.Plan(sc), nil
	}
	pb := entry.Playbook
	r := &Run{ID: ids.New("pbr"), Playbook: pb.Metadata.Name, Version: pb.Metadata.Version, Status: StatusRunning,
		CreatedBy: req.CreatedBy, Inputs: storableInputs(inputs), Finding: req.Finding, Rule: req.Rule,
		Reason: req.Reason, Steps: declaredSteps(pb), source: entry.Data, sourceName: entry.Filename}
	// The run's trace continues the caller's: its context is stored with
	// the run, and every step is a child of this span.
	ctx, span := startRunSpan(ctx, r)
	defer func() { endWithError(span, err) }()
	if c == nil {
		if c, err = e.cfg.Cases.Create(ctx, cases.NewCase{Title: caseTitle(pb, inputs), CreatedBy: req.CreatedBy, Note: req.Reason}); err != nil {
			return nil, nil, err
		}
	}
	span.SetAttributes(telemetry.AttrCaseID.String(c.ID))
	now := e.cfg.Clock()
	r.CaseID, r.CreatedAt, r.StartedAt = c.ID, now, now
	if req.RequireApproval {
		r.Status, r.StartedAt = StatusAwaitingApproval, time.Time{}
	}
	if err = e.db.createRun(ctx, r); err != nil {
		return nil, nil, fmt.Errorf("storing the playbook run: %w", err)
	}
	entryStatus, summary := "started", fmt.Sprintf("playbook %s v%d started by %s", r.Playbook, r.Version, r.CreatedBy)
	if req.RequireApproval {
		entryStatus = string(StatusAwaitingApproval)
		summary = fmt.Sprintf("playbook %s v%d proposed by %s; it awaits approval: firebreak playbook approve %s", r.Playbook, r.Version, r.CreatedBy, r.ID)
	}
	detail, _ := json.Marshal(map[string]any{"inputs": r.Inputs, "rule": r.Rule, "reason": r.Reason})
	e.record(ctx, &cases.Entry{CaseID: r.CaseID, Key: "pbr/" + r.ID + "/created", At: now, Kind: cases.KindPlaybook, Status: entryStatus,
		Actor: r.CreatedBy, PlaybookRunID: r.ID, Summary: summary, Detail: detail})
	e.cfg.Audit(ctx, r.CreatedBy, "playbook.start", r.ID, map[string]any{"playbook": r.Playbook, "version": r.Version, "case": r.CaseID,
		"inputs": r.Inputs, "rule": r.Rule, "status": string(r.Status)})
	// The execution owns r from spawn on and changes its steps under its
	// own lock; the caller gets a copy taken before.
	out := cloneRun(r)
	if r.Status == StatusRunning {
		e.spawn(r)
	}
	return out, nil, nil
}

func caseTitle(pb *playbook.Playbook, inputs map[string]any) string {
	var parts []string
	for _, in := range pb.Inputs {
		if in.Required {
			parts = append(parts, fmt.Sprintf("%s=%v", in.Name, inputs[in.Name]))
		}
	}
	title := "playbook " + pb.Metadata.Name
	if len(parts) > 0 {
		title += " for " + strings.Join(parts, " ")
	}
	if len(title) > cases.MaxTitle {
		title = title[:cases.MaxTitle]
	}
	return title
}

// storableInputs turns bound inputs into values that survive a JSON round
// trip and bind again to the same values: durations become text.
func storableInputs(in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		out[k] = v
	}
	return out
}

// record writes a timeline entry; a failure is logged, not fatal: the
// playbook run's own state is the source of truth and the entry is
// recorded again, under the same key, when the run resumes.
func (e *Executor) record(ctx context.Context, en *cases.Entry) {
	if _, err := e.cfg.Cases.Record(ctx, en); err != nil && ctx.Err() == nil {
		e.cfg.Logger.Error("recording on the case timeline failed", "case", en.CaseID, "entry", en.Key, "error", err)
	}
}

// Get returns a playbook run with its steps.
func (e *Executor) Get(ctx context.Context, id string) (*Run, error) {
	if x := e.activeExec(id); x != nil {
		return x.snapshot(), nil
	}
	return e.db.getRun(ctx, id)
}

// List returns playbook runs newest first, without their steps.
func (e *Executor) List(ctx context.Context, o ListOptions) ([]*Run, error) {
	if o.Limit <= 0 {
		o.Limit = 50
	}
	o.Limit = min(o.Limit, 1000)
	return e.db.listRuns(ctx, o)
}

// ActiveForCase names the playbook runs of a case that have not ended.
func (e *Executor) ActiveForCase(ctx context.Context, caseID string) ([]string, error) {
	runs, err := e.db.listRuns(ctx, ListOptions{CaseID: caseID, Active: true, Limit: 1000})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.ID
	}
	return out, nil
}

// Approve starts a proposed playbook run.
func (e *Executor) Approve(ctx context.Context, id, operator, comment string) (*Run, error) {
	r, err := e.db.getRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status != StatusAwaitingApproval {
		return nil, fmt.Errorf("playbook run %s is %s: %w", id, r.Status, ErrNotAwaiting)
	}
	// Security-critical: two-person rule. Whoever proposed a playbook run
	// cannot also approve it.
	if operator == r.CreatedBy {
		return nil, fmt.Errorf("%w: %s proposed playbook run %s", ErrSelfApproval, operator, id)
	}
	now := e.cfg.Clock()
	r.Status, r.StartedAt, r.ApprovedBy = StatusRunning, now, operator
	ok, err := e.db.transition(ctx, r, StatusAwaitingApproval)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("playbook run %s: %w", id, ErrNotAwaiting)
	}
	detail, _ := json.Marshal(map[string]string{"comment": comment})
	e.record(ctx, &cases.Entry{CaseID: r.CaseID, Key: "pbr/" + id + "/approval", At: now, Kind: cases.KindApproval, Status: "approved",
		Actor: operator, PlaybookRunID: id, Summary: fmt.Sprintf("%s approved playbook run %s (%s)", operator, id, r.Playbook), Detail: detail})
	e.record(ctx, &cases.Entry{CaseID: r.CaseID, Key: "pbr/" + id + "/started", At: now, Kind: cases.KindPlaybook, Status: "started",
		Actor: operator, PlaybookRunID: id, Summary: fmt.Sprintf("playbook %s v%d started after approval by %s", r.Playbook, r.Version, operator)})
	traceApprovalWait(ctx, r, "approved", operator, now)
	e.cfg.Audit(ctx, operator, "playbook.approve", id, map[string]string{"comment": comment})
	e.hub.publish(Event{Kind: EventRun, Run: header(r)})
	// The execution owns r from spawn on; the caller gets a copy.
	out := cloneRun(r)
	e.spawn(r)
	return out, nil
}

// Reject rejects a proposed playbook run.
func (e *Executor) Reject(ctx context.Context, id, operator, comment string) (*Run, error) {
	r, err := e.db.getRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status != StatusAwaitingApproval {
		return nil, fmt.Errorf("playbook run %s is %s: %w", id, r.Status, ErrNotAwaiting)
	}
	now := e.cfg.Clock()
	r.Status, r.FinishedAt, r.Error = StatusRejected, now, "rejected by "+operator
	if comment != "" {
		r.Error += ": " + comment
	}
	ok, err := e.db.transition(ctx, r, StatusAwaitingApproval)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("playbook run %s: %w", id, ErrNotAwaiting)
	}
	e.cancelPendingSteps(ctx, r, r.Error)
	detail, _ := json.Marshal(map[string]string{"comment": comment})
	e.record(ctx, &cases.Entry{CaseID: r.CaseID, Key: "pbr/" + id + "/approval", At: now, Kind: cases.KindApproval, Status: "rejected",
		Actor: operator, PlaybookRunID: id, Summary: fmt.Sprintf("%s rejected playbook run %s (%s)", operator, id, r.Playbook), Detail: detail})
	e.recordEnd(ctx, r)
	traceApprovalWait(ctx, r, "rejected", operator, now)
	e.cfg.Audit(ctx, operator, "playbook.reject", id, map[string]string{"comment": comment})
	e.hub.finish(r)
	return r, nil
}

// Cancel stops a playbook run: no further step starts, the runs of the
// steps in flight are cancelled, and the playbook run ends cancelled once
// they stop. Completed steps are not rolled back.
func (e *Executor) Cancel(ctx context.Context, id, operator, reason string) (*Run, error) {
	if x := e.activeExec(id); x != nil {
		if err := x.requestCancel(ctx, operator, reason); err != nil {
			return nil, err
		}
		return x.snapshot(), nil
	}
	r, err := e.db.getRun(ctx, id)
	if err != nil {
		return nil, err
	}
	msg := "cancelled by " + operator
	if reason != "" {
		msg += ": " + reason
	}
	switch r.Status {
	case StatusAwaitingApproval:
		r.Status, r.FinishedAt, r.Error = StatusCancelled, e.cfg.Clock(), msg
		ok, err := e.db.transition(ctx, r, StatusAwaitingApproval)
		if err != nil {
			return nil, err
		}
		if !ok {
			return e.Cancel(ctx, id, operator, reason)
		}
		e.cancelPendingSteps(ctx, r, msg)
		e.recordEnd(ctx, r)
		e.cfg.Audit(ctx, operator, "playbook.cancel", id, map[string]string{"reason": reason})
		e.hub.finish(r)
		return r, nil
	case StatusRunning:
		// Not executing here yet (the executor has not started): record
		// the request; the execution applies it when it starts.
		r.stopping, r.Error = stopCancel, msg
		if err := e.db.saveRun(ctx, r); err != nil {
			return nil, err
		}
		e.cfg.Audit(ctx, operator, "playbook.cancel", id, map[string]string{"reason": reason})
		return r, nil
	}
	return nil, fmt.Errorf("playbook run %s is %s: %w", id, r.Status, ErrEnded)
}

func (e *Executor) cancelPendingSteps(ctx context.Context, r *Run, why string) {
	for _, st := range r.Steps {
		if st.Status == StepPending {
			st.Status, st.Error = StepCancelled, why
			if err := e.db.saveStep(ctx, r.ID, st); err != nil {
				e.cfg.Logger.Error("saving a cancelled step", "playbook_run", r.ID, "step", st.ID, "error", err)
			}
		}
	}
}

// recordEnd records a playbook run's end on the case timeline.
func (e *Executor) recordEnd(ctx context.Context, r *Run) {
	summary := fmt.Sprintf("playbook %s v%d %s", r.Playbook, r.Version, strings.ReplaceAll(string(r.Status), "_", " "))
	if r.Error != "" {
		summary += ": " + r.Error
	}
	e.record(ctx, &cases.Entry{CaseID: r.CaseID, Key: "pbr/" + r.ID + "/end", At: r.FinishedAt, Kind: cases.KindPlaybook,
		Status: string(r.Status), Actor: "playbook:" + r.Playbook, PlaybookRunID: r.ID, Summary: summary})
}

// Wait blocks until the playbook run ends and returns it.
func (e *Executor) Wait(ctx context.Context, id string) (*Run, error) {
	for {
		snap, sub, err := e.Watch(ctx, id)
		if err != nil {
			return nil, err
		}
		if snap.Status.Final() {
			e.Unwatch(sub)
			return snap, nil
		}
		final, err := waitDone(ctx, sub)
		e.Unwatch(sub)
		if err != nil || final != nil {
			return final, err
		}
		// The subscription ended without the done event: watch again.
	}
}

// waitDone reads a subscription until its done event; it returns nil, nil
// when the subscription ended without it.
func waitDone(ctx context.Context, sub *Subscription) (*Run, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case ev, ok := <-sub.C:
			if !ok {
				return nil, nil
			}
			if ev.Kind == EventDone {
				return ev.Run, nil
			}
		}
	}
}

func (e *Executor) activeExec(id string) *execution {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active[id]
}
