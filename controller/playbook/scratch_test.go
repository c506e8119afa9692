package playbook_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/playbooktest"
)

func TestScratch(t *testing.T) {
	data, _ := os.ReadFile("testdata/ec2.yaml")
	pb, errs := playbook.Load("ec2.yaml", data, playbooktest.FirstParty())
	for _, e := range errs {
		t.Log(e)
	}
	if pb == nil || len(errs) > 0 {
		t.Fatal("invalid")
	}
	ev, err := playbook.NewEvaluator(pb, playbooktest.FirstParty())
	if err != nil {
		t.Fatal(err)
	}
	in, err := pb.ParseInputs([]string{"instance_id=i-0abc", "allow_cidrs=10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	plan := ev.Plan(playbook.Scope{Inputs: in, Case: playbook.Case{ID: "c-1"}})
	b, _ := json.MarshalIndent(plan, "", "  ")
	t.Log(string(b))
	rs, err := ev.Resolve("capture", playbook.Scope{Inputs: in, Finding: map[string]any{"severity": 8.0}, Case: playbook.Case{ID: "c-1"}})
	b, _ = json.MarshalIndent(rs, "", "  ")
	t.Log(string(b), err)
}
