package playbook_test

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/playbooktest"
)

// FuzzParseValidate feeds arbitrary files through parsing, validation,
// ordering and planning; none of them may panic.
func FuzzParseValidate(f *testing.F) {
	if data, err := os.ReadFile("testdata/ec2.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(header + okStep))
	f.Add([]byte(dynPlaybook))
	f.Add([]byte(header + step("a", "needs: [c]") + step("b", "needs: [a]") + step("c", "needs: [b]")))
	f.Add([]byte(header + okStep + "      case_id: |\n        case ${{ case.number }}\n"))
	f.Add([]byte(header + okStep + `      case_id: "tab\there ${{ inputs.nope }}"` + "\n"))
	if data, err := os.ReadFile("library/iam-credential-compromise.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(header + "  - id: a\n    phase: analyze\n    operation: credential-scope\n    params: {access_key_id: AKIAIOSFODNN7EXAMPLE}\n" +
		"  - id: b\n    needs: [a]\n    phase: eradicate\n    operation: eradicate\n    approval: required\n    params: {plan_id: '${{ steps.a.outputs.plan_id }}'}\n"))
	f.Add([]byte(header + "  - id: a\n    phase: analyze\n    operation: eradicate\n    targets: {accounts: all}\n    rollback: {action: noop}\n"))
	f.Add([]byte("- &a [*a]\n"))
	f.Add([]byte("{"))
	catalog := playbooktest.FirstParty()
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, errs := playbook.Load("fuzz.yaml", data, catalog)
		for _, e := range errs {
			_ = e.Error()
		}
		if pb == nil {
			return
		}
		pb.Order()
		if len(errs) > 0 {
			return
		}
		checkReencoding(t, data, pb, catalog)
		ev, err := playbook.NewEvaluator(pb, catalog)
		if err != nil {
			t.Fatalf("Validate passed but NewEvaluator failed: %v", err)
		}
		inputs, err := pb.BindInputs(map[string]any{})
		if err != nil {
			inputs = nil
		}
		ev.Plan(playbook.Scope{Inputs: inputs, Finding: map[string]any{"severity": 8.0}})
		for _, s := range pb.Steps {
			_, _ = ev.Resolve(s.ID, playbook.Scope{Inputs: inputs})
		}
	})
}

// checkReencoding checks that a valid playbook means the same when its
// YAML is encoded again (by the YAML library, which may change quoting,
// indentation and flow style): the re-encoded file is valid too and gives
// the same playbook, positions aside.
func checkReencoding(t *testing.T, data []byte, pb *playbook.Playbook, catalog playbook.ActionCatalog) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("Load accepted YAML the library refuses: %v", err)
	}
	again, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatalf("re-encoding a valid playbook: %v", err)
	}
	pb2, errs := playbook.Load("fuzz.yaml", again, catalog)
	if len(errs) > 0 {
		t.Fatalf("the re-encoded playbook is refused: %v\noriginal:\n%s\nre-encoded:\n%s", errs, data, again)
	}
	exportedOnly := cmp.FilterPath(func(p cmp.Path) bool {
		sf, ok := p.Last().(cmp.StructField)
		return ok && !isExported(sf.Name())
	}, cmp.Ignore())
	if d := cmp.Diff(pb, pb2, exportedOnly, cmpopts.IgnoreTypes(playbook.Pos{}), cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("the re-encoded playbook means something else (-original +re-encoded):\n%s\nre-encoded:\n%s", d, again)
	}
}

func isExported(name string) bool { return name != "" && strings.ToUpper(name[:1]) == name[:1] }
