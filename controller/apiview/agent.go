package apiview

import (
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
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

// Agent is an enrolled agent on the wire. facts are the facts to show
// (the controller's trusted view, not necessarily a.Facts) and connected
// says whether it holds a stream now; refused actions are the caller's
// to add.
func Agent(a *store.Agent, facts *agentv1.AgentFacts, connected bool) *operatorv1.Agent {
	return &operatorv1.Agent{Id: a.ID, Role: ParseAgentRole(a.Role), Facts: facts, Connected: connected,
		LastSeen: Timestamp(a.LastSeen), Plugins: a.Plugins, EnrolledAt: Timestamp(a.EnrolledAt),
		CertNotAfter: Timestamp(a.CertNotAfter)}
}
