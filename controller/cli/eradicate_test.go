package cli

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// verifyOperator is a scopeOperator that also serves a plan and records
// the verification asked of it.
type verifyOperator struct {
	*scopeOperator
	operatorv1.UnimplementedEradicationServiceServer
	plan     *eradplan.Plan
	recorded []*operatorv1.RecordVerificationRequest
}

func (s *verifyOperator) GetPlan(context.Context, *operatorv1.GetPlanRequest) (*operatorv1.GetPlanResponse, error) {
	doc, _ := json.Marshal(s.plan)
	return &operatorv1.GetPlanResponse{PlanJson: doc}, nil
}

func (s *verifyOperator) RecordVerification(_ context.Context, req *operatorv1.RecordVerificationRequest) (*operatorv1.RecordVerificationResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = append(s.recorded, req)
	doc, _ := json.Marshal(map[string]any{"plan_id": s.plan.ID, "case_id": s.plan.CaseID, "runs": req.GetRunIds(), "eradicated": false,
		"outcomes": map[string]int{"gone": 1}, "steps": []any{}, "live": []string{}, "unverified": []string{}, "problems": []string{},
		"unplanned": []string{"210987654302 lambda-function late (event e9)"}})
	return &operatorv1.RecordVerificationResponse{VerificationJson: doc}, nil
}

// TestEradicateVerifyRescopesFirst: verify scopes the plan's keys again,
// as they were first scoped, before its verify runs; a re-scope that does
// not finish stops it before anything is judged.
func TestEradicateVerifyRescopesFirst(t *testing.T) {
	const leaked, hop, a, b, archive = "AKIAIOSFODNN7EXAMPLE", "ASIAQRSTUVWXYZEXAMPL", "210987654302", "210987654303", "210987654301"
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	chain := []*trailscope.Credential{{AccessKeyID: leaked, Account: a}, {AccessKeyID: hop, Parent: leaked, Via: "AssumeRole", Account: b, CrossAccount: true}}
	steps := []eradplan.Step{{ID: "s01", Account: a, Region: "us-east-1", Kind: "lambda-function", Resource: "fn", Action: "delete-function", Phase: eradplan.PhaseRemove}}
	tests := []struct {
		name    string
		rescope []eradplan.Rescope
		failed  map[string]bool
		code    int
		// scopes are the scope runs wanted, "KEY@ACCOUNTS start source".
		scopes   []string
		verified bool
	}{
		{name: "a lookup scope, followed into another account again",
			rescope: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: start, Accounts: "all", Regions: []string{"us-east-1", "eu-west-1"}}},
			code:    ExitVerifyFailed, verified: true,
			scopes: []string{leaked + "@all 2026-12-07T09:00:00Z lookup", hop + "@" + b + " 2026-12-07T09:00:00Z lookup"}},
		{name: "a trail scope, read in the log-archive account",
			rescope: []eradplan.Rescope{{Key: leaked, Source: "trail", Start: start, Accounts: archive, TrailBucket: "org-trail-logs", OrgID: "o-abc1234567"}},
			code:    ExitVerifyFailed, verified: true,
			scopes: []string{leaked + "@" + archive + " 2026-12-07T09:00:00Z trail"}},
		{name: "a re-scope task that failed stops the verification",
			rescope: []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: start, Accounts: "all"}},
			failed:  map[string]bool{hop + "@" + b: true},
			code:    ExitRunFailed,
			scopes:  []string{leaked + "@all 2026-12-07T09:00:00Z lookup", hop + "@" + b + " 2026-12-07T09:00:00Z lookup"}},
		{name: "a plan that names no key to re-scope",
			rescope: []eradplan.Rescope{{Key: "not-a-key", Source: "lookup", Start: start, Accounts: "all"}},
			code:    ExitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			so := &scopeOperator{runs: map[string]*operatorv1.Run{}, failed: tt.failed, results: map[string]map[string]any{
				leaked + "@all": scopeResult(leaked, a, []map[string]string{{"access_key_id": hop, "account": b}},
					[]trailscope.Artifact{{Kind: trailscope.KindFunction, Account: a, Region: "us-east-1", ID: "late"}}, chain),
				hop + "@" + b:          scopeResult(hop, b, nil, nil, chain[1:]),
				leaked + "@" + archive: scopeResult(leaked, archive, nil, nil, chain),
			}}
			s := &verifyOperator{scopeOperator: so, plan: &eradplan.Plan{ID: "erp-1", CaseID: "case-1", Steps: steps, Rescope: tt.rescope}}
			dial := serveScope(t, so, func(srv *grpc.Server) { operatorv1.RegisterEradicationServiceServer(srv, s) })
			r := run(t, dial, "eradicate", "verify", "--plan", "erp-1", "--json")
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tt.code, r.stderr)
			}
			var scopes, verifies []string
			for _, req := range so.reqs {
				var p map[string]any
				_ = json.Unmarshal(req.GetParamsJson(), &p)
				switch req.GetAction() {
				case eradflow.ScopeAction:
					if req.GetCaseId() != "case-1" {
						t.Fatalf("a re-scope outside the case: %v", req)
					}
					src, _ := p["source"].(string)
					src = orStr(src, "lookup")
					scopes = append(scopes, p["access_key_id"].(string)+"@"+req.GetAccounts()+" "+p["start"].(string)+" "+src)
					if src == "trail" && (p["trail_bucket"] != "org-trail-logs" || p["org_id"] != "o-abc1234567") {
						t.Fatalf("trail params %v", p)
					}
					if tt.rescope[0].Regions != nil && len(verifies) == 0 && len(scopes) == 1 && p["regions"] == nil {
						t.Fatalf("the regions were not kept: %v", p)
					}
				case eradflow.EradicateAction:
					if p["verify"] != true {
						t.Fatalf("verify made a run that is not a verification: %v", p)
					}
					if len(scopes) != len(tt.scopes) {
						t.Fatal("a verify run before the re-scope finished")
					}
					verifies = append(verifies, req.GetAccounts())
				}
			}
			if !slices.Equal(scopes, tt.scopes) {
				t.Fatalf("scope runs %q, want %q", scopes, tt.scopes)
			}
			if !tt.verified {
				if len(verifies) != 0 || len(s.recorded) != 0 {
					t.Fatalf("verified after a re-scope that did not finish: runs %v, recorded %v", verifies, s.recorded)
				}
				return
			}
			if !slices.Equal(verifies, []string{a}) || len(s.recorded) != 1 || len(s.recorded[0].GetRunIds()) != 1 {
				t.Fatalf("verify runs %v, recorded %v", verifies, s.recorded)
			}
			var out eradflow.Verdict
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.stdout)
			}
			if out.Rescope == nil || !slices.Equal(out.Rescope.Keys, []string{leaked}) || len(out.Rescope.Runs) != len(tt.scopes) || len(out.Unplanned) != 1 {
				t.Fatalf("verdict %+v, rescope %+v", out, out.Rescope)
			}
		})
	}
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
