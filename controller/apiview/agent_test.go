package apiview

import (
	"testing"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

func TestAgentRole(t *testing.T) {
	tests := []struct {
		role agentv1.AgentRole
		name string
	}{
		{agentv1.AgentRole_AGENT_ROLE_HOST, "host"},
		{agentv1.AgentRole_AGENT_ROLE_WORKER, "worker"},
		{agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED, "unspecified"},
	}
	for _, tt := range tests {
		if got := AgentRoleName(tt.role); got != tt.name {
			t.Errorf("AgentRoleName(%v) = %q, want %q", tt.role, got, tt.name)
		}
	}
	parse := []struct {
		in   string
		want agentv1.AgentRole
	}{
		{"host", agentv1.AgentRole_AGENT_ROLE_HOST},
		{"Worker", agentv1.AgentRole_AGENT_ROLE_WORKER},
		{"unspecified", agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED},
		{"", agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED},
		{"admin", agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED},
		{"AGENT_ROLE_HOST", agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED},
	}
	for _, tt := range parse {
		if got := ParseAgentRole(tt.in); got != tt.want {
			t.Errorf("ParseAgentRole(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
