package cluster_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cluster"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// timers holds the local-deadline timers a runner armed, to fire by hand.
type timers struct {
	mu  sync.Mutex
	fns []func()
}

func (ts *timers) afterFunc(_ time.Duration, f func()) func() bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.fns = append(ts.fns, f)
	return func() bool { return true }
}

// fireLast fires the most recently armed timer, as if its time had come.
func (ts *timers) fireLast() {
	ts.mu.Lock()
	f := ts.fns[len(ts.fns)-1]
	ts.mu.Unlock()
	f()
}

// job records each run of a singleton's job: its context, and when it
// ended.
type job struct {
	started chan context.Context
	ended   chan struct{}
}

func newJob() *job {
	return &job{started: make(chan context.Context, 4), ended: make(chan struct{}, 4)}
}

func (j *job) run(ctx context.Context) error {
	j.started <- ctx
	<-ctx.Done()
	j.ended <- struct{}{}
	return nil
}

func (j *job) waitStarted(t *testing.T, who string) context.Context {
	t.Helper()
	select {
	case ctx := <-j.started:
		return ctx
	case <-time.After(10 * time.Second):
		t.Fatalf("%s's job never started", who)
		return nil
	}
}

func (j *job) waitEnded(t *testing.T, who string) {
	t.Helper()
	select {
	case <-j.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s's job was never cancelled", who)
	}
}

func (j *job) notStarted(t *testing.T, who string) {
	t.Helper()
	select {
	case <-j.started:
		t.Fatalf("%s's job started while another controller holds the lease", who)
	default:
	}
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// controllerUnderTest is one runner with its job, clock and timers.
type controllerUnderTest struct {
	r      *cluster.Runner
	job    *job
	clock  *clock
	timers *timers
}

func newController(t *testing.T, s store.Store, id string, now time.Time) *controllerUnderTest {
	t.Helper()
	return newControllerStoppedAfter(t, s, id, now, 0)
}

// newControllerStoppedAfter is newController whose runner takes leases
// from holders whose heartbeat is stoppedAfter old.
func newControllerStoppedAfter(t *testing.T, s store.Store, id string, now time.Time, stoppedAfter time.Duration) *controllerUnderTest {
	t.Helper()
	c := &controllerUnderTest{job: newJob(), clock: &clock{now: now}, timers: &timers{}}
	r, err := cluster.NewRunner(cluster.Config{Store: s, ID: id, TTL: 10 * time.Second, StoppedAfter: stoppedAfter, Clock: c.clock.Now,
		AfterFunc: c.timers.afterFunc, Jobs: []cluster.Job{{Lease: cluster.LeasePlaybooks, Run: c.job.run}}})
	if err != nil {
		t.Fatal(err)
	}
	c.r = r
	t.Cleanup(r.Stop)
	return c
}

// TestSingletonTakeover runs two controllers' runners over one store: one
// holds the lease and runs the job; when it stops renewing, its job is
// cancelled (by its local deadline, or by its next failed renewal), the
// other takes the lease over with the next token, and the first one's
// fenced writes are refused.
func TestSingletonTakeover(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		// lose makes a cancel a's job after a stopped renewing; b's clock
		// is then moved past the lease's expiry in the store.
		lose func(t *testing.T, a, b *controllerUnderTest)
	}{
		{"the local deadline timer fires", func(t *testing.T, a, b *controllerUnderTest) {
			a.clock.Add(8 * time.Second)
			a.timers.fireLast()
		}},
		{"the next step is past the local deadline", func(t *testing.T, a, b *controllerUnderTest) {
			// A paused process: when it runs again, it cancels the job
			// before it reaches the store.
			a.clock.Add(20 * time.Second)
			a.r.Step(context.Background())
		}},
		{"the renewal is refused", func(t *testing.T, a, b *controllerUnderTest) {
			// b's clock runs ahead: b takes the lease over while a still
			// thinks it has time; a's next renewal is refused.
			b.clock.Add(20 * time.Second)
			b.r.Step(context.Background())
			a.clock.Add(time.Second)
			a.r.Step(context.Background())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := openStore(t)
			a := newController(t, s, "ctl-a", t0)
			b := newController(t, s, "ctl-b", t0)

			a.r.Step(ctx)
			aCtx := a.job.waitStarted(t, "a")
			b.r.Step(ctx)
			b.job.notStarted(t, "b")
			if !a.r.Held()[cluster.LeasePlaybooks] || b.r.Held()[cluster.LeasePlaybooks] {
				t.Fatalf("held: a %v b %v", a.r.Held(), b.r.Held())
			}
			// a renews; b still cannot take it.
			a.clock.Add(3 * time.Second)
			b.clock.Add(3 * time.Second)
			a.r.Step(ctx)
			b.r.Step(ctx)
			b.job.notStarted(t, "b")
			if err := s.SetMeta(aCtx, "written-by", "a"); err != nil {
				t.Fatalf("a's fenced write while holding: %v", err)
			}

			// a stops renewing.
			tc.lose(t, a, b)
			a.job.waitEnded(t, "a")
			if a.r.Held()[cluster.LeasePlaybooks] {
				t.Fatal("a still holds the lease after losing it")
			}
			if !b.r.Held()[cluster.LeasePlaybooks] {
				b.clock.Add(10 * time.Second)
				b.r.Step(ctx)
			}
			b.job.waitStarted(t, "b")
			if got := b.r.HeldLeases(); len(got) != 1 || got[0] != cluster.LeasePlaybooks {
				t.Fatalf("b holds %v", got)
			}
			ls, err := s.ListLeases(ctx)
			if err != nil || len(ls) != 1 || ls[0].Holder != "ctl-b" || ls[0].Token != 2 {
				t.Fatalf("leases %+v %v", ls, err)
			}
			// Whatever a still tries to write with its job's context is
			// refused, even past the cancellation.
			err = s.SetMeta(context.WithoutCancel(aCtx), "written-by", "stale a")
			if !errors.Is(err, store.ErrFenced) {
				t.Fatalf("stale a's write: %v", err)
			}
			if v, _ := s.GetMeta(ctx, "written-by"); v != "a" {
				t.Fatalf("written-by %q", v)
			}
		})
	}
}

