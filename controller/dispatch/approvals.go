package dispatch

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/internal/telemetry"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// approvalBook is the set of runs waiting for an approver, with when each
// began to wait. The loop writes it; metric collection reads it from
// another goroutine, hence the lock.
type approvalBook struct {
	mu      sync.Mutex
	waiting map[string]time.Time
}

func (b *approvalBook) add(runID string, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiting == nil {
		b.waiting = map[string]time.Time{}
	}
	b.waiting[runID] = since
}

func (b *approvalBook) remove(runID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.waiting, runID)
}

// AwaitingApproval returns how many runs wait for an approver and how long
// the oldest has waited, for the approval-wait metrics and alert.
func (d *Dispatcher) AwaitingApproval() (int, time.Duration) {
	b := &d.approvals
	b.mu.Lock()
	defer b.mu.Unlock()
	now := d.cfg.Clock()
	var oldest time.Duration
	for _, since := range b.waiting {
		oldest = max(oldest, now.Sub(since))
	}
	return len(b.waiting), oldest
}

// noteAwaiting records a run that waits for an approver.
func (d *Dispatcher) noteAwaiting(rs *runState) {
	if rs.run.Status == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
		d.approvals.add(rs.run.ID, rs.run.CreatedAt)
	}
}

// traceApprovalWait records the wait for an approver as a span in the run's
// trace, from the run's creation to the decision, linked to the approver's
// own request, so a trace shows how long the response stood still and who
// moved it on.
func (d *Dispatcher) traceApprovalWait(rs *runState, e evDecide, at time.Time) {
	d.approvals.remove(rs.run.ID)
	decision := "rejected"
	if e.approve {
		decision = "approved"
	}
	ctx := telemetry.ExtractTraceContext(context.Background(), rs.traceparent, rs.tracestate)
	opts := []trace.SpanStartOption{trace.WithTimestamp(rs.run.CreatedAt), trace.WithAttributes(
		telemetry.AttrRunID.String(rs.run.ID), telemetry.AttrAction.String(rs.run.Action),
		attribute.String("firebreak.approval.decision", decision), attribute.String("firebreak.approval.operator", e.operator),
		attribute.Float64("firebreak.approval.wait_seconds", at.Sub(rs.run.CreatedAt).Seconds()))}
	if e.link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: e.link}))
	}
	_, span := telemetry.Tracer().Start(ctx, "run.approval_wait", opts...)
	span.AddEvent("run."+decision, trace.WithTimestamp(at), trace.WithAttributes(attribute.String("firebreak.approval.operator", e.operator)))
	span.End(trace.WithTimestamp(at))
}
