package dispatch_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestApprovalWaitIsMeasuredAndTraced checks what the approval-wait metric
// and span see: a run waiting for an approver counts until the decision,
// and the decision closes a run.approval_wait span that starts when the
// run was created and links to the approver's request.
func TestApprovalWaitIsMeasuredAndTraced(t *testing.T) {
	tests := []struct {
		name    string
		approve bool
		want    string
	}{
		{"approved", true, "approved"},
		{"rejected", false, "rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			prev := otel.GetTracerProvider()
			otel.SetTracerProvider(tp)
			t.Cleanup(func() { otel.SetTracerProvider(prev) })

			h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
			defer h.stop()
			h.f.connect("a0")
			ctx := context.Background()
			created := h.clock.Now().Add(-90 * time.Second)
			id := h.submit(1, func(r *store.Run) {
				r.Status, r.StartedAt, r.Deadline, r.Destructive = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, time.Time{}, time.Time{}, true
				r.CreatedAt = created
			})
			if err := h.d.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if n, oldest := h.d.AwaitingApproval(); n != 1 || oldest < 90*time.Second {
				t.Fatalf("awaiting approval: %d runs, oldest %v; want 1 run waiting at least 90s", n, oldest)
			}
			reqCtx, req := tp.Tracer("test").Start(ctx, "ApproveRun")
			if _, err := h.d.Decide(reqCtx, id, "bob", tt.approve, "checked"); err != nil {
				t.Fatal(err)
			}
			req.End()
			if n, oldest := h.d.AwaitingApproval(); n != 0 || oldest != 0 {
				t.Fatalf("after the decision: %d runs waiting, oldest %v; want none", n, oldest)
			}
			var wait sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "run.approval_wait" {
					wait = s
				}
			}
			if wait == nil {
				t.Fatal("no run.approval_wait span")
			}
			attrs := map[string]string{}
			for _, kv := range wait.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			if attrs["firebreak.approval.decision"] != tt.want || attrs["firebreak.approval.operator"] != "bob" || attrs["firebreak.run.id"] != id {
				t.Errorf("span attributes %v", attrs)
			}
			if !wait.StartTime().Equal(created) {
				t.Errorf("the wait starts at %v, want the run's creation %v", wait.StartTime(), created)
			}
			if len(wait.Links()) != 1 || wait.Links()[0].SpanContext.SpanID() != req.SpanContext().SpanID() {
				t.Errorf("links %v: want the approver's request span", wait.Links())
			}
		})
	}
}