// TestSingletonTakenFromAStoppedController: with StoppedAfter, a lease
// whose holder's registry heartbeat stopped is taken before it expires,
// with the next token; a holder still beating keeps it, and the stopped
// one, if it runs again, can neither renew nor write.
func TestSingletonTakenFromAStoppedController(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := openStore(t)
	beat := func(id string, at time.Time) {
		t.Helper()
		if err := s.HeartbeatController(ctx, &store.ControllerInfo{ID: id, StartedAt: t0, HeartbeatAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	a := newControllerStoppedAfter(t, s, "ctl-a", t0, 5*time.Second)
	b := newControllerStoppedAfter(t, s, "ctl-b", t0, 5*time.Second)
	beat("ctl-a", t0)
	beat("ctl-b", t0)
	a.r.Step(ctx)
	aCtx := a.job.waitStarted(t, "a")

	// a beats and renews at +3 s (the lease now expires at +13 s), then
	// stops. At +7 s its heartbeat is 4 s old: live.
	beat("ctl-a", t0.Add(3*time.Second))
	a.clock.Add(3 * time.Second)
	a.r.Step(ctx)
	b.clock.Add(7 * time.Second)
	b.r.Step(ctx)
	b.job.notStarted(t, "b")

	// At +9 s a's heartbeat is 6 s old: stopped. The lease is taken 4 s
	// before it expires, with the next token.
	b.clock.Add(2 * time.Second)
	b.r.Step(ctx)
	b.job.waitStarted(t, "b")
	ls, err := s.ListLeases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder != "ctl-b" || ls[0].Token != 2 {
		t.Fatalf("leases %+v %v", ls, err)
	}
	// a runs again at +10 s, before its local deadline: its renewal is
	// refused, its job ends, and its writes are refused too.
	a.clock.Add(7 * time.Second)
	a.r.Step(ctx)
	a.job.waitEnded(t, "a")
	if a.r.Held()[cluster.LeasePlaybooks] {
		t.Fatal("the stopped controller still holds the lease")
	}
	if err := s.SetMeta(context.WithoutCancel(aCtx), "written-by", "stopped a"); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the stopped controller's write: %v", err)
	}
}

// TestSingletonStopReleases checks that a controller that stops cleanly
// gives its leases up, so the next one takes them without waiting for the
// TTL.
func TestSingletonStopReleases(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ctx := context.Background()
	s := openStore(t)
	a := newController(t, s, "ctl-a", t0)
	b := newController(t, s, "ctl-b", t0)
	a.r.Step(ctx)
	a.job.waitStarted(t, "a")
	a.r.Stop()
	a.job.waitEnded(t, "a")
	b.clock.Add(time.Second)
	b.r.Step(ctx)
	b.job.waitStarted(t, "b")
}

// TestSingletonJobError checks that a job's own error (not a lost lease)
// stops the runner with it, as a failing job stopped the controller when
// it ran unleased.
func TestSingletonJobError(t *testing.T) {
	s := openStore(t)
	boom := errors.New("boom")
	r, err := cluster.NewRunner(cluster.Config{Store: s, TTL: time.Hour,
		Jobs: []cluster.Job{{Lease: cluster.LeaseSQS, Run: func(context.Context) error { return boom }}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Run: %v", err)
	}
}

func TestConfigRefusals(t *testing.T) {
	s := openStore(t)
	run := func(context.Context) error { return nil }
	tests := []struct {
		name string
		cfg  cluster.Config
	}{
		{"no store", cluster.Config{}},
		{"two jobs on one lease", cluster.Config{Store: s, Jobs: []cluster.Job{{Lease: "x", Run: run}, {Lease: "x", Run: run}}}},
		{"a job without a lease", cluster.Config{Store: s, Jobs: []cluster.Job{{Run: run}}}},
		{"a margin beyond the TTL", cluster.Config{Store: s, TTL: time.Second, Margin: 2 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := cluster.NewRunner(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
