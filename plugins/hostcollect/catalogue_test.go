package hostcollect

import (
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostcollect/artifacts"
)

// TestEveryArtifactHasOneCollector: the catalogue as data (package
// artifacts) and the collectors name the same artifacts, in the catalogue's
// order.
func TestEveryArtifactHasOneCollector(t *testing.T) {
	infos := artifacts.Catalogue()
	if len(catalogue) != len(infos) {
		t.Fatalf("%d artifacts with collectors, %d in the catalogue", len(catalogue), len(infos))
	}
	for i, a := range infos {
		if catalogue[i].Name != a.Name || catalogue[i].collect == nil {
			t.Errorf("artifact %d: %q with collector %v, want %q", i, catalogue[i].Name, catalogue[i].collect != nil, a.Name)
		}
	}
	for name := range collectors {
		if !artifacts.Known(name) {
			t.Errorf("collector %q has no artifact in the catalogue", name)
		}
	}
	if artifacts.Known("no_such_artifact") {
		t.Error("Known accepted an artifact that is not in the catalogue")
	}
}
