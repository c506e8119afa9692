// Package cluster runs the jobs that must run once among the controllers
// that share a store (leased singletons with fencing), and keeps this
// controller's entry in the controller registry.
//
// A singleton holds a lease row with a TTL and a fencing token. The runner
// tries to take each lease every TTL/3 and renews the ones it holds. While
// it holds a lease it runs the job with a fenced context (store.WithFence),
// so every store write the job makes checks, in its own transaction, that
// the lease is still held with that token. The job's context is cancelled
// at once when a renewal fails, and when the local deadline (the last
// renewal + TTL − margin) passes without a renewal, so a process that was
// paused knows it lost the lease before it can reach the store again; the
// fence refuses whatever it writes in between.
//
// With one controller (the embedded SQLite store) the controller simply
// holds every lease.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
)

// The singleton jobs of a controller, by lease name.
const (
	// LeasePlaybooks is the playbook executor, which resumes the playbook
	// runs a crash interrupted.
	LeasePlaybooks = "playbook-executor"
	// LeaseSQS is the SQS findings poller.
	LeaseSQS = "sqs-poller"
	// LeaseRuns is run resumption: adopting the active runs of a
	// controller that died, so its runs go on from another.
	LeaseRuns = "run-resumer"
	// LeaseReadiness is the scheduled readiness review
	// (--readiness-every).
	LeaseReadiness = "readiness-schedule"
	// LeaseTerminated is the sweep that marks agents whose instance AWS
	// reports terminated and forgets them after --forget-terminated-after.
	LeaseTerminated = "terminated-sweep"
)

// DefaultTTL is a lease's default time to live (--lease-ttl).
const DefaultTTL = 10 * time.Second

// NewID returns a controller id: random for each process start.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "ctl-" + hex.EncodeToString(b)
}

// Job is a job that must run once in the cluster.
type Job struct {
	// Lease names the job's lease.
	Lease string
	// Run runs the job until ctx ends. ctx is fenced by the lease: a store
	// write made with it (or a context derived from it) is refused once
	// the lease has moved on. Returning an error while the lease is held
	// stops the runner with that error; returning nil ends the job and
	// gives the lease up.
	Run func(ctx context.Context) error
}

