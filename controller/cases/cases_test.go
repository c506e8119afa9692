package cases_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/firebreak-ir/firebreak/internal/termsafe"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// clock is a settable test clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time  { return c.now }
func (c *clock) Set(t time.Time) { c.now = t }
func newClock() *clock           { return &clock{now: t0} }

type fixture struct {
	svc   *cases.Service
	st    *store.SQL
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := newClock()
	svc, err := cases.New(cases.Config{Store: st, Runs: st, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, st: st, clock: clk}
}

func gdFinding(id, instance string, updated time.Time, sev float64) *finding.Finding {
	return &finding.Finding{Source: finding.SourceGuardDuty, ID: id, Type: "UnauthorizedAccess:EC2/SSHBruteForce", Title: "brute force against " + instance,
		Severity: sev, SeverityLabel: "HIGH", Account: "111122223333", Region: "eu-west-1", FirstSeen: t0.Add(-time.Hour), UpdatedAt: updated,
		ResourceKind: finding.ResourceInstance, InstanceID: instance}
}

func TestCheckAndSetDefaultsNamesMissing(t *testing.T) {
	_, err := cases.New(cases.Config{})
	if err == nil || !strings.Contains(err.Error(), "Store") || !strings.Contains(err.Error(), "Runs") {
		t.Fatalf("error %v: want every missing dependency named", err)
	}
}

func TestFindingsAttachByResourceAndDedup(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first, err := f.svc.RecordFinding(ctx, gdFinding("f1", "i-1", t0, 5), time.Time{}, "intake/test")
	if err != nil {
		t.Fatal(err)
	}
	if !first.CaseCreated || first.Duplicate {
		t.Fatalf("first finding: %+v", first)
	}
	steps := []struct {
		name        string
		f           *finding.Finding
		wantSame    bool
		wantDup     bool
		wantCreated bool
	}{
		{"the same version again is a duplicate", gdFinding("f1", "i-1", t0, 5), true, true, false},
		{"an update of the finding attaches", gdFinding("f1", "i-1", t0.Add(time.Hour), 8), true, false, false},
		{"another finding on the same instance attaches", gdFinding("f2", "i-1", t0, 3), true, false, false},
		{"a finding on another instance opens a case", gdFinding("f3", "i-2", t0, 3), false, false, true},
	}
	for _, s := range steps {
		res, err := f.svc.RecordFinding(ctx, s.f, time.Time{}, "intake/test")
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if (res.CaseID == first.CaseID) != s.wantSame || res.Duplicate != s.wantDup || res.CaseCreated != s.wantCreated {
			t.Errorf("%s: %+v (first case %s)", s.name, res, first.CaseID)
		}
	}
	c, err := f.svc.Get(ctx, first.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Findings != 3 || c.Severity != 8 || c.SeverityLabel() != "HIGH" || c.Resource != "instance/111122223333/i-1" {
		t.Errorf("case %+v: want 3 finding versions, the highest severity and the instance as resource", c)
	}
	// A closed case takes no new findings: the next one opens a new case.
	if _, err := f.svc.Close(ctx, first.CaseID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	again, err := f.svc.RecordFinding(ctx, gdFinding("f1", "i-1", t0.Add(2*time.Hour), 5), time.Time{}, "intake/test")
	if err != nil {
		t.Fatal(err)
	}
	if again.CaseID == first.CaseID || !again.CaseCreated {
		t.Errorf("a finding after the case closed went to %+v", again)
	}
}

func TestPhaseMovesForwardWithStepsAndByOperators(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, cases.NewCase{Title: "suspicious login", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	record := func(key string, phase playbook.Phase) {
		t.Helper()
		if _, err := f.svc.Record(ctx, &cases.Entry{CaseID: c.ID, Key: key, Kind: cases.KindStep, Phase: phase, Status: cases.EntryStarted,
			Actor: "playbook:x", Summary: key}); err != nil {
			t.Fatal(err)
		}
	}
	phaseOf := func() playbook.Phase {
		t.Helper()
		got, err := f.svc.Get(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Phase
	}
	if phaseOf() != playbook.PhaseDetect {
		t.Fatalf("a new case is in %s", phaseOf())
	}
	record("a", playbook.PhaseContain)
	record("b", playbook.PhaseAnalyze)
	if got := phaseOf(); got != playbook.PhaseContain {
		t.Fatalf("phase %s after contain then analyze steps: phases move forward only", got)
	}
	if _, err := f.svc.SetPhase(ctx, c.ID, playbook.PhaseAnalyze, "alice", "re-scoping"); err != nil {
		t.Fatal(err)
	}
	if got := phaseOf(); got != playbook.PhaseAnalyze {
		t.Fatalf("an operator may move a case back; phase %s", got)
	}
	if _, err := f.svc.SetPhase(ctx, c.ID, "lunch", "alice", ""); err == nil {
		t.Fatal("an unknown phase was accepted")
	}
	// Recording an entry twice under one key keeps one entry.
	for range 2 {
		if _, err := f.svc.Record(ctx, &cases.Entry{CaseID: c.ID, Key: "once", Kind: cases.KindNote, Summary: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	tl, err := f.svc.Timeline(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range tl {
		if e.Summary == "x" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("an entry recorded twice under one key appears %d times", n)
	}
	if _, err := f.svc.Record(ctx, &cases.Entry{CaseID: "case-nope", Kind: cases.KindNote}); !errors.Is(err, cases.ErrNotFound) {
		t.Fatalf("recording on an unknown case: %v", err)
	}
}

func TestCloseRefusedWhileAPlaybookRunIsActive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	active := []string{"pbr-1"}
	f.svc.SetActivePlaybookRuns(func(context.Context, string) ([]string, error) { return active, nil })
	c, err := f.svc.Create(ctx, cases.NewCase{Title: "t", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Close(ctx, c.ID, "alice", ""); !errors.Is(err, cases.ErrActiveWork) || !strings.Contains(err.Error(), "pbr-1") {
		t.Fatalf("closing with an active playbook run: %v", err)
	}
	active = nil
	closed, err := f.svc.Close(ctx, c.ID, "alice", "contained and rebuilt")
	if err != nil {
		t.Fatal(err)
	}
	if closed.Status != cases.StatusClosed || closed.Phase != playbook.PhasePostIncident || closed.ClosedBy != "alice" {
		t.Fatalf("closed case %+v", closed)
	}
	if _, err := f.svc.Close(ctx, c.ID, "alice", ""); !errors.Is(err, cases.ErrClosed) {
		t.Fatalf("closing twice: %v", err)
	}
	if _, err := f.svc.AddNote(ctx, c.ID, "bob", "lessons: patch sshd"); err != nil {
		t.Fatalf("a closed case takes notes: %v", err)
	}
}

// catalog is a fake evidence catalogue.
type catalog map[string]*cases.Evidence

func (c catalog) DescribeEvidence(_ context.Context, ids []string) ([]*cases.Evidence, error) {
	var out []*cases.Evidence
	for _, id := range ids {
		if e := c[id]; e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>](javascript:alert(3))` + "\x1b[31m | `tick` *bold*\n# heading"

// hostileCase records a case whose finding, run output, note and
// evidence carry markup, and returns its report.
func hostileCase(t *testing.T, f *fixture) *cases.Report {
	t.Helper()
	ctx := context.Background()
	fd := gdFinding("f-<b>", "i-1", t0, 9)
	fd.Title = hostile
	fd.Description = hostile
	res, err := f.svc.RecordFinding(ctx, fd, t0, "intake/test")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]string{"stdout": hostile, "</pre>": "</td></tr></table><script>x</script>"})
	now := t0.Add(time.Minute)
	run := &store.Run{ID: "run-1", Action: "host-collect", Selector: "all", ParamsJSON: []byte(`{"profile":"triage"}`), CreatedBy: "playbook:x",
		CreatedAt: now, FinishedAt: now.Add(time.Second), Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CaseID: res.CaseID, MaxErrors: "",
		Reason: "r"}
	task := &store.Task{ID: "tsk-1", RunID: "run-1", AgentID: "agt-1", Hostname: "web-<1>", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED,
		OutputJSON: out, EvidenceIDs: []string{"evd-1", "evd-2"}, FinishedAt: now.Add(time.Second)}
	if err := f.st.CreateRun(ctx, run, []*store.Task{task}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Record(ctx, &cases.Entry{CaseID: res.CaseID, Key: "s", At: now.Add(time.Second), Kind: cases.KindStep,
		Phase: playbook.PhaseContain, Status: cases.EntrySucceeded, Actor: "playbook:x", PlaybookRunID: "pbr-1", StepID: "collect",
		RunID: "run-1", Summary: hostile}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddNote(ctx, res.CaseID, "alice", hostile); err != nil {
		t.Fatal(err)
	}
	f.svc.SetEvidence(catalog{"evd-1": {ID: "evd-1", Name: hostile, SHA256: strings.Repeat("ab", 32), Size: 1234, CustodyIntact: true,
		Custody: []cases.CustodyEvent{{At: now, Actor: "agent:agt-1", Action: "collected", Detail: hostile}}}})
	f.clock.Set(now.Add(time.Hour))
	r, err := f.svc.Report(ctx, res.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// allowedHTML are the elements and attributes the report template writes.
var allowedHTML = map[string][]string{
	"html": {"lang"}, "head": nil, "meta": {"charset", "http-equiv", "content", "name"}, "title": nil, "style": nil, "body": nil,
	"h1": nil, "h2": nil, "h3": nil, "p": nil, "table": nil, "tr": nil, "th": nil, "td": nil, "pre": nil, "code": nil, "ul": nil,
	"li": nil, "div": {"class"},
}

// checkHTML fails when the page holds any element or attribute the
// template does not write: the trace of an injection.
func checkHTML(t testing.TB, page []byte) {
	t.Helper()
	z := html.NewTokenizer(bytes.NewReader(page))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			attrs, ok := allowedHTML[string(name)]
			if !ok {
				t.Fatalf("the report holds a <%s> element the template does not write", name)
			}
			for hasAttr {
				var k []byte
				k, _, hasAttr = z.TagAttr()
				found := false
				for _, a := range attrs {
					found = found || a == string(k)
				}
				if !found {
					t.Fatalf("the report holds attribute %s on <%s>", k, name)
				}
			}
		}
	}
}

func TestReportEscapesHostileInput(t *testing.T) {
	f := newFixture(t)
	r := hostileCase(t, f)

	var page bytes.Buffer
	if err := r.Render(&page, cases.FormatHTML); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes())
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", strings.Repeat("ab", 32), "Content-Security-Policy"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}

	var md bytes.Buffer
	if err := r.Render(&md, cases.FormatMarkdown); err != nil {
		t.Fatal(err)
	}
	text := md.String()
	// Outside code fences, no raw markup, link or escape sequence survives.
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if strings.ContainsAny(line, "<>\x1b") || strings.Contains(line, "](") && !strings.Contains(line, `\](`) {
			t.Fatalf("markdown line carries raw markup: %q", line)
		}
	}
	if inFence {
		t.Fatal("a code fence was left open")
	}

	var js bytes.Buffer
	if err := r.Render(&js, cases.FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("the JSON report does not parse: %v", err)
	}
	if strings.Contains(js.String(), "<script>") {
		t.Error("the JSON report carries a raw <script>")
	}
}

func TestReportContent(t *testing.T) {
	f := newFixture(t)
	r := hostileCase(t, f)
	if !r.Contained || r.Case.Timings.ContainedAt.IsZero() {
		t.Errorf("the contain step is not counted: %+v", r.Case.Timings)
	}
	if len(r.Actions) != 1 || r.Actions[0].StepID != "collect" || len(r.Actions[0].Targets) != 1 {
		t.Fatalf("actions %+v", r.Actions)
	}
	if len(r.Evidence) != 2 {
		t.Fatalf("evidence %+v, want both ids the task recorded", r.Evidence)
	}
	byID := map[string]*cases.EvidenceEntry{}
	for _, e := range r.Evidence {
		byID[e.ID] = e
	}
	if e := byID["evd-1"]; !e.InStore || e.SHA256 == "" || len(e.Custody) != 1 || e.TaskID != "tsk-1" {
		t.Errorf("evd-1 %+v: want the catalogue's hash and custody with the task's record", e)
	}
	if e := byID["evd-2"]; e.InStore || e.RunID != "run-1" || e.Hostname != "web-<1>" {
		t.Errorf("evd-2 %+v: want the task's record only", e)
	}
	open := strings.Join(r.OpenItems, "\n")
	for _, want := range []string{"still open", "No eradication", "No recovery", "evd-2 is not in the evidence store"} {
		if !strings.Contains(open, want) {
			t.Errorf("open items lack %q:\n%s", want, open)
		}
	}
	if len(r.Lessons) == 0 || len(r.Notes) != 1 || len(r.Findings) != 1 {
		t.Errorf("lessons %d notes %d findings %d", len(r.Lessons), len(r.Notes), len(r.Findings))
	}
}

func TestManualRunsJoinTheTimeline(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, cases.NewCase{Title: "t", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	run := &store.Run{ID: "run-m", Action: "sysinfo", Selector: "all", ParamsJSON: []byte("{}"), CreatedBy: "bob", CreatedAt: t0.Add(time.Minute),
		Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CaseID: c.ID}
	if err := f.st.CreateRun(ctx, run, nil); err != nil {
		t.Fatal(err)
	}
	tl, err := f.svc.Timeline(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := tl[len(tl)-1]
	if last.Kind != cases.KindRun || last.RunID != "run-m" || last.Actor != "bob" {
		t.Fatalf("last entry %+v: want bob's run", last)
	}
}

func FuzzReportRendering(f *testing.F) {
	f.Add(hostile, "i-1", "{}")
	f.Add("]]>", "<!--", `{"a":"</script>"}`)
	f.Add("```", "````", "\"\\u003c\"")
	f.Add("a|b\n# h\n- [x](http://evil)", "*_~", `{"k":"\n|"}`)
	report := func(text, resource, output string) *cases.Report {
		c := &cases.Case{ID: "case-1", Title: text, Status: cases.StatusOpen, Phase: playbook.PhaseContain, Resource: resource, CreatedBy: text}
		return &cases.Report{Case: c, SeverityLabel: text, Summary: text,
			Findings: []*cases.FindingRecord{{Finding: &finding.Finding{ID: text, Type: text, Title: text, Account: resource}, Resource: resource, Rule: text}},
			Timeline: []*cases.Entry{{Kind: cases.Kind(text), Phase: playbook.Phase(text), Status: text, Actor: text, Summary: text}},
			Actions: []*cases.Action{{RunID: text, Action: text, StepID: text, Status: text, CreatedBy: text, Params: json.RawMessage(output),
				Targets: []*cases.TargetResult{{Hostname: text, Status: text, Error: text, Output: json.RawMessage(output), EvidenceIDs: []string{text}}}}},
			Evidence:  []*cases.EvidenceEntry{{Evidence: cases.Evidence{ID: text, Name: text, SHA256: text, Custody: []cases.CustodyEvent{{Actor: text, Action: text, Detail: text}}}, InStore: true}},
			Approvals: []*cases.ApprovalEntry{{Operator: text, Comment: text}},
			Notes:     []*cases.Entry{{Actor: text, Summary: text}},
			OpenItems: []string{text}, Lessons: []string{text}}
	}
	// plain stands for text of the same emptiness with no markup at all.
	plain := func(s string) string {
		if s == "" {
			return ""
		}
		return "x"
	}
	f.Fuzz(func(t *testing.T, text, resource, output string) {
		r := report(text, resource, output)
		var page bytes.Buffer
		if err := r.HTML(&page); err != nil {
			t.Fatal(err)
		}
		checkHTML(t, page.Bytes())
		var md, base bytes.Buffer
		if err := r.Markdown(&md); err != nil {
			t.Fatal(err)
		}
		if err := report(plain(text), plain(resource), output).Markdown(&base); err != nil {
			t.Fatal(err)
		}
		checkMarkdownInert(t, md.String(), base.String())
	})
}

// checkMarkdownInert fails when got, a report rendered from hostile text,
// has any Markdown structure that want, the same report rendered from
// plain text, does not: another line, heading, list item or table cell,
// or an unescaped character that starts markup (links, emphasis, code,
// raw HTML). Fenced blocks hold the same JSON in both and are skipped.
func checkMarkdownInert(t *testing.T, got, want string) {
	t.Helper()
	gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(gl) != len(wl) {
		t.Fatalf("hostile text changed the report from %d lines to %d:\n%s", len(wl), len(gl), got)
	}
	fenced := false
	for i := range wl {
		if strings.HasPrefix(wl[i], "```") {
			fenced = !fenced
			if gl[i] != wl[i] {
				t.Fatalf("line %d: fence %q became %q", i+1, wl[i], gl[i])
			}
			continue
		}
		if fenced {
			continue
		}
		for _, prefix := range []string{"#", "- ", "|", ">", "    "} {
			if strings.HasPrefix(gl[i], prefix) != strings.HasPrefix(wl[i], prefix) {
				t.Fatalf("line %d: hostile text changed the block %q starts with:\n%s\nwant the shape of\n%s", i+1, prefix, gl[i], wl[i])
			}
		}
		g, w := unescaped(gl[i]), unescaped(wl[i])
		for _, ch := range "|[]`*_<>~#" {
			if g[ch] > w[ch] {
				t.Fatalf("line %d: %d unescaped %q, want at most %d:\n%s", i+1, g[ch], ch, w[ch], gl[i])
			}
		}
	}
}

// unescaped counts the characters of line not escaped by a backslash.
func unescaped(line string) map[rune]int {
	n := map[rune]int{}
	esc := false
	for _, r := range line {
		switch {
		case esc:
			esc = false
		case r == '\\':
			esc = true
		default:
			n[r]++
		}
	}
	return n
}

func TestReportsCarryNoControlCharacters(t *testing.T) {
	const escapes = "\x1b]0;owned\x07\x1b[2J\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\\u202Egnp.exe\x7f\u009b"
	tests := []struct {
		name    string
		format  cases.Format
		visible string
	}{
		// Markdown escapes the backslash of the visible escape again.
		{"markdown", cases.FormatMarkdown, `\\x1b\]0;owned\\x07`},
		{"html", cases.FormatHTML, `\x1b]0;owned\x07`},
	}
	f := newFixture(t)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, cases.NewCase{Title: "title " + escapes, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddNote(ctx, c.ID, "bob", "note "+escapes+"\nsecond line"); err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.Report(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := r.Render(&out, tt.format); err != nil {
				t.Fatal(err)
			}
			for _, ch := range out.String() {
				if termsafe.Unsafe(ch) && ch != '\n' && ch != '\t' {
					t.Fatalf("the %s report holds %U", tt.name, ch)
				}
			}
			if !strings.Contains(out.String(), tt.visible) {
				t.Errorf("the %s report does not show the escaped title visibly", tt.name)
			}
		})
	}
	// JSON stays lossless.
	var js bytes.Buffer
	if err := r.Render(&js, cases.FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back struct{ Case struct{ Title string } }
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Case.Title != "title "+escapes {
		t.Errorf("the JSON report changed the title: %q (%v)", back.Case.Title, err)
	}
}
