package fleet

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Reasons a stream is closed by the controller rather than by the agent.
var (
	errRevoked    = errors.New("the agent has been revoked; the stream is closed")
	errSuperseded = errors.New("the agent's certificate was renewed on another connection; the stream on the superseded certificate is closed")
)

// trustedFacts returns the facts to keep from a hello. Identity facts (the
// instance id, account and region) come from the agent's certificate, which
// the controller issued at enrollment; what the hello says about them is
// ignored, and a hello that claims other values is audited as an identity
// mismatch. Every other fact is the agent's own report and is kept as such.
// Token labels, set by an admin, override the labels the agent reports.
func (s *Service) trustedFacts(ctx context.Context, a *store.Agent, id pki.Identity, hello *agentv1.AgentFacts) *agentv1.AgentFacts {
	facts := proto.Clone(hello).(*agentv1.AgentFacts)
	claimed := map[string][2]string{
		"instance_id": {hello.GetInstanceId(), id.InstanceID},
		"account":     {hello.GetAccount(), id.Account},
		"region":      {hello.GetRegion(), id.Region},
	}
	mismatch := map[string]any{}
	for field, v := range claimed {
		// A field the certificate does not hold (an API worker enrolled by
		// STS has no region in it) cannot be contradicted: the claim is
		// dropped below without a record. One that differs from what the
		// certificate holds, an empty claim included, is recorded.
		if v[1] != "" && v[0] != v[1] {
			mismatch[field] = map[string]string{"claimed": v[0], "certificate": v[1]}
		}
	}
	// Security-critical: an agent never changes its identity by saying so.
	facts.InstanceId, facts.Account, facts.Region = id.InstanceID, id.Account, id.Region
	if len(mismatch) > 0 {
		s.cfg.Audit(ctx, "agent:"+a.ID, "agent.identity_mismatch", a.ID, mismatch)
		s.cfg.Logger.Warn("an agent's hello claims an identity its certificate does not hold; the claim is ignored",
			"agent", a.ID, "mismatch", fmt.Sprint(mismatch))
	}
	facts.Labels = mergeLabels(hello.GetLabels(), a.TokenLabels)
	return facts
}

// Disconnect closes the agent's live stream, if this controller holds it,
// with reason as the cause. It reports whether there was one.
func (s *Service) Disconnect(agentID string, reason error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[agentID]
	if sess == nil {
		return false
	}
	sess.cancel(reason)
	return true
}
