package playbookrun_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
)

// recordSpans installs a tracer provider that keeps every ended span, and
// the W3C propagator, for the rest of the test.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	return rec
}

// attr returns a span's attribute as text ("" when absent).
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// spansNamed returns the ended spans with the name, in one trace.
func spansNamed(rec *tracetest.SpanRecorder, name string, tid trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name && s.SpanContext().TraceID() == tid {
			out = append(out, s)
		}
	}
	return out
}

// TestPlaybookRunIsOneTrace: a playbook run continues its starter's trace.
// Its playbook.start span is the caller's child, each step is a
// playbook.step span under it with its attributes, the runs the steps
// create (and so their tasks) are the steps' children, and the case's
// timeline entries name the trace.
func TestPlaybookRunIsOneTrace(t *testing.T) {
	rec := recordSpans(t)
	f := newFleet(t, 1, map[string]string{"traced": pb("traced", `
steps:
  - id: a
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: a}
  - id: b
    needs: [a]
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: b}
`)})
	ctx, caller := otel.Tracer("test").Start(context.Background(), "firebreak playbook run")
	r, _, err := f.c.Playbooks.Start(playbookruntest.Admin(ctx), playbookrun.StartRequest{Playbook: "traced", CreatedBy: "alice"})
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	done := f.wait(t, r.ID)
	if done.Status != playbookrun.StatusSucceeded {
		t.Fatalf("status %s (%s)", done.Status, done.Error)
	}
	tid := caller.SpanContext().TraceID()
	starts := spansNamed(rec, "playbook.start", tid)
	if len(starts) != 1 || starts[0].Parent().SpanID() != caller.SpanContext().SpanID() || attr(starts[0], "firebreak.playbook.run.id") != r.ID {
		t.Fatalf("playbook.start spans in the caller's trace: %d, want one, the caller's child, naming %s", len(starts), r.ID)
	}
	start := starts[0]
	steps := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spansNamed(rec, "playbook.step", tid) {
		steps[attr(s, "firebreak.playbook.step")] = s
	}
	tests := []struct{ step, action, phase string }{{"a", "record", "analyze"}, {"b", "record", "contain"}}
	for _, tt := range tests {
		t.Run(tt.step, func(t *testing.T) {
			s, ok := steps[tt.step]
			if !ok {
				t.Fatalf("no playbook.step span for step %s in the trace (%d step spans)", tt.step, len(steps))
			}
			if s.Parent().SpanID() != start.SpanContext().SpanID() {
				t.Errorf("step %s's span is not a child of playbook.start", tt.step)
			}
			runID := done.Step(tt.step).RunID
			if attr(s, "firebreak.action") != tt.action || attr(s, "firebreak.playbook.phase") != tt.phase || attr(s, "firebreak.run.id") != runID ||
				attr(s, "firebreak.playbook.step.status") != "succeeded" || attr(s, "firebreak.case.id") != done.CaseID {
				t.Errorf("step %s's span attributes %v", tt.step, s.Attributes())
			}
			if s.Status().Code != 0 {
				t.Errorf("step %s succeeded but its span has status %v", tt.step, s.Status())
			}
			// The step's run is created inside the step's span, and its
			// tasks are dispatched in the same trace.
			var created, dispatched bool
			for _, c := range rec.Ended() {
				if c.SpanContext().TraceID() != tid || attr(c, "firebreak.run.id") != runID {
					continue
				}
				created = created || (c.Name() == "run.create" && c.Parent().SpanID() == s.SpanContext().SpanID())
				dispatched = dispatched || c.Name() == "run.dispatch"
			}
			if !created || !dispatched {
				t.Errorf("step %s's run %s: run.create under the step %v, run.dispatch in the trace %v", tt.step, runID, created, dispatched)
			}
		})
	}
	tl, err := f.c.Cases.Timeline(context.Background(), done.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tl {
		if e.PlaybookRunID == r.ID && e.TraceID != tid.String() {
			t.Errorf("timeline entry %q names trace %q, want the run's %s", e.Summary, e.TraceID, tid)
		}
	}
}

// TestApprovalWaitIsInTheRunsTrace: a proposed playbook run's wait for an
// approver is a playbook.approval_wait span in the run's trace, linked to
// the approver's own request, and the steps that run after the approval
// are in the run's trace, not the approver's.
func TestApprovalWaitIsInTheRunsTrace(t *testing.T) {
	rec := recordSpans(t)
	f := newFleet(t, 1, map[string]string{"prop": pb("prop", `
steps:
  - id: only
    phase: contain
    action: record
    targets: {selector: role=host}
    params: {mark: only}
`)})
	ctx, finding := otel.Tracer("test").Start(context.Background(), "finding.intake")
	r, _, err := f.c.Playbooks.Start(ctx, playbookrun.StartRequest{Playbook: "prop", CreatedBy: "rule:test", RequireApproval: true})
	finding.End()
	if err != nil {
		t.Fatal(err)
	}
	actx, approver := otel.Tracer("test").Start(context.Background(), "firebreak playbook approve")
	if _, err := f.c.Playbooks.Approve(actx, r.ID, "bob", "ok"); err != nil {
		t.Fatal(err)
	}
	approver.End()
	if done := f.wait(t, r.ID); done.Status != playbookrun.StatusSucceeded {
		t.Fatalf("status %s (%s)", done.Status, done.Error)
	}
	tid := finding.SpanContext().TraceID()
	waits := spansNamed(rec, "playbook.approval_wait", tid)
	if len(waits) != 1 {
		t.Fatalf("%d playbook.approval_wait spans in the run's trace, want 1", len(waits))
	}
	w := waits[0]
	if attr(w, "firebreak.approval.decision") != "approved" || attr(w, "firebreak.approval.operator") != "bob" ||
		len(w.Links()) != 1 || w.Links()[0].SpanContext.SpanID() != approver.SpanContext().SpanID() {
		t.Errorf("approval wait %v with links %v: want bob's approval, linked to his request", w.Attributes(), w.Links())
	}
	if steps := spansNamed(rec, "playbook.step", tid); len(steps) != 1 || attr(steps[0], "firebreak.playbook.step") != "only" {
		t.Errorf("%d step spans in the run's trace, want the approved run's one step", len(steps))
	}
}
