package runs

import (
	"context"
	"fmt"
	"sync"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/selector"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Agent is an enrolled, unrevoked agent with its live state, as the
// planner sees it.
type Agent struct {
	*store.Agent
	// Facts are the agent's latest facts: live ones when it is connected.
	Facts *agentv1.AgentFacts
	// Connected is true while the agent holds a stream.
	Connected bool
	// Actions are the actions the agent reported with the catalogue's
	// exact description: the only ones it is a target for.
	Actions map[string]bool
	// Refused are the actions it reported that it is not sent.
	Refused []actioncatalog.Refusal
}

// Target is what a selector matches an agent on.
func (a Agent) Target() selector.Target {
	return selector.Target{ID: a.ID, Role: a.Role, Hostname: a.Hostname, Account: a.Facts.GetAccount(), Region: a.Facts.GetRegion(),
		InstanceID: a.Facts.GetInstanceId(), Labels: a.Facts.GetLabels(), Connected: a.Connected, Isolated: a.Facts.GetIsolated(),
		Simulated: a.Facts.GetSimulated()}
}

// Agents returns the unrevoked agents with their live state and the
// catalogue's verdict on the actions each reported.
func (p *Planner) Agents(ctx context.Context) ([]Agent, error) {
	all, err := p.cfg.Fleet.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing agents: %w", err)
	}
	out := make([]Agent, 0, len(all))
	for _, a := range all {
		if a.Revoked {
			continue
		}
		v := Agent{Agent: a, Facts: a.Facts, Connected: p.cfg.Fleet.Connected(a.ID)}
		v.Actions, v.Refused = p.reviews.review(p.cfg.Actions, a.ID, a.Role, a.Plugins)
		if f := p.cfg.Fleet.Facts(a.ID); f != nil {
			v.Facts = f
		}
		out = append(out, v)
	}
	return out, nil
}

// RevokedAgents returns the revoked agents that are not yet forgotten,
// with their last stored facts.
func (p *Planner) RevokedAgents(ctx context.Context) ([]Agent, error) {
	all, err := p.cfg.Fleet.Agents(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing agents: %w", err)
	}
	var out []Agent
	for _, a := range all {
		if a.Revoked {
			out = append(out, Agent{Agent: a, Facts: a.Facts})
		}
	}
	return out, nil
}

// RevokedMatches returns the ids of revoked agents the selector matches,
// so that a run aimed at them can say why it reaches no one.
func (p *Planner) RevokedMatches(ctx context.Context, sel *selector.Selector) []string {
	all, err := p.cfg.Fleet.Agents(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range all {
		if a.Revoked && sel.Match(Agent{Agent: a, Facts: a.Facts}.Target()) {
			out = append(out, a.ID)
		}
	}
	return out
}

// actionReviews caches, per agent, the catalogue's verdict on the plugins
// it reported, so planning a run over thousands of agents does not compare
// every description each time. A verdict is reused only while the agent's
// plugin list is the very same slice (the fleet replaces it at each hello)
// and the catalogue holds as many actions as when it was made (registrations
// only add actions).
type actionReviews struct {
	mu      sync.Mutex
	byAgent map[string]*actionReview
}

type actionReview struct {
	first    *agentv1.PluginInfo
	n        int
	catalog  int
	accepted map[string]bool
	refused  []actioncatalog.Refusal
}

func (r *actionReviews) review(cat *actioncatalog.Catalogue, agentID, role string, plugins []*agentv1.PluginInfo) (map[string]bool, []actioncatalog.Refusal) {
	var first *agentv1.PluginInfo
	if len(plugins) > 0 {
		first = plugins[0]
	}
	size := cat.Len()
	r.mu.Lock()
	if r.byAgent == nil {
		r.byAgent = map[string]*actionReview{}
	}
	if c := r.byAgent[agentID]; c != nil && c.first == first && c.n == len(plugins) && c.catalog == size {
		r.mu.Unlock()
		return c.accepted, c.refused
	}
	r.mu.Unlock()
	accepted, refused := cat.Review(role, plugins)
	r.mu.Lock()
	r.byAgent[agentID] = &actionReview{first: first, n: len(plugins), catalog: size, accepted: accepted, refused: refused}
	r.mu.Unlock()
	return accepted, refused
}
