package failoverbench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/assembly/failoverbench"
)

// TestOptionsRefused checks that each bad argument is refused, naming the
// flag, before anything starts.
func TestOptionsRefused(t *testing.T) {
	ok := failoverbench.Options{Controllers: 3, Agents: 10, Rounds: 1, Delay: time.Second}
	tests := []struct {
		name string
		edit func(*failoverbench.Options)
		want string
	}{
		{"one controller", func(o *failoverbench.Options) { o.Controllers = 1 }, "--controllers 1"},
		{"no agents", func(o *failoverbench.Options) { o.Agents = 0 }, "--agents 0"},
		{"no rounds", func(o *failoverbench.Options) { o.Rounds = 0 }, "--rounds 0"},
		{"no delay", func(o *failoverbench.Options) { o.Delay = 0 }, "--delay"},
		{"unknown kill", func(o *failoverbench.Options) { o.Kill = "leader" }, `--kill "leader"`},
		{"not postgres", func(o *failoverbench.Options) { o.Store = "mysql://u@h/db" }, "--store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			if err := o.CheckAndSetDefaults(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckAndSetDefaults: %v, want an error naming %s", err, tt.want)
			}
			// Run refuses the same way, before starting anything.
			if _, err := failoverbench.Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: %v, want an error naming %s", err, tt.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		o := ok
		if err := o.CheckAndSetDefaults(); err != nil {
			t.Fatal(err)
		}
		if o.Kill != failoverbench.KillHolder || o.Executable == "" || o.Progress == nil {
			t.Fatalf("defaults not set: %+v", o)
		}
	})
}

// TestFleetOptionsRefused: the cluster's fleet bench refuses bad arguments
// the same way, before starting anything.
func TestFleetOptionsRefused(t *testing.T) {
	tests := []struct {
		name string
		o    failoverbench.FleetOptions
		want string
	}{
		{"one controller", failoverbench.FleetOptions{Controllers: 1, Agents: 10}, "--controllers 1"},
		{"no agents", failoverbench.FleetOptions{Controllers: 3}, "--agents 0"},
		{"not postgres", failoverbench.FleetOptions{Controllers: 3, Agents: 10, Store: "sqlite:///tmp/x.db"}, "--store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := failoverbench.Fleet(context.Background(), tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Fleet: %v, want an error naming %s", err, tt.want)
			}
		})
	}
}
