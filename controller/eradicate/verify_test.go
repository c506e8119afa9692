package eradicate

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// timeline is a CaseTimeline that keeps entries and derives timings as the
// case service does.
type timeline struct {
	created time.Time
	entries []*cases.Entry
}

func (tl *timeline) Record(_ context.Context, e *cases.Entry) (bool, error) {
	for _, x := range tl.entries {
		if x.Key == e.Key {
			return false, nil
		}
	}
	tl.entries = append(tl.entries, e)
	return true, nil
}

func (tl *timeline) Get(_ context.Context, id string) (*cases.Case, error) {
	return &cases.Case{ID: id, Timings: cases.Derive(tl.created, nil, tl.entries)}, nil
}

// runs is a RunReader over fixed runs.
type runs map[string]struct {
	run   *store.Run
	tasks []*store.Task
}

func (r runs) GetRun(_ context.Context, id string) (*store.Run, []*store.Task, error) {
	if x, ok := r[id]; ok {
		return x.run, x.tasks, nil
	}
	return nil, nil, store.ErrNotFound
}

func TestRecordVerification(t *testing.T) {
	const (
		acctA, acctB = "111111111111", "222222222222"
		leaked       = "AKIALEAKEDKEY0000001"
	)
	opened := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	finished := opened.Add(40 * time.Minute)
	scoped := &cases.Report{Scope: &cases.ScopeSection{Artifacts: []trailscope.Artifact{
		{Kind: trailscope.KindAccessKey, Account: acctA, Region: "us-east-1", ID: "AKIABACKDOOR", Detail: map[string]string{"userName": "bob"}, EventID: "e1"},
		{Kind: trailscope.KindTrailLogging, Account: acctB, Region: "us-east-1", ID: "member-trail", EventID: "e2"},
		{Kind: trailscope.KindManagedPolicy, Account: acctB, Region: "us-east-1", ID: "arn:aws:iam::222222222222:policy/x", EventID: "e3"},
	}, Requests: []cases.ScopeRequest{
		{RunID: "run-scope", CreatedAt: opened, Status: "succeeded", Key: leaked, Source: "lookup", Start: opened.Add(-time.Hour), Accounts: "all"},
		// The session it minted into B, scoped there in a later round.
		{RunID: "run-scope-b", CreatedAt: opened, Status: "succeeded", Key: "ASIAHOP", Minted: true, Source: "lookup", Accounts: acctB},
	}}}
	// verifyRun is account's verify run of plan p with the given outcome
	// per step id; tweak changes it before it is stored.
	verifyRun := func(p *eradplan.Plan, caseID, account string, outcome map[string]string, tweak func(*store.Run, *store.Task, map[string]any)) (*store.Run, *store.Task) {
		steps, _ := json.Marshal(p.StepsIn(account))
		params := map[string]any{"plan_id": p.ID, "steps": string(steps), "verify": true, "account": account}
		out := map[string]any{"plan_id": p.ID, "verify": true}
		var res []map[string]string
		live := false
		for _, s := range p.StepsIn(account) {
			res = append(res, map[string]string{"id": s.ID, "outcome": outcome[s.ID], "error": "because"})
			live = live || outcome[s.ID] == eradplan.VerifyLive
		}
		out["steps"] = res
		r := &store.Run{ID: "run-" + account, Action: Action, CaseID: caseID, Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED}
		task := &store.Task{ID: "task-" + account, RunID: r.ID, Account: account, Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, FinishedAt: finished}
		if live {
			task.Status, task.Error = agentv1.TaskStatus_TASK_STATUS_FAILED, "still live"
		}
		if tweak != nil {
			tweak(r, task, params)
		}
		r.ParamsJSON, _ = json.Marshal(params)
		task.OutputJSON, _ = json.Marshal(out)
		return r, task
	}
	tests := []struct {
		name string
		// outcome by step action; the plan's steps are s01 (key, A),
		// s02 (managed policy, manual, B), s03 (logging, B) in some order.
		outcome map[string]string
		tweak   func(account string, r *store.Run, t *store.Task, params map[string]any)
		only    string // verify only this account
		// rescoped are artifacts a re-scope added to the case after the plan.
		rescoped []trailscope.Artifact
		// rescope changes the re-scope of the leaked key the case gets
		// after the plan (nil: none).
		rescope func(*cases.ScopeRequest) bool
		// ranAfter is set when an eradication run of the plan came after
		// the re-scope.
		ranAfter   bool
		wantErr    error
		eradicated bool
		live       int
		problem    string
	}{
		{name: "everything gone or neutralised, a manual step aside",
			outcome:    map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			eradicated: true},
		{name: "a key still active",
			outcome: map[string]string{"delete-access-key": "live", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			live:    1},
		{name: "a step that could not be read",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "unverified", "delete-managed-policy": "unverified"}},
		{name: "an account without a verify run",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			only:    acctA, problem: "account " + acctB + ": no verify run read it"},
		{name: "a run carrying fewer steps than the plan",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			tweak: func(account string, _ *store.Run, _ *store.Task, params map[string]any) {
				if account == acctB {
					params["steps"] = "[]"
				}
			},
			problem: "its steps are not plan"},
		{name: "a run that eradicates rather than verifies",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			tweak:   func(_ string, _ *store.Run, _ *store.Task, params map[string]any) { delete(params, "verify") },
			wantErr: ErrNotVerification},
		{name: "a run of another case",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			tweak:   func(_ string, r *store.Run, _ *store.Task, _ map[string]any) { r.CaseID = "case-other" },
			wantErr: ErrNotVerification},
		{name: "a run still running",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			tweak: func(_ string, r *store.Run, _ *store.Task, _ map[string]any) {
				r.Status = operatorv1.RunStatus_RUN_STATUS_RUNNING
			},
			wantErr: ErrNotVerification},
		{name: "a re-scope found an artifact the plan lacks",
			outcome:  map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescoped: []trailscope.Artifact{{Kind: trailscope.KindFunction, Account: acctB, Region: "eu-west-1", ID: "late-exfil", EventID: "e9"}}},
		{name: "a re-scope that found the same artifacts again",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescoped: []trailscope.Artifact{{Kind: trailscope.KindAccessKey, Account: acctA, Region: "us-east-1", ID: "AKIABACKDOOR",
				Detail: map[string]string{"userName": "bob"}, EventID: "e1"}},
			eradicated: true},
		{name: "an outcome that is not a verification",
			outcome: map[string]string{"delete-access-key": "done", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			problem: `has outcome "done"`},
		{name: "no re-scope since the plan",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescope: func(*cases.ScopeRequest) bool { return false },
			problem: "key " + leaked + ": no lookup scope of it succeeded since"},
		{name: "a re-scope that failed",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescope: func(rq *cases.ScopeRequest) bool { rq.Status = "failed"; return true },
			problem: "key " + leaked + ": no lookup scope"},
		{name: "a re-scope of the session only, not of the key",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescope: func(rq *cases.ScopeRequest) bool { rq.Key, rq.Minted = "ASIAHOP", true; return true },
			problem: "key " + leaked + ": no lookup scope"},
		{name: "a re-scope from another source",
			outcome: map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			rescope: func(rq *cases.ScopeRequest) bool { rq.Source = "trail"; return true },
			problem: "key " + leaked + ": no lookup scope"},
		{name: "an eradication run after the re-scope",
			outcome:  map[string]string{"delete-access-key": "gone", "start-logging": "neutralised", "delete-managed-policy": "unverified"},
			ranAfter: true,
			problem:  "key " + leaked + ": no lookup scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			tl := &timeline{created: opened}
			rr := runs{}
			report := &cases.Report{Scope: &cases.ScopeSection{Artifacts: slices.Clone(scoped.Scope.Artifacts), Requests: slices.Clone(scoped.Scope.Requests)}}
			svc, err := New(Config{Cases: reports{"case-1": report}, Plans: st, Runs: rr, Timeline: tl, Clock: func() time.Time { return finished }})
			if err != nil {
				t.Fatal(err)
			}
			p, err := svc.Plan(t.Context(), "case-1", "alice", eradplan.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if want := []eradplan.Rescope{{Key: leaked, Source: "lookup", Start: opened.Add(-time.Hour), Accounts: "all"}}; !reflect.DeepEqual(p.Rescope, want) {
				t.Fatalf("the plan's re-scope %+v, want %+v", p.Rescope, want)
			}
			report.Scope.Artifacts = append(report.Scope.Artifacts, tt.rescoped...)
			// The re-scope `eradicate verify` runs before its verify runs.
			rq := cases.ScopeRequest{RunID: "run-rescope", CreatedAt: finished.Add(time.Minute), Status: "succeeded", Key: leaked, Source: "lookup", Accounts: "all"}
			if tt.rescope == nil || tt.rescope(&rq) {
				report.Scope.Requests = append(report.Scope.Requests, rq)
			}
			if tt.ranAfter {
				params, _ := json.Marshal(map[string]any{"plan_id": p.ID, "steps": "[]", "account": acctA})
				report.Actions = append(report.Actions, &cases.Action{RunID: "run-late", Action: Action, Params: params, CreatedAt: finished.Add(2 * time.Minute)})
			}
			byID := map[string]string{}
			for _, s := range p.Steps {
				byID[s.ID] = tt.outcome[s.Action]
			}
			var ids []string
			for _, a := range p.Accounts() {
				if tt.only != "" && a != tt.only {
					continue
				}
				r, task := verifyRun(p, "case-1", a, byID, func(r *store.Run, task *store.Task, params map[string]any) {
					if tt.tweak != nil {
						tt.tweak(a, r, task, params)
					}
				})
				rr[r.ID] = struct {
					run   *store.Run
					tasks []*store.Task
				}{r, []*store.Task{task}}
				ids = append(ids, r.ID)
			}
			v, err := svc.RecordVerification(t.Context(), p.ID, ids, "alice")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				if len(tl.entries) != 0 {
					t.Fatal("a refused verification recorded the eradication")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Eradicated != tt.eradicated || len(v.Live) != tt.live {
				t.Fatalf("verdict %+v", v)
			}
			if got := strings.Join(v.Unplanned, "|"); (len(tt.rescoped) > 0 && !tt.eradicated) != (got != "") ||
				(got != "" && !strings.Contains(got, "late-exfil")) {
				t.Fatalf("unplanned %q", got)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(v.Problems, "|"), tt.problem) {
				t.Fatalf("problems %v, want one saying %q", v.Problems, tt.problem)
			}
			if !tt.eradicated {
				if len(tl.entries) != 0 || v.EradicatedAt != nil {
					t.Fatalf("not eradicated, yet recorded: %+v", tl.entries)
				}
				return
			}
			if len(tl.entries) != 1 || tl.entries[0].Phase != playbook.PhaseEradicate || tl.entries[0].Kind != cases.KindStep {
				t.Fatalf("entries %+v", tl.entries)
			}
			if v.EradicatedAt == nil || !v.EradicatedAt.Equal(finished) || v.TimeToEradicateMS != (40*time.Minute).Milliseconds() {
				t.Fatalf("eradicated at %v, time to eradicate %d ms", v.EradicatedAt, v.TimeToEradicateMS)
			}
			if len(v.Steps) != 3 || v.Outcomes["gone"] != 1 {
				t.Fatalf("steps %+v outcomes %v", v.Steps, v.Outcomes)
			}
		})
	}
}
