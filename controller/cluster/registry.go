package cluster

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// HeartbeatEvery is how often a controller records its registry entry,
// and LiveWithin how recent an entry must be for the controller to count
// as live: listed by `firebreak controllers list`, linked to by the
// others, and the owner of its runs. Five missed beats make a controller
// dead, and its runs are adopted by another: a few seconds after a kill,
// not a quarter of a minute. Adopting a run whose owner was only slow is
// safe: the owner's later writes to it are refused (the runs' owner
// column fences them) and it drops the run. A beat is one small write a
// second per controller.
const (
	HeartbeatEvery = time.Second
	LiveWithin     = 5 * HeartbeatEvery
)

// RegistryConfig configures a controller's registry heartbeat.
type RegistryConfig struct {
	// Store keeps the registry.
	Store store.Leases
	// ID is the controller's id (Runner.ID).
	ID string
	// Address is the controller's --listen address.
	Address string
	// Version is the controller's build version.
	Version string
	// Agents counts the agent streams the controller holds.
	Agents func() int
	// Leases names the leases it holds (Runner.HeldLeases); nil: none.
	Leases func() []string
	// Every is the heartbeat interval (default HeartbeatEvery).
	Every time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *RegistryConfig) CheckAndSetDefaults() error {
	if c.Store == nil || c.ID == "" || c.Agents == nil {
		return errors.New("cluster: the registry heartbeat needs a Store, the controller ID and an Agents count")
	}
	if c.Leases == nil {
		c.Leases = func() []string { return nil }
	}
	if c.Every == 0 {
		c.Every = HeartbeatEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Registry keeps one controller's entry in the controller registry.
type Registry struct {
	cfg     RegistryConfig
	started time.Time
}

// NewRegistry returns a registry heartbeat; call Run to start it.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Registry{cfg: cfg, started: cfg.Clock()}, nil
}

// Heartbeat records the controller's entry once.
func (r *Registry) Heartbeat(ctx context.Context) error {
	return r.cfg.Store.HeartbeatController(ctx, &store.ControllerInfo{ID: r.cfg.ID, Address: r.cfg.Address, Version: r.cfg.Version,
		StartedAt: r.started, HeartbeatAt: r.cfg.Clock(), Agents: int64(r.cfg.Agents()), Leases: r.cfg.Leases()})
}

// Run records the entry at once and then every Every until ctx ends, when
// it marks the entry as stopped, so the controller leaves the live list at
// once. A failed heartbeat is logged and tried again at the next one.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	for {
		if err := r.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("recording the controller's registry heartbeat failed; retrying", "controller_id", r.cfg.ID, "error", err)
		}
		select {
		case <-ctx.Done():
			r.stopped(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
		}
	}
}

// stopped records that the controller stopped: an entry with no heartbeat
// is never live.
func (r *Registry) stopped(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Every)
	defer cancel()
	if err := r.cfg.Store.HeartbeatController(ctx, &store.ControllerInfo{ID: r.cfg.ID, Address: r.cfg.Address, Version: r.cfg.Version,
		StartedAt: r.started}); err != nil {
		r.cfg.Logger.Warn("marking the controller stopped in the registry failed; it leaves the live list when its heartbeat ages", "controller_id", r.cfg.ID, "error", err)
	}
}
