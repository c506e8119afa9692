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
