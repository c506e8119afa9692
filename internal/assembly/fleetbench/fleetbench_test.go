package fleetbench_test

import (
	"context"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/internal/assembly/fleetbench"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
)

// TestRunCompletes runs a small fleet for each action and checks every
// target answered; the figures themselves are for the benchmark to report.
func TestRunCompletes(t *testing.T) {
	for _, action := range fleetbench.Actions {
		t.Run(action, func(t *testing.T) {
			res, err := fleetbench.Run(context.Background(), fleetbench.Options{Agents: 5, Action: action})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Agents != 5 || res.DispatchToAllDoneMS <= 0 || res.ControllerRSSBytes <= 0 || !res.SimulatedAgents {
				t.Fatalf("result %+v", res)
			}
			if res.ControllerRSSIdleBytes <= 0 || res.ControllerRSSPerAgentBytes != fleetbench.PerAgent(res.ControllerRSSBytes, res.ControllerRSSIdleBytes, 5) {
				t.Fatalf("idle RSS %d, per agent %.0f, in result %+v", res.ControllerRSSIdleBytes, res.ControllerRSSPerAgentBytes, res)
			}
		})
	}
	if _, err := fleetbench.Run(context.Background(), fleetbench.Options{Agents: 1, Action: hostisolate.IsolateName}); err == nil {
		t.Fatal("a real isolation action was accepted for a benchmark")
	}
}

// TestFleetFromOneAddressEnrolls checks that the benchmark's fleet, which
// enrolls from 127.0.0.1 alone, is not held back by the per-address
// enrollment limit: more agents than its default burst all enroll.
func TestFleetFromOneAddressEnrolls(t *testing.T) {
	n := fleet.DefaultEnrollPerSourceBurst + 50
	res, err := fleetbench.Run(context.Background(), fleetbench.Options{Agents: n, Action: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Agents != n {
		t.Fatalf("result %+v, want all %d agents answering", res, n)
	}
}

func TestPerAgent(t *testing.T) {
	for _, c := range []struct {
		rss, idle int64
		agents    int
		want      float64
	}{
		{rss: 150 << 20, idle: 50 << 20, agents: 1000, want: 100 << 20 / 1000.0},
		{rss: 60 << 20, idle: 60 << 20, agents: 10, want: 0},
		// The heap can shrink after the fleet connected: a negative
		// figure is reported as measured.
		{rss: 50 << 20, idle: 60 << 20, agents: 10, want: -(10 << 20) / 10.0},
		{rss: 50 << 20, idle: 10 << 20, agents: 0, want: 0},
	} {
		if got := fleetbench.PerAgent(c.rss, c.idle, c.agents); got != c.want {
			t.Errorf("PerAgent(%d, %d, %d) = %v, want %v", c.rss, c.idle, c.agents, got, c.want)
		}
	}
}
