package ids_test

import (
	"testing"

	"github.com/firebreak-ir/firebreak/internal/ids"
)

func TestNewIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := ids.New("run")
		if !ids.Valid("run", id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "run-", "task-0123456789abcdef", "run-0123456789abcdeu", "run-0123"} {
		if ids.Valid("run", bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
