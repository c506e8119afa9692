package lab

import (
	"maps"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/readiness"
)

// TestScenariosMatchReadiness keeps the controller's list of drill
// scenarios, which the readiness review wants drilled and RecordDrill
// accepts, equal to the lab's scenarios and their playbooks.
func TestScenariosMatchReadiness(t *testing.T) {
	lab := map[string]string{}
	for name, sc := range Scenarios {
		lab[name] = sc.Playbook
	}
	if !maps.Equal(lab, readiness.DrillScenarios) {
		t.Fatalf("lab scenarios %v, readiness.DrillScenarios %v", lab, readiness.DrillScenarios)
	}
}
