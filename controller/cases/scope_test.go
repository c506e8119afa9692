package cases_test

import (
	"bytes"
	"context"
	"encoding/json"
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
