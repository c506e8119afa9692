package eradicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/internal/eradflow"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// stepRuns is an operation's Runs: it records each run asked for and
// ends it with the task output answer gives.
type stepRuns struct {
	mu     sync.Mutex
	asked  []eradflow.RunRequest
	answer func(r eradflow.RunRequest) (account string, output any, ok bool)
}

func (s *stepRuns) CreateRun(_ context.Context, r eradflow.RunRequest) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, r)
	return fmt.Sprintf("run-%d", len(s.asked)), nil
}

func (s *stepRuns) FollowRun(_ context.Context, id string) (*operatorv1.Run, error) {
	s.mu.Lock()
	var i int
	fmt.Sscanf(id, "run-%d", &i)
	r := s.asked[i-1]
	s.mu.Unlock()
	account, output, ok := s.answer(r)
	out, _ := json.Marshal(output)
	st := agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
	if !ok {
		st = agentv1.TaskStatus_TASK_STATUS_FAILED
	}
	return &operatorv1.Run{Id: id, Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
		Tasks: []*operatorv1.Task{{Account: account, Region: "us-east-1", Status: st, OutputJson: out, Error: map[bool]string{false: "AccessDenied"}[ok]}}}, nil
}

func (s *stepRuns) actions() []string {
	var out []string
	for _, r := range s.asked {
		out = append(out, fmt.Sprintf("%s %s %v", r.Key, r.Action, r.RequireApproval))
	}
	return out
}

// notes records the case notes added.
type notes struct{ added []string }

func (n *notes) AddNote(_ context.Context, caseID, actor, text string) (*cases.Entry, error) {
	n.added = append(n.added, caseID+" "+actor+": "+text)
	return &cases.Entry{}, nil
}

func TestOperateScopeFollowsSessionsIntoOtherAccounts(t *testing.T) {
	st := openStore(t)
	n := &notes{}
	svc, err := New(Config{Cases: reports{}, Plans: st, Runs: st, Timeline: &timeline{}, Notes: n})
	if err != nil {
		t.Fatal(err)
	}
	const victim, pivot = "111111111111", "222222222222"
	r := &stepRuns{answer: func(r eradflow.RunRequest) (string, any, bool) {
		res := map[string]any{"access_key_id": r.Params["access_key_id"], "source": "lookup"}
		switch r.Params["access_key_id"] {
		case "AKIAIOSFODNN7EXAMPLE":
			res["account"] = victim
			res["scope"] = trailscope.Scope{EventCount: 3, Artifacts: []trailscope.Artifact{{Kind: trailscope.KindUser, Account: victim, ID: "backdoor"}}}
			res["next_keys"] = []map[string]string{{"access_key_id": "ASIAHOPINTOPIVOT0001", "account": pivot},
				// A hostile worker's answer: not a key, not an account.
				{"access_key_id": "../../x", "account": pivot}, {"access_key_id": "ASIAHOPINTOPIVOT0002", "account": "all"}}
			return victim, res, true
		default:
			res["account"] = pivot
			res["scope"] = trailscope.Scope{EventCount: 2, Artifacts: []trailscope.Artifact{{Kind: trailscope.KindTrailLogging, Account: pivot, ID: "org-trail"}}}
			return pivot, res, true
		}
	}}
	out, err := svc.Operate(t.Context(), Operation{Name: playbook.OpCredentialScope, CaseID: "case-1", Actor: "playbook:iam",
		Params: map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "since": "1h"}, Runs: r})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.actions(), "; "); got != "scope/0/0 aws-credential-scope false; scope/1/0 aws-credential-scope false" {
		t.Fatalf("runs %s: want the key, then its session in the pivot account only", got)
	}
	if r.asked[1].Accounts != pivot || r.asked[1].CaseID != "case-1" || r.asked[0].Params["start"] != "1h" {
		t.Fatalf("runs %+v", r.asked)
	}
	if out["events"] != 5 || out["artifacts"] != 2 || out["has_artifacts"] != true {
		t.Fatalf("outputs %v", out)
	}
	if len(n.added) != 1 || !strings.HasPrefix(n.added[0], "case-1 playbook:iam: Scope of AKIAIOSFODNN7EXAMPLE") || !strings.Contains(n.added[0], "trail-logging org-trail") {
		t.Fatalf("notes %q", n.added)
	}
}

