package cases_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/trailscope"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// scopeOutput is an aws-credential-scope result as the plugin writes it.
func scopeOutput(t *testing.T, source, key, account string, places []*trailscope.Place, creds []*trailscope.Credential, arts []trailscope.Artifact, events int) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"account": account, "source": source, "access_key_id": key,
		"scope": map[string]any{"chain": map[string]any{"seed": key, "credentials": creds}, "events": events, "places": places,
			"by_class": map[string]int{"persistence": len(arts), "reconnaissance": events - len(arts)}, "artifacts": arts,
			"recon_by_name": map[string]int{"DescribeInstances": events - len(arts)}, "data_by_bucket": map[string]int{},
			"first": t0, "last": t0.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportScopeSection(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, cases.NewCase{Title: "leaked key", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	const a, b = "210987654302", "210987654303"
	leaked, hop := "AKIAIOSFODNN7EXAMPLE", "ASIAQRSTUVWXYZEXAMPL"
	backdoor := trailscope.Artifact{Kind: trailscope.KindAccessKey, Account: a, Region: "us-east-1", ID: "AKIABACKDOOR", EventID: "ev-1", Detail: map[string]string{"userName": "ci"}}
	sg := trailscope.Artifact{Kind: trailscope.KindIngressRule, Account: b, Region: "eu-west-1", ID: "sg-1", EventID: "ev-2", Public: true, Detail: map[string]string{"cidrIp": "0.0.0.0/0"}}
	chain := []*trailscope.Credential{{AccessKeyID: leaked, Account: a}, {AccessKeyID: hop, Parent: leaked, Via: "AssumeRole", Depth: 1, Account: b, CrossAccount: true, ARN: hostile}}
	now := t0.Add(time.Minute)
	// Two tasks of a lookup run (one per account) and a trail run that
	// saw the same events: the section counts each artifact once.
	runs := []struct {
		id, source string
		outs       [][]byte
	}{
		{"run-lookup", "lookup", [][]byte{
			scopeOutput(t, "lookup", leaked, a, []*trailscope.Place{{Account: a, Region: "us-east-1", Events: 3, First: t0, Last: t0}}, chain, []trailscope.Artifact{backdoor}, 3),
			scopeOutput(t, "lookup", hop, b, []*trailscope.Place{{Account: b, Region: "eu-west-1", Events: 4, First: t0, Last: t0}}, chain[1:], []trailscope.Artifact{sg}, 4),
		}},
		{"run-trail", "trail", [][]byte{
			scopeOutput(t, "trail", leaked, "210987654301", []*trailscope.Place{{Account: a, Region: "us-east-1", Events: 3, First: t0, Last: t0},
				{Account: b, Region: "eu-west-1", Events: 5, First: t0, Last: t0}}, chain, []trailscope.Artifact{backdoor, sg}, 8),
		}},
	}
	for i, r := range runs {
		run := &store.Run{ID: r.id, Action: cases.ScopeActionName, Selector: "accounts", ParamsJSON: []byte("{}"), CreatedBy: "alice",
			CreatedAt: now.Add(time.Duration(i) * time.Minute), Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CaseID: c.ID}
		var tasks []*store.Task
		for j, out := range r.outs {
			tasks = append(tasks, &store.Task{ID: r.id + "-" + string(rune('a'+j)), RunID: r.id, AgentID: "agt-w", Hostname: "worker",
				Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJSON: out, FinishedAt: now})
		}
		if err := f.st.CreateRun(ctx, run, tasks); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := f.svc.Report(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	sc := rep.Scope
	if sc == nil {
		t.Fatal("the report has no Scope section")
	}
	if !slices.Equal(sc.Accounts, []string{a, b}) || !slices.Equal(sc.Regions, []string{"eu-west-1", "us-east-1"}) ||
		!slices.Equal(sc.Sources, []string{"lookup", "trail"}) || len(sc.Runs) != 2 {
		t.Fatalf("scope %+v", sc)
	}
	if len(sc.Artifacts) != 2 || len(sc.Sessions) != 2 {
		t.Fatalf("artifacts %+v, sessions %d: each should count once", sc.Artifacts, len(sc.Sessions))
	}
	if p := sc.Places[0]; p.Account != a || p.Events != 3 {
		t.Fatalf("places %+v", sc.Places)
	}
	if p := sc.Places[1]; p.Account != b || p.Events != 5 {
		t.Fatalf("the larger reading of %s should win: %+v", b, p)
	}
	var md bytes.Buffer
	if err := rep.Render(&md, cases.FormatMarkdown); err != nil {
		t.Fatal(err)
	}
	text := md.String()
	for _, want := range []string{"## Scope", "AKIABACKDOOR", "| ec2-ingress-rule | " + b + " | eu-west-1 | sg-1 | public |", "AssumeRole"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the Markdown report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "<script>") {
		t.Fatal("a session identity from a worker's result was not escaped")
	}
	var page bytes.Buffer
	if err := rep.Render(&page, cases.FormatHTML); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes())
	if !strings.Contains(page.String(), "<h2>Scope</h2>") {
		t.Fatal("the HTML report has no Scope section")
	}
}

// TestReportScopeRequests: the report keeps each scope run as it was asked,
// with its window's start resolved from the run's own parameters (not from
// what a worker says it read), and tells the keys a responder asked for from
// the sessions a later round followed.
func TestReportScopeRequests(t *testing.T) {
	const a, b = "210987654302", "210987654303"
	leaked, hop := "AKIAIOSFODNN7EXAMPLE", "ASIAQRSTUVWXYZEXAMPL"
	chain := []*trailscope.Credential{{AccessKeyID: leaked, Account: a}, {AccessKeyID: hop, Parent: leaked, Via: "AssumeRole", Depth: 1, Account: b, CrossAccount: true}}
	// A worker's result claims a window that starts after the attack.
	lying := func(out []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		m["start"] = t0.Add(24 * time.Hour)
		b, _ := json.Marshal(m)
		return b
	}
	at := t0.Add(time.Minute) // the first run's creation; each next one a minute later
	type run struct {
		id, params, accounts string
		status               operatorv1.RunStatus
		outs                 [][]byte
	}
	tests := []struct {
		name string
		runs []run
		want []cases.ScopeRequest
	}{
		{name: "a lookup scope followed into another account",
			runs: []run{
				{"run-1", `{"access_key_id":"` + leaked + `","start":"1h","regions":["us-east-1"]}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{lying(scopeOutput(t, "lookup", leaked, a, nil, chain, nil, 1))}},
				// The second round scopes the session in b, whose own
				// result knows no parent: the first round's record wins.
				{"run-2", `{"access_key_id":"` + hop + `","start":"30d"}`, b, operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{scopeOutput(t, "lookup", hop, b, nil, []*trailscope.Credential{{AccessKeyID: hop, Account: b}}, nil, 1)}},
			},
			want: []cases.ScopeRequest{
				{RunID: "run-1", Status: "succeeded", Key: leaked, Source: "lookup", Start: at.Add(-time.Hour), Accounts: "all", Regions: []string{"us-east-1"}},
				{RunID: "run-2", Status: "succeeded", Key: hop, Minted: true, Source: "lookup", Start: at.Add(time.Minute - 30*24*time.Hour), Accounts: b},
			}},
		{name: "a trail scope without a start: the action's 7 days",
			runs: []run{
				{"run-1", `{"access_key_id":"` + leaked + `","source":"trail","trail_bucket":"org-trail","org_id":"o-abc1234567","trail_prefix":"p"}`, "210987654301",
					operatorv1.RunStatus_RUN_STATUS_FAILED, [][]byte{scopeOutput(t, "trail", leaked, "210987654301", nil, chain, nil, 1)}},
			},
			want: []cases.ScopeRequest{
				{RunID: "run-1", Status: "failed", Key: leaked, Source: "trail", Start: at.Add(-7 * 24 * time.Hour), Accounts: "210987654301",
					TrailBucket: "org-trail", TrailPrefix: "p", OrgID: "o-abc1234567"},
			}},
		{name: "an RFC 3339 start, and one that is unreadable",
			runs: []run{
				{"run-1", `{"access_key_id":"` + leaked + `","start":"2026-12-01T08:00:00+01:00"}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{scopeOutput(t, "lookup", leaked, a, nil, chain, nil, 1)}},
				{"run-2", `{"access_key_id":"` + leaked + `","start":"yesterday"}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{scopeOutput(t, "lookup", leaked, a, nil, chain, nil, 1)}},
			},
			want: []cases.ScopeRequest{
				{RunID: "run-1", Status: "succeeded", Key: leaked, Source: "lookup", Start: time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), Accounts: "all"},
				{RunID: "run-2", Status: "succeeded", Key: leaked, Source: "lookup", Accounts: "all"},
			}},
		{name: "a worker's result cannot make an asked key a minted session",
			runs: []run{
				{"run-1", `{"access_key_id":"` + leaked + `","start":"1h"}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{scopeOutput(t, "lookup", leaked, a, nil, []*trailscope.Credential{{AccessKeyID: leaked, Parent: hop, Via: "AssumeRole", Account: a}}, nil, 1)}},
				// A session key asked for, "minted" by a key nobody scoped.
				{"run-2", `{"access_key_id":"` + hop + `","start":"1h"}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED,
					[][]byte{scopeOutput(t, "lookup", hop, a, nil, []*trailscope.Credential{{AccessKeyID: hop, Parent: "AKIANOBODYSCOPEDTHIS", Via: "AssumeRole", Account: a}}, nil, 1)}},
			},
			want: []cases.ScopeRequest{
				{RunID: "run-1", Status: "succeeded", Key: leaked, Source: "lookup", Start: at.Add(-time.Hour), Accounts: "all"},
				{RunID: "run-2", Status: "succeeded", Key: hop, Source: "lookup", Start: at.Add(time.Minute - time.Hour), Accounts: "all"},
			}},
		{name: "a run whose parameters name no key is left out",
			runs: []run{
				{"run-1", `{}`, "all", operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, [][]byte{scopeOutput(t, "lookup", leaked, a, nil, chain, nil, 1)}},
			},
			want: []cases.ScopeRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			c, err := f.svc.Create(ctx, cases.NewCase{Title: "leaked key", CreatedBy: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range tt.runs {
				run := &store.Run{ID: r.id, Action: cases.ScopeActionName, Selector: "accounts", Accounts: r.accounts, ParamsJSON: []byte(r.params),
					CreatedBy: "alice", CreatedAt: at.Add(time.Duration(i) * time.Minute), Status: r.status, CaseID: c.ID}
				var tasks []*store.Task
				for j, out := range r.outs {
					tasks = append(tasks, &store.Task{ID: r.id + "-" + string(rune('a'+j)), RunID: r.id, AgentID: "agt-w", Hostname: "worker",
						Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJSON: out, FinishedAt: at})
				}
				if err := f.st.CreateRun(ctx, run, tasks); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := f.svc.Report(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Scope == nil {
				t.Fatal("the report has no Scope section")
			}
			got := rep.Scope.Requests
			if len(got) != len(tt.want) {
				t.Fatalf("requests %+v, want %+v", got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if !g.CreatedAt.Equal(at.Add(time.Duration(i)*time.Minute)) || !g.Start.Equal(w.Start) {
					t.Fatalf("request %d created %v start %v, want start %v", i, g.CreatedAt, g.Start, w.Start)
				}
				g.Start, w.Start = time.Time{}, time.Time{}
				g.CreatedAt = time.Time{}
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("request %d %+v, want %+v", i, g, w)
				}
			}
		})
	}
}
