package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cluster"
)

// TestRegistryHeartbeat records a controller's entry, with its agents and
// leases as they are at each heartbeat, and checks that it leaves the live
// list when its heartbeat ages, and at once when it stops.
func TestRegistryHeartbeat(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	clk := &clock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	agents, leases := 2, []string{cluster.LeasePlaybooks}
	r, err := cluster.NewRegistry(cluster.RegistryConfig{Store: s, ID: "ctl-a", Address: "10.0.0.1:7443", Version: "0.1.0",
		Agents: func() int { return agents }, Leases: func() []string { return leases }, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		before    func()
		liveAfter time.Duration
		wantLive  bool
		wantAgent int64
	}{
		{"first heartbeat", func() {}, -cluster.LiveWithin, true, 2},
		{"agents change", func() { agents = 5; clk.Add(cluster.HeartbeatEvery) }, -cluster.LiveWithin, true, 5},
		{"heartbeat aged", func() { clk.Add(cluster.LiveWithin + time.Second) }, -cluster.LiveWithin, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.before()
			if tc.wantLive {
				if err := r.Heartbeat(ctx); err != nil {
					t.Fatal(err)
				}
			}
			live, err := s.ListControllers(ctx, clk.Now().Add(tc.liveAfter))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantLive {
				if len(live) != 0 {
					t.Fatalf("live %+v", live)
				}
				return
			}
			if len(live) != 1 || live[0].ID != "ctl-a" || live[0].Agents != tc.wantAgent || live[0].Address != "10.0.0.1:7443" ||
				len(live[0].Leases) != 1 || live[0].Leases[0] != cluster.LeasePlaybooks || !live[0].HeartbeatAt.Equal(clk.Now()) {
				t.Fatalf("live %+v", live)
			}
		})
	}
	t.Run("stopped", func(t *testing.T) {
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			live, _ := s.ListControllers(ctx, clk.Now().Add(-cluster.LiveWithin))
			if len(live) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("Run never recorded a heartbeat")
			}
			time.Sleep(10 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if live, _ := s.ListControllers(ctx, clk.Now().Add(-cluster.LiveWithin)); len(live) != 0 {
			t.Fatalf("a stopped controller is live: %+v", live)
		}
	})
}
