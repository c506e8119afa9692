package telemetry

import (
	"context"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of the firebreak.* namespace, for what the OpenTelemetry
// semantic conventions have no name for.
const (
	AttrRunID    = attribute.Key("firebreak.run.id")
	AttrTaskID   = attribute.Key("firebreak.task.id")
	AttrAction   = attribute.Key("firebreak.action")
	AttrAgentID  = attribute.Key("firebreak.agent.id")
	AttrAccount  = attribute.Key("firebreak.account")
	AttrRegion   = attribute.Key("firebreak.region")
	AttrCaseID   = attribute.Key("firebreak.case.id")
	AttrOperator = attribute.Key("firebreak.operator")
	AttrTargets  = attribute.Key("firebreak.run.targets")
	AttrStatus   = attribute.Key("firebreak.task.status")
	AttrPlaybook = attribute.Key("firebreak.playbook")
	AttrStep     = attribute.Key("firebreak.playbook.step")
	// AttrPlaybookRunID is a playbook run's id (pbr-…).
	AttrPlaybookRunID = attribute.Key("firebreak.playbook.run.id")
	AttrBytes         = attribute.Key("firebreak.evidence.bytes")
	AttrResumes       = attribute.Key("firebreak.evidence.resumes")
)

// NonEmpty returns the string attributes whose values are set.
func NonEmpty(kvs ...attribute.KeyValue) []attribute.KeyValue {
	out := kvs[:0:0]
	for _, kv := range kvs {
		if kv.Value.Type() == attribute.STRING && kv.Value.AsString() == "" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func spanContext(ctx context.Context) trace.SpanContext { return trace.SpanContextFromContext(ctx) }

// StartTask starts an agent's span for a verified task, from the moment its
// signature check began, with the check itself as a child span.
func StartTask(ctx context.Context, verifyStart time.Time, taskID, runID, action, agentID, account, region, caseID string) (context.Context, trace.Span) {
	ctx, span := Tracer().Start(ctx, "task "+action, trace.WithTimestamp(verifyStart), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(NonEmpty(AttrTaskID.String(taskID), AttrRunID.String(runID), AttrAction.String(action), AttrAgentID.String(agentID),
			AttrAccount.String(account), AttrRegion.String(region), AttrCaseID.String(caseID))...))
	_, verify := Tracer().Start(ctx, "task.verify", trace.WithTimestamp(verifyStart))
	verify.End()
	return ctx, span
}

// EndTask records a task's final status on its span. A task that failed or
// was refused is an error; one that was cancelled or timed out is not a
// fault of the agent's and stays unset.
func EndTask(span trace.Span, status, errMsg string) {
	status = strings.ToLower(strings.TrimPrefix(status, "TASK_STATUS_"))
	span.SetAttributes(AttrStatus.String(status))
	if status == "failed" || status == "refused" || status == "unreachable" {
		span.SetStatus(codes.Error, errMsg)
	}
}
