package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// Leases checks the leased singletons, their fencing and the controller
// registry; open returns a fresh, empty store per subtest. Run calls it.
func Leases(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	const ttl = 10 * time.Second
	at := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }

	acquire := func(t *testing.T, s store.Store, holder string, when time.Time, wantHeld bool) store.Lease {
		t.Helper()
		l, held, err := s.AcquireLease(ctx, "sweeper", holder, ttl, when)
		if err != nil {
			t.Fatalf("%s acquiring: %v", holder, err)
		}
		if held != wantHeld {
			t.Fatalf("%s acquiring at %v: held %v, want %v (lease %+v)", holder, when.Sub(now), held, wantHeld, l)
		}
		return l
	}

	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"acquire free", func(t *testing.T, s store.Store) {
			l := acquire(t, s, "a", now, true)
			if l.Name != "sweeper" || l.Holder != "a" || l.Token != 1 || !l.ExpiresAt.Equal(now.Add(ttl)) {
				t.Fatalf("lease %+v", l)
			}
			ls, err := s.ListLeases(ctx)
			if err != nil || len(ls) != 1 || *ls[0] != l {
				t.Fatalf("list %+v %v", ls, err)
			}
		}},
		{"renew keeps the token", func(t *testing.T, s store.Store) {
			l := acquire(t, s, "a", now, true)
			r, err := s.RenewLease(ctx, l, ttl, now.Add(5*time.Second))
			if err != nil || r.Token != 1 || !r.ExpiresAt.Equal(now.Add(15*time.Second)) {
				t.Fatalf("renew %+v %v", r, err)
			}
			// Acquiring again while holding it renews too.
			if again := acquire(t, s, "a", now.Add(8*time.Second), true); again.Token != 1 || !again.ExpiresAt.Equal(now.Add(18*time.Second)) {
				t.Fatalf("re-acquire %+v", again)
			}
		}},
		{"refused while another holds it", func(t *testing.T, s store.Store) {
			acquire(t, s, "a", now, true)
			l := acquire(t, s, "b", now.Add(9*time.Second), false)
			if l.Holder != "a" || l.Token != 1 {
				t.Fatalf("b sees %+v", l)
			}
		}},
		{"taken over after expiry with the next token", func(t *testing.T, s store.Store) {
			acquire(t, s, "a", now, true)
			l := acquire(t, s, "b", now.Add(ttl), true)
			if l.Holder != "b" || l.Token != 2 {
				t.Fatalf("takeover %+v", l)
			}
		}},
		{"taken from a stopped controller before expiry", func(t *testing.T, s store.Store) {
			a := acquire(t, s, "ctl-a", now, true)
			if err := s.HeartbeatController(ctx, &store.ControllerInfo{ID: "ctl-a", StartedAt: now, HeartbeatAt: now}); err != nil {
				t.Fatal(err)
			}
			take := func(holder string, when, stoppedBefore time.Time) store.Lease {
				t.Helper()
				l, _, err := s.AcquireLeaseOfStopped(ctx, "sweeper", holder, ttl, when, stoppedBefore)
				if err != nil {
					t.Fatalf("%s taking: %v", holder, err)
				}
				return l
			}
			// ctl-a beat at now: not stopped by a bound at or before it.
			if l := take("ctl-b", now.Add(2*time.Second), now); l.Holder != "ctl-a" || l.Token != 1 {
				t.Fatalf("taken from a live holder: %+v", l)
			}
			// A holder with no registry entry is live until the expiry.
			orphan, _, _ := s.AcquireLeaseOfStopped(ctx, "other", "no-entry", ttl, now, time.Time{})
			if l, _, err := s.AcquireLeaseOfStopped(ctx, "other", "ctl-b", ttl, now.Add(time.Second), now.Add(time.Second)); err != nil || l.Holder != "no-entry" || l.Token != orphan.Token {
				t.Fatalf("taken from a holder without a registry entry: %+v %v", l, err)
			}
			// Its heartbeat older than the bound: taken, unexpired, with
			// the next token; ctl-a can neither renew nor write.
			l := take("ctl-b", now.Add(6*time.Second), now.Add(time.Second))
			if l.Holder != "ctl-b" || l.Token != 2 || !l.ExpiresAt.Equal(now.Add(6*time.Second+ttl)) {
				t.Fatalf("takeover from a stopped holder: %+v", l)
			}
			if _, err := s.RenewLease(ctx, a, ttl, now.Add(7*time.Second)); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("the stopped holder's renewal: %v", err)
			}
			stale := store.WithFence(ctx, store.Fence{Lease: "sweeper", Token: a.Token, Clock: at(7 * time.Second)})
			if err := s.SetMeta(stale, "k", "by stopped a"); !errors.Is(err, store.ErrFenced) {
				t.Fatalf("the stopped holder's write: %v", err)
			}
			// The new holder renews as usual, keeping its token.
			if again := take("ctl-b", now.Add(8*time.Second), now.Add(time.Second)); again.Holder != "ctl-b" || again.Token != 2 {
				t.Fatalf("renewal by the new holder %+v", again)
			}
		}},
		{"a stale holder's renewal is refused", func(t *testing.T, s store.Store) {
			a := acquire(t, s, "a", now, true)
			acquire(t, s, "b", now.Add(11*time.Second), true)
			if _, err := s.RenewLease(ctx, a, ttl, now.Add(12*time.Second)); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("stale renew: %v", err)
			}
			// Its own expired lease is not renewed either, even when nobody
			// took it: it must acquire again, with a new token.
			s2 := open(t)
			a2, _, _ := s2.AcquireLease(ctx, "sweeper", "a", ttl, now)
			if _, err := s2.RenewLease(ctx, a2, ttl, now.Add(ttl)); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("expired renew: %v", err)
			}
			if l, held, err := s2.AcquireLease(ctx, "sweeper", "a", ttl, now.Add(ttl)); err != nil || !held || l.Token != 2 {
				t.Fatalf("re-acquire after expiry %+v %v %v", l, held, err)
			}
		}},
		{"a fenced write is refused and writes nothing", func(t *testing.T, s store.Store) {
			a := acquire(t, s, "a", now, true)
			fenced := store.WithFence(ctx, store.Fence{Lease: "sweeper", Token: a.Token, Clock: at(time.Second)})
			if err := s.SetMeta(fenced, "k", "by a"); err != nil {
				t.Fatalf("fenced write while holding: %v", err)
			}
			acquire(t, s, "b", now.Add(ttl), true)
			stale := store.WithFence(ctx, store.Fence{Lease: "sweeper", Token: a.Token, Clock: at(ttl + time.Second)})
			run := &store.Run{ID: "r1", Action: "noop", ParamsJSON: []byte("{}"), CreatedAt: now, MaxErrors: "0"}
			writes := map[string]func() error{
				"run": func() error { return s.CreateRun(stale, run, []*store.Task{{ID: "t1", RunID: "r1", AgentID: "x"}}) },
				"audit": func() error {
					return s.AppendAudit(stale, &store.AuditRecord{At: now, Actor: "a", Action: "x", Subject: "y"})
				},
				"meta": func() error { return s.SetMeta(stale, "k", "by stale a") },
			}
			for name, w := range writes {
				err := w()
				if !errors.Is(err, store.ErrFenced) {
					t.Fatalf("stale %s write: %v", name, err)
				}
			}
			if _, _, err := s.GetRun(ctx, "r1"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a refused run was stored: %v", err)
			}
			if recs, err := s.ListAudit(ctx, 0, 10); err != nil || len(recs) != 0 {
				t.Fatalf("a refused audit record was stored: %d %v", len(recs), err)
			}
			if v, _ := s.GetMeta(ctx, "k"); v != "by a" {
				t.Fatalf("meta %q after a refused write", v)
			}
		}},
		{"a fenced write after the lease expired is refused", func(t *testing.T, s store.Store) {
			a := acquire(t, s, "a", now, true)
			late := store.WithFence(ctx, store.Fence{Lease: "sweeper", Token: a.Token, Clock: at(ttl)})
			if err := s.SetMeta(late, "k", "late"); !errors.Is(err, store.ErrFenced) {
				t.Fatalf("write past expiry: %v", err)
			}
			unknown := store.WithFence(ctx, store.Fence{Lease: "nobody-holds-this", Token: 1, Clock: at(0)})
			if err := s.SetMeta(unknown, "k", "x"); !errors.Is(err, store.ErrFenced) {
				t.Fatalf("write fenced by an unknown lease: %v", err)
			}
		}},
		{"release hands it over with the next token", func(t *testing.T, s store.Store) {
			a := acquire(t, s, "a", now, true)
			if err := s.ReleaseLease(ctx, a); err != nil {
				t.Fatal(err)
			}
			if l := acquire(t, s, "b", now.Add(time.Second), true); l.Token != 2 {
				t.Fatalf("after release %+v", l)
			}
			// Releasing a lease no longer held leaves the new holder alone.
			if err := s.ReleaseLease(ctx, a); err != nil {
				t.Fatal(err)
			}
			if l := acquire(t, s, "c", now.Add(2*time.Second), false); l.Holder != "b" {
				t.Fatalf("stale release freed the lease: %+v", l)
			}
		}},
		{"two holders racing for a free lease: one wins", func(t *testing.T, s store.Store) {
			var wg sync.WaitGroup
			held := make([]bool, 8)
			errs := make([]error, 8)
			for i := range held {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, held[i], errs[i] = s.AcquireLease(ctx, "race", string(rune('a'+i)), ttl, now)
				}()
			}
			wg.Wait()
			n := 0
			for i, h := range held {
				if errs[i] != nil {
					t.Fatalf("racer %d: %v", i, errs[i])
				}
				if h {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d racers hold the lease", n)
			}
		}},
		{"controller registry", func(t *testing.T, s store.Store) {
			old := &store.ControllerInfo{ID: "c-old", Address: "10.0.0.1:7443", Version: "v1", StartedAt: now, HeartbeatAt: now}
			cur := &store.ControllerInfo{ID: "c-new", Address: "10.0.0.2:7443", Version: "v1", StartedAt: now, HeartbeatAt: now, Agents: 3,
				Leases: []string{"sweeper"}}
			for _, c := range []*store.ControllerInfo{old, cur} {
				if err := s.HeartbeatController(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			cur.HeartbeatAt, cur.Agents = now.Add(30*time.Second), 4
			if err := s.HeartbeatController(ctx, cur); err != nil {
				t.Fatal(err)
			}
			got, err := s.ListControllers(ctx, now.Add(15*time.Second))
			if err != nil || len(got) != 1 {
				t.Fatalf("live controllers %+v %v", got, err)
			}
			if g := got[0]; g.ID != "c-new" || g.Address != "10.0.0.2:7443" || g.Agents != 4 || len(g.Leases) != 1 || g.Leases[0] != "sweeper" ||
				!g.HeartbeatAt.Equal(now.Add(30*time.Second)) || !g.StartedAt.Equal(now) {
				t.Fatalf("controller %+v", g)
			}
			if all, _ := s.ListControllers(ctx, time.Time{}); len(all) != 2 {
				t.Fatalf("all controllers %+v", all)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
}
