package finding_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/finding"
)

// FuzzParseEvent feeds arbitrary events to the parser; it must never panic,
// and what it accepts must be usable.
func FuzzParseEvent(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"detail":{"a":{"a":[[[[{}]]]]}}}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := finding.ParseEvent(data)
		if err != nil {
			_ = err.Error()
			return
		}
		for _, f := range fs {
			if f.ID == "" || f.Type == "" || f.Account == "" || f.UpdatedAt.IsZero() {
				t.Fatalf("accepted an incomplete finding: %+v", f)
			}
			if _, err := json.Marshal(f.Map()); err != nil {
				t.Fatalf("Map() does not encode: %v", err)
			}
			_ = f.DedupKey()
		}
	})
}

// FuzzParseRules feeds arbitrary rules files to the parser and matches
// what it accepts against a sample finding; neither may panic.
func FuzzParseRules(f *testing.F) {
	if data, err := os.ReadFile("testdata/rules.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("- {name: r, match: {types: ['*']}, playbook: p, inputs: {x: '${{ finding.tags.Name }}'}}\n"))
	f.Add([]byte("- &a [*a]\n"))
	sampleEvent, err := os.ReadFile("testdata/securityhub-imported.json")
	if err != nil {
		f.Fatal(err)
	}
	findings, err := finding.ParseEvent(sampleEvent)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := finding.ParseRules("fuzz.yaml", data)
		if err != nil {
			_ = err.Error()
			return
		}
		for _, fd := range findings {
			for _, r := range rs.Match(fd) {
				r.PlaybookInputs(fd, nil)
				r.PlaybookInputs(fd, []string{"instance_id"})
			}
		}
	})
}
