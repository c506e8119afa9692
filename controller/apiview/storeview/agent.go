package storeview

import (
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Agent is an enrolled agent on the wire. facts are the facts to show
// (the controller's trusted view, not necessarily a.Facts) and connected
// says whether it holds a stream now; refused actions are the caller's
// to add.
func Agent(a *store.Agent, facts *agentv1.AgentFacts, connected bool) *operatorv1.Agent {
	return &operatorv1.Agent{Id: a.ID, Role: apiview.ParseAgentRole(a.Role), Facts: facts, Connected: connected,
		LastSeen: apiview.Timestamp(a.LastSeen), Plugins: a.Plugins, EnrolledAt: apiview.Timestamp(a.EnrolledAt),
		CertNotAfter: apiview.Timestamp(a.CertNotAfter), Revoked: a.Revoked, RevokedAt: apiview.Timestamp(a.RevokedAt), RevokeReason: a.RevokeReason,
		TerminatedAt: apiview.Timestamp(a.TerminatedAt)}
}
