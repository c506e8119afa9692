package operator

import (
	"sync"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

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
