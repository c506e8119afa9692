package runs

import (
	"errors"
	"fmt"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// TestServingWorkers: a connected worker that reports itself degraded is
// not given account tasks; an offline one is planned as before (its live
// state is unknown); a report never adds a worker.
func TestServingWorkers(t *testing.T) {
	worker := func(id string, connected bool, degraded string) Agent {
		return Agent{Agent: &store.Agent{ID: id, Role: "worker"}, Connected: connected, Facts: &agentv1.AgentFacts{Degraded: degraded}}
	}
	tests := []struct {
		name    string
		workers []Agent
		want    []string
		refused bool
	}{
		{name: "healthy workers all serve", workers: []Agent{worker("w1", true, ""), worker("w2", true, "")}, want: []string{"w1", "w2"}},
		{name: "a degraded worker is left out", workers: []Agent{worker("w1", true, "no credentials"), worker("w2", true, "")}, want: []string{"w2"}},
		{name: "an offline worker's stored report does not count", workers: []Agent{worker("w1", false, "no credentials")}, want: []string{"w1"}},
		{name: "every worker degraded", workers: []Agent{worker("w1", true, "no credentials")}, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := serving(tt.workers, "aws-iam-contain")
			if tt.refused {
				if !errors.Is(err, ErrNoTargets) {
					t.Fatalf("serving = %v, %v; want ErrNoTargets", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, w := range got {
				ids = append(ids, w.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Fatalf("serving = %v; want %v", ids, tt.want)
			}
		})
	}
}
