package catalog_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/catalog"
)

// TestEveryPluginBinaryIsCatalogued keeps the catalogue in step with the
// plugin binaries under plugins/cmd.
func TestEveryPluginBinaryIsCatalogued(t *testing.T) {
	descs, err := catalog.Descriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("../cmd")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "firebreak-plugin-")
		if !ok {
			continue
		}
		seen++
		if descs[name] == nil {
			t.Errorf("plugin binary %s is not in the catalogue", e.Name())
		}
	}
	if seen != len(descs) {
		t.Errorf("%d plugin binaries, %d catalogued actions", seen, len(descs))
	}
	for name, d := range descs {
		if d.GetRollbackAction() != "" && descs[d.GetRollbackAction()] == nil {
			t.Errorf("%s rolls back with %q, which does not exist", name, d.GetRollbackAction())
		}
	}
}
