package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// ErrNotForgettable refuses to forget an agent that may still be in use:
// one that is neither revoked nor long gone.
var ErrNotForgettable = errors.New("the agent is neither revoked nor long gone")

// Why an agent may be forgotten, as ForgetAgents reports it.
const (
	ForgetRevoked = "revoked"
	ForgetGone    = "gone"
)

// Revoke marks an agent revoked, with when and why: its certificate stops
// working for every call at once (renewal, Connect, evidence upload), its
// live stream on this controller is closed now, no run targets it again,
// and its instance cannot enroll again until the agent is forgotten.
// Revoking twice keeps the first time and reason.
func (s *Service) Revoke(ctx context.Context, agentID, reason string) (*store.Agent, error) {
	a, err := s.cfg.Store.GetAgent(ctx, agentID)
	if err != nil {
		return nil, err
	}
	if !a.Revoked {
		a.Revoked, a.RevokedAt, a.RevokeReason = true, s.cfg.Clock(), reason
		if err := s.putAgent(ctx, a); err != nil {
			return nil, err
		}
	}
	s.Disconnect(agentID, errRevoked)
	// In a cluster the agent's stream may be on another controller: it
	// re-reads the agent and closes the stream (see Refresh).
	if n, ok := s.cfg.Dispatcher.(FactsNotifier); ok {
		n.AgentFactsChanged(agentID)
	}
	return a, nil
}

// Forgettable says why an agent may be forgotten now, or refuses with
// ErrNotForgettable: only a revoked agent, one whose instance AWS reported
// terminated, or one offline and unseen for longer than Config.GoneAfter.
// A connected agent is never forgotten.
func (s *Service) Forgettable(a *store.Agent) (string, error) {
	goneAfter := s.cfg.GoneAfter
	if s.Connected(a.ID) {
		return "", fmt.Errorf("%w: agent %s is connected now; revoke it first (`firebreak agents revoke %s`)", ErrNotForgettable, a.ID, a.ID)
	}
	if a.Revoked {
		return ForgetRevoked, nil
	}
	if a.Terminated() {
		return ForgetTerminated, nil
	}
	seen := a.LastSeen
	if t, ok := s.lastSeen(a.ID); ok && t.After(seen) {
		seen = t
	}
	if s.cfg.Clock().Sub(seen) > goneAfter {
		return ForgetGone, nil
	}
	return "", fmt.Errorf("%w: agent %s was last seen %s ago, within the %s after which an agent counts as gone; revoke it first (`firebreak agents revoke %s`)",
		ErrNotForgettable, a.ID, s.cfg.Clock().Sub(seen).Round(time.Second), goneAfter, a.ID)
}

// Forget removes an agent from the fleet: its record and this controller's
// bookkeeping of it. Runs, tasks and evidence keep naming it. Its
// certificate is then refused as that of an agent never enrolled, and its
// instance may enroll again. The caller has checked Forgettable.
func (s *Service) Forget(ctx context.Context, agentID string) error {
	if err := s.cfg.Store.DeleteAgent(ctx, agentID); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.known, agentID)
	delete(s.seen, agentID)
	delete(s.renewedOn, agentID)
	s.mu.Unlock()
	return nil
}

// lastSeen is this controller's latest sighting of an agent not yet
// written to the store.
func (s *Service) lastSeen(agentID string) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.seen[agentID]
	return t, ok
}

// revokedOnInstance returns a revoked, unforgotten agent on the instance
// in account, or nil. Agents not on an EC2 instance have none.
func (s *Service) revokedOnInstance(ctx context.Context, account, instanceID string) (*store.Agent, error) {
	if instanceID == "" {
		return nil, nil
	}
	on, err := s.cfg.Store.AgentsOnInstance(ctx, account, instanceID)
	if err != nil {
		return nil, err
	}
	for _, a := range on {
		if a.Revoked {
			return a, nil
		}
	}
	return nil, nil
}
