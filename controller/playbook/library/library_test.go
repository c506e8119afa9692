package library_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	playbooks "github.com/firebreak-ir/firebreak/controller/playbook/library"
	"github.com/firebreak-ir/firebreak/plugins/catalog"
)

// realCatalog describes the first-party actions as they really are, so a
// playbook cannot use a parameter a plugin does not take.
func realCatalog(t *testing.T) catalog.Catalog {
	t.Helper()
	descs, err := catalog.Descriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return catalog.Catalog(descs)
}

func TestBuiltinPlaybooksValidate(t *testing.T) {
	want := []string{"cryptomining-instance", "ec2-instance-compromise", "iam-credential-compromise", "s3-public-exposure"}
	if got := playbooks.Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	catalog := realCatalog(t)
	for name, data := range playbooks.All() {
		t.Run(name, func(t *testing.T) {
			pb, errs := playbook.Load(name+".yaml", data, catalog)
			for _, e := range errs {
				t.Error(e)
			}
			if pb == nil || len(errs) > 0 {
				return
			}
			if pb.Metadata.Name != name {
				t.Errorf("metadata.name %q differs from the file name", pb.Metadata.Name)
			}
			if pb.Metadata.Description == "" || pb.Metadata.Version < 1 {
				t.Errorf("metadata needs a description and a version")
			}
			for _, s := range pb.Steps {
				if s.Phase == "" || s.Description == "" {
					t.Errorf("step %q needs a phase and a description", s.ID)
				}
			}
		})
	}
}

func TestBuiltinPlaybooksPlan(t *testing.T) {
	tests := []struct {
		name    string
		inputs  []string
		finding map[string]any
		order   []string
		skipped []string
		check   func(t *testing.T, p *playbook.Plan)
	}{
		{
			name:   "ec2-instance-compromise",
			inputs: []string{"instance_id=i-0abc1234def567890", "account=111111111111", "region=eu-west-1", "allow_cidrs=10.9.0.0/16"},
			order:  []string{"capture", "snapshot", "isolate", "guest_isolate", "collect"},
			check: func(t *testing.T, p *playbook.Plan) {
				isolate := p.Steps[2]
				if isolate.Selector != "role=worker" || !isolate.Destructive || isolate.OnFailure != playbook.OnFailureRollback ||
					!reflect.DeepEqual(isolate.Params["allow_cidrs"], []string{"10.9.0.0/16"}) || isolate.Params["revoke_instance_profile"] != true {
					t.Errorf("isolate = %+v", isolate)
				}
				guest := p.Steps[3]
				if guest.Selector != "label.instance_id=i-0abc1234def567890" || guest.OnFailure != playbook.OnFailureContinue {
					t.Errorf("guest_isolate = %+v", guest)
				}
			},
		},
		{
			name:    "iam-credential-compromise",
			inputs:  []string{"access_key_id=AKIAIOSFODNN7EXAMPLE", "user_name=ci-deploy"},
			order:   []string{"disable_key", "revoke_sessions", "cloudtrail", "scope", "eradication_plan", "eradicate", "verify"},
			skipped: []string{"revoke_sessions"},
			check: func(t *testing.T, p *playbook.Plan) {
				if p.Steps[0].Accounts != "all" || p.Steps[0].Params["access_key_id"] != "AKIAIOSFODNN7EXAMPLE" {
					t.Errorf("disable_key = %+v", p.Steps[0])
				}
				if ct := p.Steps[2]; !reflect.DeepEqual(ct.Regions, []string{"all"}) || ct.Params["start"] != "24h" {
					t.Errorf("cloudtrail = %+v", ct)
				}
				// contain → scope → plan → approval → eradicate → verify:
				// the scope reads the key, and only the eradication
				// changes the accounts, after an approval.
				if sc := p.Steps[3]; sc.Action != "operation:credential-scope" || sc.Params["access_key_id"] != "AKIAIOSFODNN7EXAMPLE" || sc.ApprovalRequired {
					t.Errorf("scope = %+v", sc)
				}
				for _, st := range p.Steps[4:] {
					if st.Phase != playbook.PhaseEradicate || st.ApprovalRequired != (st.ID == "eradicate") {
						t.Errorf("step %s: phase %s, approval %v; want eradicate, approval only on the eradicate step", st.ID, st.Phase, st.ApprovalRequired)
					}
				}
				if er := p.Steps[5]; er.Action != "operation:eradicate" || !er.Destructive {
					t.Errorf("eradicate = %+v", er)
				}
			},
		},
		{
			name:   "s3-public-exposure",
			inputs: []string{"bucket=acme-public-reports", "account=222222222222"},
			order:  []string{"block_public_access", "cloudtrail"},
			check: func(t *testing.T, p *playbook.Plan) {
				if p.Steps[0].Accounts != "222222222222" || p.Steps[0].Params["bucket"] != "acme-public-reports" || p.Steps[0].Layer != 0 || p.Steps[1].Layer != 0 {
					t.Errorf("plan = %+v", p.Steps)
				}
			},
		},
		{
			name:   "cryptomining-instance",
			inputs: []string{"instance_id=i-0abc1234def567890"},
			order:  []string{"capture", "snapshot", "isolate", "collect"},
		},
	}
	catalog := realCatalog(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, ok := playbooks.Get(tt.name)
			if !ok {
				t.Fatalf("no built-in playbook %s", tt.name)
			}
			pb, err := playbook.Parse(tt.name+".yaml", data)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := playbook.NewEvaluator(pb, catalog)
			if err != nil {
				t.Fatal(err)
			}
			inputs, err := pb.ParseInputs(tt.inputs)
			if err != nil {
				t.Fatal(err)
			}
			plan := ev.Plan(playbook.Scope{Inputs: inputs, Case: playbook.Case{ID: "case-1"}})
			var order, skipped []string
			for _, s := range plan.Steps {
				order = append(order, s.ID)
				if s.Skip {
					skipped = append(skipped, s.ID)
				}
				if s.Error != "" {
					t.Errorf("step %s: %s", s.ID, s.Error)
				}
				if s.Rollback != nil && s.Rollback.Error != "" {
					t.Errorf("step %s rollback: %s", s.ID, s.Rollback.Error)
				}
			}
			if !slices.Equal(order, tt.order) || !slices.Equal(skipped, tt.skipped) {
				t.Errorf("order %v skipped %v, want %v skipped %v", order, skipped, tt.order, tt.skipped)
			}
			if _, err := json.Marshal(plan); err != nil {
				t.Errorf("plan does not encode: %v", err)
			}
			if tt.check != nil {
				tt.check(t, plan)
			}
		})
	}
}
