package eradflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// backend is a Backend whose runs end with the task answer gives.
type backend struct {
	asked    []RunRequest
	answer   func(r RunRequest) (output any, errText string)
	notes    []string
	recorded [][]string
}

func (b *backend) CreateRun(_ context.Context, r RunRequest) (string, error) {
	b.asked = append(b.asked, r)
	return fmt.Sprintf("run-%d", len(b.asked)), nil
}

func (b *backend) FollowRun(_ context.Context, id string) (*operatorv1.Run, error) {
	var i int
	if _, err := fmt.Sscanf(id, "run-%d", &i); err != nil {
		return nil, err
	}
	r := b.asked[i-1]
	out, errText := b.answer(r)
	doc, _ := json.Marshal(out)
	st := agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
	if errText != "" {
		st = agentv1.TaskStatus_TASK_STATUS_FAILED
	}
	return &operatorv1.Run{Id: id, Tasks: []*operatorv1.Task{{Account: r.Accounts, Region: "us-east-1", Status: st, OutputJson: doc, Error: errText}}}, nil
}

func (b *backend) OrgAccounts(context.Context) ([]string, error) {
	return []string{"111111111111", "222222222222"}, nil
}

func (b *backend) AddNote(_ context.Context, caseID, text string) error {
	b.notes = append(b.notes, caseID+": "+text)
	return nil
}

func (b *backend) RecordVerification(_ context.Context, planID string, runIDs []string) ([]byte, error) {
	b.recorded = append(b.recorded, runIDs)
	return json.Marshal(Verification{PlanID: planID, Runs: runIDs, Eradicated: true})
}

func (b *backend) keys() string {
	var out []string
	for _, r := range b.asked {
		out = append(out, r.Key+"@"+r.Accounts)
	}
	return strings.Join(out, " ")
}

func testPlan() *eradplan.Plan {
	return &eradplan.Plan{ID: "erp-1", CaseID: "case-1", Steps: []eradplan.Step{
		{ID: "s1", Account: "111111111111", Kind: trailscope.KindUser, Resource: "backdoor", Phase: eradplan.PhaseQuarantine},
		{ID: "s2", Account: "222222222222", Kind: trailscope.KindTrailLogging, Resource: "trail", Phase: eradplan.PhaseRestore},
		{ID: "s3", Account: "333333333333", Kind: trailscope.KindFunction, Resource: "fn", Phase: eradplan.PhaseRemove},
	}, Rescope: []eradplan.Rescope{{Key: "AKIAIOSFODNN7EXAMPLE", Source: "lookup", Accounts: "all", Start: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}}}
}

// TestRunReportsADeniedAccountAndGoesOn: one account's run fails; the
// others still run, and the failure is named for its account.
func TestRunReportsADeniedAccountAndGoesOn(t *testing.T) {
	tests := []struct {
		name       string
		opt        RunOptions
		wantKeys   string
		wantApprov bool
	}{
		{"dry run", RunOptions{DryRun: true}, "dry-run/111111111111@111111111111 dry-run/222222222222@222222222222 dry-run/333333333333@333333333333", false},
		{"run", RunOptions{ConfirmDeletes: true}, "run/111111111111@111111111111 run/222222222222@222222222222 run/333333333333@333333333333", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backend{answer: func(r RunRequest) (any, string) {
				if r.Accounts == "222222222222" {
					return map[string]any{"account": r.Accounts, "outcomes": map[string]int{"denied": 1}}, "AccessDenied: iam:StartLogging"
				}
				return map[string]any{"account": r.Accounts, "outcomes": map[string]int{"done": 1}}, ""
			}}
			out, err := (&Flow{Backend: b}).Run(t.Context(), testPlan(), tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.keys(); got != tt.wantKeys {
				t.Fatalf("runs %s, want %s", got, tt.wantKeys)
			}
			for _, r := range b.asked {
				var steps []eradplan.Step
				if json.Unmarshal([]byte(r.Params["steps"].(string)), &steps) != nil || len(steps) != 1 || steps[0].Account != r.Accounts {
					t.Errorf("run %s carries steps %v: want its account's only", r.Key, r.Params["steps"])
				}
				if r.RequireApproval != tt.wantApprov || r.Params["dry_run"] != tt.opt.DryRun || r.Params["confirm_deletes"] != tt.opt.ConfirmDeletes || r.CaseID != "case-1" {
					t.Errorf("run %+v", r)
				}
			}
			if len(out.Failed) != 1 || out.Failed[0] != "222222222222: AccessDenied: iam:StartLogging" || out.Outcomes["done"] != 2 || out.Outcomes["denied"] != 1 {
				t.Fatalf("result %+v", out)
			}
		})
	}
}

// TestVerifyStopsWhenTheRescopeDoesNotFinish: a re-scope task that failed
// stops the verification before any verify run, and nothing is recorded.
func TestVerifyStopsWhenTheRescopeDoesNotFinish(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprint("rescope fails ", fail), func(t *testing.T) {
			b := &backend{answer: func(r RunRequest) (any, string) {
				if r.Action == ScopeAction {
					res := map[string]any{"account": r.Accounts, "scope": trailscope.Scope{EventCount: 1}}
					if fail {
						return res, "ThrottlingException"
					}
					return res, ""
				}
				return map[string]any{"plan_id": "erp-1", "verify": true}, ""
			}}
			v, err := (&Flow{Backend: b}).Verify(t.Context(), testPlan(), time.Minute)
			if fail {
				if !errors.Is(err, ErrRescopeUnfinished) || len(b.recorded) != 0 || b.keys() != "verify/rescope/0/scope/0/0@all" {
					t.Fatalf("error %v, runs %s, recorded %v: want the re-scope only, and nothing recorded", err, b.keys(), b.recorded)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "verify/rescope/0/scope/0/0@all verify/111111111111@111111111111 verify/222222222222@222222222222 verify/333333333333@333333333333"; b.keys() != want {
				t.Fatalf("runs %s, want %s", b.keys(), want)
			}
			if b.asked[0].Params["start"] != "2026-12-07T00:00:00Z" || b.asked[1].Params["verify"] != true || b.asked[1].RequireApproval {
				t.Fatalf("runs %+v", b.asked)
			}
			if !v.Clean() || v.Rescope == nil || len(v.Rescope.Runs) != 1 || len(b.recorded) != 1 || len(b.recorded[0]) != 3 {
				t.Fatalf("verdict %+v, recorded %v", v, b.recorded)
			}
		})
	}
}

// TestScopeRequestCheck: a request names a key, and a trail bucket only
// with the account that holds it.
func TestScopeRequestCheck(t *testing.T) {
	tests := []struct {
		req  ScopeRequest
		want string
	}{
		{ScopeRequest{Key: "AKIAIOSFODNN7EXAMPLE"}, ""},
		{ScopeRequest{Key: "ASIAIOSFODNN7EXAMPLE", TrailBucket: "logs", LogArchive: "111111111111"}, ""},
		{ScopeRequest{Key: "akiaiosfodnn7example"}, "is not an AWS access key id"},
		{ScopeRequest{Key: "AKIAIOSFODNN7EXAMPLE\n"}, "is not an AWS access key id"},
		{ScopeRequest{Key: "AKIAIOSFODNN7EXAMPLE", TrailBucket: "logs"}, "go together"},
		{ScopeRequest{Key: "AKIAIOSFODNN7EXAMPLE", TrailBucket: "logs", LogArchive: "all"}, "is not a 12-digit account id"},
	}
	for _, tt := range tests {
		err := tt.req.Check()
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.req, err, tt.want)
		}
	}
}
