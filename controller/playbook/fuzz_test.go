package playbook_test

import (
	"os"
	"testing"

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
