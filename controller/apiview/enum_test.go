package apiview

import (
	"testing"
	"time"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestEnumName(t *testing.T) {
	tests := []struct {
		in   protoreflect.Enum
		want string
	}{
		{operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, "succeeded"},
		{operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, "awaiting_approval"},
		{agentv1.TaskStatus_TASK_STATUS_TIMED_OUT, "timed_out"},
		{operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, "admin"},
		{operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_RUNNING, "running"},
		{operatorv1.StepStatus_STEP_STATUS_SKIPPED, "skipped"},
		{operatorv1.CaseStatus_CASE_STATUS_OPEN, "open"},
		{agentv1.AgentRole_AGENT_ROLE_HOST, "host"},
		{agentv1.AgentRole_AGENT_ROLE_WORKER, "worker"},
		{operatorv1.RunStatus(99), "99"},
	}
	for _, tt := range tests {
		if got := EnumName(tt.in); got != tt.want {
			t.Errorf("EnumName(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := EnumUpper(operatorv1.RunStatus_RUN_STATUS_FAILED); got != "FAILED" {
		t.Errorf("EnumUpper = %q, want FAILED", got)
	}
}

func TestParseEnum(t *testing.T) {
	d := agentv1.AgentRole(0).Descriptor()
	tests := []struct {
		in     string
		want   protoreflect.EnumNumber
		wantOK bool
	}{
		{"host", protoreflect.EnumNumber(agentv1.AgentRole_AGENT_ROLE_HOST), true},
		{"WORKER", protoreflect.EnumNumber(agentv1.AgentRole_AGENT_ROLE_WORKER), true},
		{"unspecified", 0, false},
		{"", 0, false},
		{"AGENT_ROLE_HOST", 0, false},
		{"root", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseEnum(d, tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ParseEnum(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestTimestamp(t *testing.T) {
	if Timestamp(time.Time{}) != nil {
		t.Error("zero time must be nil on the wire")
	}
	now := time.Date(2026, 12, 7, 3, 0, 0, 5, time.UTC)
	ts := Timestamp(now)
	if ts == nil || !ts.AsTime().Equal(now) {
		t.Fatalf("Timestamp(%v) = %v", now, ts)
	}
	if Time(nil) != nil {
		t.Error("Time(nil) must be nil")
	}
	if got := Time(ts); got == nil || !got.Equal(now) {
		t.Errorf("Time round trip = %v, want %v", got, now)
	}
}
