package finding_test

import (
	"bytes"
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
		checkReencoding(t, data, fs)
	})
}

// checkReencoding checks that what ParseEvent accepted is stable when
// encoded again: the stored form (the finding as JSON, as cases and
// playbook runs keep it) decodes to the same finding, and an event rebuilt
// from the envelope and each finding's Raw detail parses to the same
// findings.
func checkReencoding(t *testing.T, data []byte, fs []*finding.Finding) {
	t.Helper()
	var want [][]byte
	for _, f := range fs {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatalf("an accepted finding does not encode: %v", err)
		}
		var back finding.Finding
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("a stored finding does not decode: %v\n%s", err, b)
		}
		again, err := json.Marshal(&back)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("a stored finding changes when read back:\n%s\n%s", b, again)
		}
		if back.DedupKey() != f.DedupKey() {
			t.Fatalf("dedup key %q became %q when stored", f.DedupKey(), back.DedupKey())
		}
		want = append(want, b)
	}
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("ParseEvent accepted what encoding/json refuses: %v", err)
	}
	switch fs[0].Source {
	case finding.SourceGuardDuty:
		env["detail"] = fs[0].Raw
	case finding.SourceSecurityHub:
		raws := make([]json.RawMessage, len(fs))
		for i, f := range fs {
			raws[i] = f.Raw
		}
		env["detail"] = map[string]any{"findings": raws}
	default:
		t.Fatalf("finding from unknown source %q", fs[0].Source)
	}
	rebuilt, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(rebuilt) > finding.MaxEventSize {
		return
	}
	again, err := finding.ParseEvent(rebuilt)
	if err != nil {
		t.Fatalf("the event rebuilt from the findings' raw details is refused: %v\n%s", err, rebuilt)
	}
	if len(again) != len(fs) {
		t.Fatalf("rebuilt event gives %d findings, want %d", len(again), len(fs))
	}
	for i, f := range again {
		b, _ := json.Marshal(f)
		if !bytes.Equal(b, want[i]) {
			t.Fatalf("finding %d changed when its event was re-encoded:\n%s\n%s", i, want[i], b)
		}
	}
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
