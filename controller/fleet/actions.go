package fleet

import (
	"context"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// reviewActions compares the actions an agent reported in its hello with
// the controller's action catalogue. Every action the agent reports
// differently from the catalogue, or that the catalogue does not hold, is
// audited once for this connection (agent.action_mismatch) and logged; the
// operator service leaves the agent out of those actions' targets.
func (s *Service) reviewActions(ctx context.Context, a *store.Agent) {
	if s.cfg.Actions == nil {
		return
	}
	_, refused := s.cfg.Actions.Review(a.Role, a.Plugins)
	for _, r := range refused {
		s.cfg.Audit(ctx, "agent:"+a.ID, "agent.action_mismatch", a.ID, map[string]any{"agent": a.ID, "hostname": a.Hostname,
			"action": r.Action, "reason": r.Reason, "differences": r.Differences})
		s.cfg.Logger.Warn("agent reports an action the controller will not send it", "agent", a.ID, "hostname", a.Hostname,
			"action", r.Action, "reason", r.Reason, "differences", r.Differences)
	}
}