// Config configures a Runner.
type Config struct {
	// Store keeps the leases.
	Store store.Leases
	// ID is this controller's id, the holder of its leases; defaults to
	// NewID().
	ID string
	// TTL is how long a lease lasts without renewal (default DefaultTTL).
	// The runner tries to take or renew each lease every TTL/3.
	TTL time.Duration
	// Margin is how long before the lease's expiry in the store the job is
	// cancelled when no renewal came (default TTL/5), room for the clocks
	// of two controllers to differ.
	Margin time.Duration
	// StoppedAfter, when set, lets the runner take a lease before it
	// expires from a holder whose registry heartbeat is that old: a
	// controller that stopped (the registry's LiveWithin). Its runs are
	// adopted by the same rule, so its singletons need not wait out the
	// TTL either. Zero waits for the expiry.
	StoppedAfter time.Duration
	// Jobs are the singletons.
	Jobs []Job
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// AfterFunc arms the local deadline; defaults to time.AfterFunc. Tests
	// with a fake clock replace it.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil {
		return errors.New("cluster: missing Store")
	}
	seen := map[string]bool{}
	for _, j := range c.Jobs {
		if j.Lease == "" || j.Run == nil {
			return fmt.Errorf("cluster: job %q needs a lease name and a Run function", j.Lease)
		}
		if seen[j.Lease] {
			return fmt.Errorf("cluster: two jobs share the lease %q", j.Lease)
		}
		seen[j.Lease] = true
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.StoppedAfter < 0 {
		return fmt.Errorf("cluster: StoppedAfter must not be negative, not %s", c.StoppedAfter)
	}
	if c.TTL < 0 {
		return fmt.Errorf("cluster: the lease TTL must be positive, not %s", c.TTL)
	}
	if c.Margin == 0 {
		c.Margin = c.TTL / 5
	}
	if c.Margin < 0 || c.Margin >= c.TTL {
		return fmt.Errorf("cluster: the lease margin %s must be between 0 and the TTL %s", c.Margin, c.TTL)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.AfterFunc == nil {
		c.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	return nil
}

// Runner runs the singleton jobs of one controller.
type Runner struct {
	cfg   Config
	jobs  []*singleton
	fatal chan error
}

// NewRunner returns a runner; call Run to start it.
func NewRunner(cfg Config) (*Runner, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, fatal: make(chan error, len(cfg.Jobs))}
	for _, j := range cfg.Jobs {
		r.jobs = append(r.jobs, &singleton{r: r, job: j})
	}
	return r, nil
}

// ID is the controller id the runner holds leases as.
func (r *Runner) ID() string { return r.cfg.ID }

// Held reports, for each job's lease, whether this controller holds it.
func (r *Runner) Held() map[string]bool {
	out := make(map[string]bool, len(r.jobs))
	for _, s := range r.jobs {
		s.mu.Lock()
		out[s.job.Lease] = s.held
		s.mu.Unlock()
	}
	return out
}

// HeldLeases names the leases this controller holds, sorted.
func (r *Runner) HeldLeases() []string {
	var out []string
	for name, h := range r.Held() {
		if h {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Run takes, renews and runs the singletons every TTL/3 until ctx ends,
// then stops every job and releases its leases, so another controller
// takes them at once. It returns the first error a job returned while it
// held its lease.
func (r *Runner) Run(ctx context.Context) error {
	r.cfg.Logger.Info("running leased singletons", "controller_id", r.cfg.ID, "lease_ttl", r.cfg.TTL,
		"leases", strings.Join(r.leaseNames(), ","))
	tick := time.NewTicker(r.cfg.TTL / 3)
	defer tick.Stop()
	var err error
	for {
		r.Step(ctx)
		select {
		case <-ctx.Done():
		case err = <-r.fatal:
		case <-tick.C:
			continue
		}
		break
	}
	r.Stop()
	return err
}

func (r *Runner) leaseNames() []string {
	out := make([]string, len(r.jobs))
	for i, s := range r.jobs {
		out[i] = s.job.Lease
	}
	return out
}

// Step makes one attempt for every singleton: it cancels a job whose local
// deadline passed, renews the leases it holds and tries to take the
// others. Run calls it every TTL/3; tests with a fake clock call it
// directly.
func (r *Runner) Step(ctx context.Context) {
	for _, s := range r.jobs {
		s.step(ctx)
	}
}

// Stop cancels every job, waits for them and releases the leases they
// held.
func (r *Runner) Stop() {
	for _, s := range r.jobs {
		s.stop()
	}
}

// singleton is one job and the state of its lease.
type singleton struct {
	r   *Runner
	job Job

	mu sync.Mutex
	// held, lease and deadline describe the lease while it is held.
	held     bool
	lease    store.Lease
	deadline time.Time
	// gen invalidates an armed deadline when the lease is renewed or lost.
	gen      uint64
	stopTime func() bool
	// cancel and done belong to the running job (nil: none runs).
	cancel context.CancelFunc
	done   chan struct{}
	// finished is set when the job returned nil: it is not started again.
	finished bool
}

func (s *singleton) step(ctx context.Context) {
	cfg := &s.r.cfg
	s.mu.Lock()
	now := cfg.Clock()
	if s.held && !now.Before(s.deadline) {
		// The lease is tried for again at the next step at the earliest,
		// once the job has ended.
		s.loseLocked("the local deadline passed without a renewal")
		s.mu.Unlock()
		return
	}
	held, lease, deadline := s.held, s.lease, s.deadline
	running := s.done != nil
	if running {
		select {
		case <-s.done:
			running = false
		default:
		}
	}
	finished := s.finished
	s.mu.Unlock()
	if finished {
		return
	}
	if held {
		// A store that does not answer must not keep the job running past
		// its deadline: the call is cut there.
		// Nor does a runner that is stopping cut it: a renewal failed by
		// the stop would count as a lost lease, and Stop would then leave
		// it held in the store until it expired instead of releasing it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadline.Sub(now))
		l, err := cfg.Store.RenewLease(cctx, lease, cfg.TTL, now)
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.held || s.lease.Token != lease.Token {
			return
		}
		if err != nil {
			s.loseLocked("renewing failed: " + err.Error())
			return
		}
		s.lease = l
		s.armLocked(now)
		return
	}
	// A job cancelled when its lease was lost may still be ending: it is
	// not run twice in this process.
	if running || ctx.Err() != nil {
		return
	}
	// The attempt is not cut by ctx: a take that committed while the
	// runner was stopping must be known, so that Stop releases it rather
	// than leave it held until it expires.
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.TTL/3)
	var stoppedBefore time.Time
	if cfg.StoppedAfter > 0 {
		stoppedBefore = now.Add(-cfg.StoppedAfter)
	}
	l, ok, err := cfg.Store.AcquireLeaseOfStopped(actx, s.job.Lease, cfg.ID, cfg.TTL, now, stoppedBefore)
	acancel()
	if err != nil {
		if ctx.Err() == nil {
			cfg.Logger.Warn("taking a lease failed; retrying", "lease", s.job.Lease, "error", err)
		}
		return
	}
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held, s.lease = true, l
	if ctx.Err() != nil {
		// Stopping: Stop releases it; the job does not start.
		return
	}
	s.armLocked(now)
	telemetry.LeaseChanged(s.job.Lease, telemetry.LeaseAcquired)
	cfg.Logger.Info("took the lease; running its job", "lease", s.job.Lease, "token", l.Token, "controller_id", cfg.ID)
	jctx, cancel := context.WithCancel(ctx)
	fenced := store.WithFence(jctx, store.Fence{Lease: l.Name, Token: l.Token, Clock: cfg.Clock})
	done := make(chan struct{})
	s.cancel, s.done = cancel, done
	go func() {
		defer close(done)
		err := s.job.Run(fenced)
		if jctx.Err() != nil {
			// Cancelled: the lease was lost or the runner stops.
			return
		}
		if err != nil {
			s.r.fatal <- fmt.Errorf("%s: %w", s.job.Lease, err)
			return
		}
		s.mu.Lock()
		s.finished = true
		s.mu.Unlock()
	}()
}

// armLocked sets the local deadline from a renewal made at now and arms
// the timer that cancels the job when it passes. s.mu is held.
func (s *singleton) armLocked(now time.Time) {
	cfg := &s.r.cfg
	s.deadline = now.Add(cfg.TTL - cfg.Margin)
	s.gen++
	if s.stopTime != nil {
		s.stopTime()
	}
	gen := s.gen
	s.stopTime = cfg.AfterFunc(cfg.TTL-cfg.Margin, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.held && s.gen == gen {
			s.loseLocked("the local deadline passed without a renewal")
		}
	})
}

// loseLocked cancels the job at once and forgets the lease. s.mu is held.
func (s *singleton) loseLocked(why string) {
	s.held = false
	s.gen++
	if s.stopTime != nil {
		s.stopTime()
		s.stopTime = nil
	}
	if s.cancel != nil {
		s.cancel()
	}
	telemetry.LeaseChanged(s.job.Lease, telemetry.LeaseLost)
	s.r.cfg.Logger.Warn("lost the lease; its job is cancelled", "lease", s.job.Lease, "token", s.lease.Token,
		"controller_id", s.r.cfg.ID, "reason", why)
}

// stop cancels the job, waits for it, and releases the lease if it is
// still held.
func (s *singleton) stop() {
	s.mu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	done := s.done
	s.mu.Unlock()
	if done != nil {
		<-done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		return
	}
	s.held = false
	s.gen++
	if s.stopTime != nil {
		s.stopTime()
		s.stopTime = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.r.cfg.TTL/3)
	defer cancel()
	if err := s.r.cfg.Store.ReleaseLease(ctx, s.lease); err != nil {
		s.r.cfg.Logger.Warn("releasing a lease failed; it expires on its own", "lease", s.job.Lease, "error", err)
		return
	}
	telemetry.LeaseChanged(s.job.Lease, telemetry.LeaseReleased)
}
