package hostisolate

import (
	"context"
	"sync"

	"github.com/google/nftables"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Simulated is the built-in host-isolate-sim action. It runs host-isolate's
// own code (parameter checks, ruleset building, the look-ups, the atomic
// batch, idempotence, reconcile) against an in-memory nf_tables per
// simulated host instead of the kernel, and keeps the record in memory, so
// `firebreak bench fleet --action host-isolate-sim` measures dispatch and
// the plugin's work without cutting any real host off.
type Simulated struct {
	cfg   config
	mu    sync.Mutex
	hosts map[string]*simulatedHost
}

type simulatedHost struct {
	kernel *memnft.Kernel
	store  *memoryStore
}

// NewSimulated returns host-isolate-sim.
func NewSimulated(opts ...Option) *Simulated {
	return &Simulated{cfg: newConfig(opts), hosts: map[string]*simulatedHost{}}
}

// Describe implements sdk.Action.
func (s *Simulated) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return isolateDescription(SimulatedName,
		"SIMULATED host isolation for benchmarks: applies the real host-isolate rule-building code to an in-memory netlink "+
			"connection instead of the kernel; no packet filter changes",
		false, ""), nil
}

// Execute implements sdk.Action.
func (s *Simulated) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := s.cfg.now()
	var p IsolateParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	h := s.host(simulatedHostKey(req))
	c := s.cfg
	c.dial = func() (*nftables.Conn, error) { return h.kernel.Conn() }
	res, err := c.run(ctx, req, emit, h.store, p)
	if res == nil {
		return nil, err
	}
	res.Simulated = true
	res.ElapsedMS = millis(s.cfg.now().Sub(start))
	return res, err
}

// Kernel returns the in-memory nf_tables of a simulated host, keyed as
// Execute keys it (the task's agent id, else the host name), or nil when no
// task has run for it.
func (s *Simulated) Kernel(key string) *memnft.Kernel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hosts[key]; h != nil {
		return h.kernel
	}
	return nil
}

func (s *Simulated) host(key string) *simulatedHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hosts[key]
	if h == nil {
		h = &simulatedHost{kernel: memnft.New(), store: &memoryStore{name: key}}
		s.hosts[key] = h
	}
	return h
}

func simulatedHostKey(req *sdk.Request) string {
	switch {
	case req.Task.GetAgentId() != "":
		return req.Task.GetAgentId()
	case req.Host.GetHostname() != "":
		return req.Host.GetHostname()
	}
	return req.Host.GetStateDir()
}
