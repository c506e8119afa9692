package playbookrun

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/internal/telemetry"
)

// A playbook run is one trace. Start opens a playbook.start span in the
// caller's trace (the finding's intake, or the operator's command) and
// stores its W3C context on the run; the executor restores it, also after
// a restart, so every step is a playbook.step span under it, and the runs
// a step creates carry the step's context into their signed tasks.

// Attributes of the playbook spans.
const (
	attrVersion   = attribute.Key("firebreak.playbook.version")
	attrPhase     = attribute.Key("firebreak.playbook.phase")
	attrStatus    = attribute.Key("firebreak.playbook.step.status")
	attrResumed   = attribute.Key("firebreak.playbook.step.resumed")
	attrInterrupt = attribute.Key("firebreak.playbook.step.interrupted")
	attrCreatedBy = attribute.Key("firebreak.playbook.created_by")
	attrRule      = attribute.Key("firebreak.rule")
)

// startRunSpan starts the playbook.start span of a new run in ctx's trace
// and stores its context on the run.
func startRunSpan(ctx context.Context, r *Run) (context.Context, trace.Span) {
	ctx, span := telemetry.Tracer().Start(ctx, "playbook.start", trace.WithAttributes(telemetry.NonEmpty(
		telemetry.AttrPlaybookRunID.String(r.ID), telemetry.AttrPlaybook.String(r.Playbook), attrVersion.Int(r.Version),
		attrCreatedBy.String(r.CreatedBy), attrRule.String(r.Rule))...))
	r.traceparent, r.tracestate = telemetry.InjectTraceContext(ctx)
	return ctx, span
}

// endWithError ends a span, marking it failed when err is set.
func endWithError(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// traceContext returns ctx inside the run's stored trace (ctx itself when
// the run has none).
func (r *Run) traceContext(ctx context.Context) context.Context {
	return telemetry.ExtractTraceContext(ctx, r.traceparent, r.tracestate)
}

// traceApprovalWait records the wait for an approver of a proposed run as
// a span in the run's trace, from its creation to the decision, linked to
// the approver's own request.
func traceApprovalWait(ctx context.Context, r *Run, decision, operator string, at time.Time) {
	opts := []trace.SpanStartOption{trace.WithTimestamp(r.CreatedAt), trace.WithAttributes(
		telemetry.AttrPlaybookRunID.String(r.ID), telemetry.AttrPlaybook.String(r.Playbook), telemetry.AttrCaseID.String(r.CaseID),
		attribute.String("firebreak.approval.decision", decision), attribute.String("firebreak.approval.operator", operator),
		attribute.Float64("firebreak.approval.wait_seconds", at.Sub(r.CreatedAt).Seconds()))}
	if link := trace.SpanContextFromContext(ctx); link.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: link}))
	}
	_, span := telemetry.Tracer().Start(r.traceContext(context.Background()), "playbook.approval_wait", opts...)
	span.AddEvent("playbook."+decision, trace.WithTimestamp(at), trace.WithAttributes(attribute.String("firebreak.approval.operator", operator)))
	span.End(trace.WithTimestamp(at))
}

// beginStep starts the step's playbook.step span, unless it has one, and
// returns ctx inside it. A step found in flight when the run resumes gets
// a new span, marked resumed, in the same trace.
func (x *execution) beginStep(ctx context.Context, stepID string) context.Context {
	x.mu.Lock()
	defer x.mu.Unlock()
	if span := x.spans[stepID]; span != nil {
		return trace.ContextWithSpan(ctx, span)
	}
	st := x.run.Step(stepID)
	attrs := telemetry.NonEmpty(telemetry.AttrPlaybookRunID.String(x.run.ID), telemetry.AttrPlaybook.String(x.run.Playbook),
		telemetry.AttrStep.String(st.ID), telemetry.AttrAction.String(st.Action), attrPhase.String(string(st.Phase)),
		telemetry.AttrCaseID.String(x.run.CaseID), telemetry.AttrRunID.String(st.RunID))
	if st.Status.InFlight() {
		attrs = append(attrs, attrResumed.Bool(true))
	}
	ctx, span := telemetry.Tracer().Start(ctx, "playbook.step", trace.WithAttributes(attrs...))
	x.spans[stepID] = span
	return ctx
}

// stepContext returns ctx inside the step's span, if it has one.
func (x *execution) stepContext(ctx context.Context, stepID string) context.Context {
	x.mu.Lock()
	defer x.mu.Unlock()
	if span := x.spans[stepID]; span != nil {
		return trace.ContextWithSpan(ctx, span)
	}
	return ctx
}

// stepRunSpan names the step's run on its span.
func (x *execution) stepRunSpan(stepID, runID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if span := x.spans[stepID]; span != nil {
		span.SetAttributes(telemetry.AttrRunID.String(runID))
	}
}

// endStepSpan ends the step's span with its outcome: a failed step is an
// error, a skipped or cancelled one is not.
func (x *execution) endStepSpan(stepID string, s StepStatus, why string) {
	x.mu.Lock()
	span := x.spans[stepID]
	delete(x.spans, stepID)
	x.mu.Unlock()
	if span == nil {
		return
	}
	span.SetAttributes(attrStatus.String(string(s)))
	if s == StepFailed {
		span.SetStatus(otelcodes.Error, why)
	}
	span.End()
}

// endOpenSpans ends the spans of the steps still in flight when the
// controller stops, so they are exported with the flush at stop; the
// resumed run continues the trace with new spans.
func (x *execution) endOpenSpans() {
	x.mu.Lock()
	spans := x.spans
	x.spans = map[string]trace.Span{}
	x.mu.Unlock()
	for _, span := range spans {
		span.SetAttributes(attrInterrupt.Bool(true))
		span.End()
	}
}

// startRollbackSpan starts the playbook.rollback span of a step's rollback
// in the run's trace.
func (x *execution) startRollbackSpan(ctx context.Context, st *Step) (context.Context, trace.Span) {
	return telemetry.Tracer().Start(ctx, "playbook.rollback", trace.WithAttributes(telemetry.NonEmpty(
		telemetry.AttrPlaybookRunID.String(x.run.ID), telemetry.AttrPlaybook.String(x.run.Playbook), telemetry.AttrStep.String(st.ID),
		attrPhase.String(string(st.Phase)), telemetry.AttrCaseID.String(x.run.CaseID))...))
}
