package apiview

import (
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// AgentRoleName is an agent role as the store, certificates, selectors
// and people write it: "host" or "worker" ("unspecified" for the zero
// value).
func AgentRoleName(r agentv1.AgentRole) string { return EnumName(r) }

// ParseAgentRole is the role AgentRoleName names, case-insensitively, or
// AGENT_ROLE_UNSPECIFIED for any other text.
func ParseAgentRole(name string) agentv1.AgentRole {
	n, ok := ParseEnum(agentv1.AgentRole(0).Descriptor(), name)
	if !ok {
		return agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED
	}
	return agentv1.AgentRole(n)
}
