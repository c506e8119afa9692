package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
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
	AttrBytes    = attribute.Key("firebreak.evidence.bytes")
	AttrResumes  = attribute.Key("firebreak.evidence.resumes")
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