func TestOperateRefusals(t *testing.T) {
	st := openStore(t)
	scoped := &cases.Report{Scope: &cases.ScopeSection{Artifacts: []trailscope.Artifact{
		{Kind: trailscope.KindTrailLogging, Account: "222222222222", Region: "us-east-1", ID: "org-trail", EventID: "e2"}}}}
	svc, err := New(Config{Cases: reports{"case-1": scoped, "case-2": scoped}, Plans: st, Runs: st, Timeline: &timeline{}, Notes: &notes{}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := svc.Plan(t.Context(), "case-2", "operator:bob", eradplan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   Operation
		want string
	}{
		{"no case", Operation{Name: playbook.OpEradicationPlan}, "operation eradication-plan works in a case, and the playbook run has none"},
		{"unknown operation", Operation{Name: "wipe", CaseID: "case-1"}, `unknown operation "wipe"`},
		{"hostile key from a finding", Operation{Name: playbook.OpCredentialScope, CaseID: "case-1", Params: map[string]any{"access_key_id": "AKIA$(reboot)"}},
			`"AKIA$(reboot)" is not an AWS access key id`},
		{"trail bucket without log archive", Operation{Name: playbook.OpCredentialScope, CaseID: "case-1",
			Params: map[string]any{"access_key_id": "AKIAIOSFODNN7EXAMPLE", "trail_bucket": "logs"}}, "go together"},
		{"eradicate without approval", Operation{Name: playbook.OpEradicate, CaseID: "case-1", Params: map[string]any{"plan_id": other.ID}},
			"runs only with approval: required"},
		{"plan of another case", Operation{Name: playbook.OpEradicate, CaseID: "case-1", ApprovalRequired: true, Params: map[string]any{"plan_id": other.ID}},
			"plan " + other.ID + " belongs to case case-2, not to this playbook run's case case-1"},
		{"verify a plan of another case", Operation{Name: playbook.OpEradicationVerify, CaseID: "case-1", Params: map[string]any{"plan_id": other.ID}},
			"belongs to case case-2"},
		{"not a plan id", Operation{Name: playbook.OpEradicationVerify, CaseID: "case-1", Params: map[string]any{"plan_id": "case-2"}},
			`plan_id "case-2" is not an eradication plan id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &stepRuns{answer: func(eradflow.RunRequest) (string, any, bool) { return "", nil, true }}
			tt.op.Runs = r
			_, err := svc.Operate(t.Context(), tt.op)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
			if tt.name != "no case" && !errors.Is(err, ErrOperation) {
				t.Errorf("error %v does not wrap ErrOperation (an RPC would not say FailedPrecondition)", err)
			}
			if len(r.asked) != 0 {
				t.Fatalf("refused, yet runs were created: %v", r.actions())
			}
		})
	}
}

func TestOperateEradicateDryRunsFirst(t *testing.T) {
	st := openStore(t)
	scoped := &cases.Report{Scope: &cases.ScopeSection{Artifacts: []trailscope.Artifact{
		{Kind: trailscope.KindUser, Account: "111111111111", Region: "us-east-1", ID: "backdoor", EventID: "e1"},
		{Kind: trailscope.KindTrailLogging, Account: "222222222222", Region: "us-east-1", ID: "org-trail", EventID: "e2"}}}}
	svc, err := New(Config{Cases: reports{"case-1": scoped}, Plans: st, Runs: st, Timeline: &timeline{}, Notes: &notes{},
		Clock: func() time.Time { return time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	planned, err := svc.Operate(t.Context(), Operation{Name: playbook.OpEradicationPlan, CaseID: "case-1", Actor: "playbook:iam", Runs: &stepRuns{}})
	if err != nil {
		t.Fatal(err)
	}
	planID, _ := planned["plan_id"].(string)
	if !strings.HasPrefix(planID, "erp-") || planned["steps"] != 2 {
		t.Fatalf("plan outputs %v", planned)
	}
	tests := []struct {
		name     string
		deny     string // the account whose calls are denied
		wantRuns string
		wantErr  string
	}{
		{name: "every account", wantRuns: "dry-run/111111111111 aws-eradicate false; dry-run/222222222222 aws-eradicate false; " +
			"run/111111111111 aws-eradicate true; run/222222222222 aws-eradicate true"},
		// A denied dry run changes nothing anywhere: no run that changes
		// anything is asked for.
		{name: "dry run denied in one account", deny: "222222222222",
			wantRuns: "dry-run/111111111111 aws-eradicate false; dry-run/222222222222 aws-eradicate false",
			wantErr:  "the dry run did not finish in 1 account(s), so nothing was changed: 222222222222: AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &stepRuns{answer: func(r eradflow.RunRequest) (string, any, bool) {
				a := r.Accounts
				return a, map[string]any{"account": a, "outcomes": map[string]int{"done": 1}}, a != tt.deny
			}}
			out, err := svc.Operate(t.Context(), Operation{Name: playbook.OpEradicate, CaseID: "case-1", ApprovalRequired: true,
				Params: map[string]any{"plan_id": planID, "confirm_deletes": true}, Runs: r})
			if got := strings.Join(r.actions(), "; "); got != tt.wantRuns {
				t.Fatalf("runs %s\nwant %s", got, tt.wantRuns)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.asked[0].Params["dry_run"] != true || r.asked[2].Params["dry_run"] != false || r.asked[2].Params["confirm_deletes"] != true ||
				r.asked[2].Params["plan_id"] != planID || r.asked[2].CaseID != "case-1" {
				t.Fatalf("run params %+v", r.asked)
			}
			if oc, _ := out["outcomes"].(map[string]int); oc["done"] != 2 {
				t.Fatalf("outputs %v", out)
			}
		})
	}
}
