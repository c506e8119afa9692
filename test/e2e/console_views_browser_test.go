package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// consoleAddr waits for the controller's console address.
func consoleAddr(t *testing.T, c *e2e.Controller) string {
	t.Helper()
	var addr string
	e2e.WaitFor(t, 10*time.Second, "console.addr", func() bool {
		raw, err := os.ReadFile(filepath.Join(c.DataDir, "console.addr"))
		addr = strings.TrimSpace(string(raw))
		return err == nil && addr != ""
	})
	return "https://" + addr
}

// signIn opens a fresh login link of creds in s and waits for the page.
func (s *browserSession) signIn(c *e2e.Controller, creds string) {
	s.t.Helper()
	s.run("signing in", chromedp.Navigate(loginLink(s.t, c, creds)), chromedp.WaitVisible(chromedp.CSS("#operator")))
}

// forgedPost posts form from the page's own origin with the session's
// CSRF token (or none) and returns the status.
func (s *browserSession) forgedPost(path string, withToken bool) int {
	s.t.Helper()
	p, _ := json.Marshal(path)
	token := `document.querySelector('input[name=csrf]').value`
	if !withToken {
		token = `""`
	}
	return value(s, "posting "+path, chromedp.Evaluate[int](fmt.Sprintf(`fetch(%s, {method: 'POST', redirect: 'manual',
		body: new URLSearchParams({reason: 'forged', csrf: %s})}).then(r => r.status)`, p, token), chromedp.EvalAwaitPromise))
}

// TestConsoleAgentPageInARealBrowser: a responder starts an isolation
// from the agent page and watches the run's counters reach the end
// without a reload; a viewer sees no action button on the agent page, and
// a POST the viewer forges from the page with its own CSRF token is
// refused with 403, as is a responder's POST without the token; each
// refused request reached no agent.
func TestConsoleAgentPageInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := startConsoleController(t)
	base := consoleAddr(t, c)
	dir := t.TempDir()
	aliceCreds, vicCreds := filepath.Join(dir, "alice.creds"), filepath.Join(dir, "vic.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", aliceCreds)
	c.MustJSON(t, nil, 0, "operator", "add", "vic", "--role", "viewer", "-o", vicCreds)
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", &agentv1.AgentFacts{Hostname: "web-9", Os: "linux"})
	s, err := f.Connect(t, &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "web-9", Os: "linux"}, Plugins: e2e.HonestPlugins(t, "host-isolate", "host-unisolate")}, false)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	agentURL := base + "/agents/" + f.ID

	vic := newBrowser("vic-agent-page")
	vic.signIn(c, vicCreds)
	vic.run("opening the agent page", chromedp.Navigate(agentURL), chromedp.WaitVisible(chromedp.CSS("#agent-facts")))
	if n := value(vic, "counting buttons", chromedp.Evaluate[int](`document.querySelectorAll('#isolate, #unisolate, #revoke, button[type=submit]:not(#logout)').length`)); n != 0 {
		t.Fatalf("a viewer sees %d action buttons on the agent page", n)
	}
	if code := vic.forgedPost("/agents/"+f.ID+"/isolate", true); code != 403 {
		t.Fatalf("a viewer's forged isolate: %d, want 403", code)
	}

	alice := newBrowser("alice-agent-page")
	alice.signIn(c, aliceCreds)
	alice.run("opening the agent page", chromedp.Navigate(agentURL), chromedp.WaitVisible(chromedp.CSS("#isolate")))
	if code := alice.forgedPost("/agents/"+f.ID+"/isolate", false); code != 403 {
		t.Fatalf("a POST without the CSRF token: %d, want 403", code)
	}
	if n := len(f.Tasks()); n != 0 {
		t.Fatalf("a refused request reached the agent: %d tasks", n)
	}
	alice.run("isolating from the agent page",
		chromedp.SendKeys(chromedp.CSS(`form[action$="/isolate"] input[name=reason]`), "ssh brute force"),
		chromedp.Click(chromedp.CSS("#isolate")), chromedp.WaitVisible(chromedp.CSS("#live")),
		// A marker that a reload would lose.
		chromedp.Evaluate[chromedp.Void](`window.__noReload = true`))
	e2e.WaitFor(t, 20*time.Second, "the isolation task at the agent", func() bool { return len(f.Tasks()) == 1 })
	s.Answer(t, agentv1.TaskStatus_TASK_STATUS_SUCCEEDED)
	alice.run("the counters reaching the end without a reload",
		poll(`document.getElementById('count-succeeded').textContent === '1' && document.getElementById('run-state').textContent === 'succeeded'`),
		poll(`window.__noReload === true`))
	if got := alice.text(".facts dd"); !strings.Contains(got, "host-isolate") {
		t.Fatalf("the run page shows action %q", got)
	}
}

// TestConsoleEvidenceDownloadInARealBrowser: a real agent collects
// evidence; a responder downloads it from the item page in the browser,
// the file holds the collected bytes, and the item's custody chain shows
// the download by that operator, from the browser; verify records its
// result.
func TestConsoleEvidenceDownloadInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := startConsoleController(t)
	base := consoleAddr(t, c)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", creds)
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "evidence-host", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, agent.AgentID(t))
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--artifact", "users", "--wait", "--reason", "console download")
	evID, _ := onlyResult(t, run)
	it := evidenceItem(t, c, evID)

	alice := newBrowser("alice-evidence")
	alice.signIn(c, creds)
	downloads := t.TempDir()
	alice.run("opening the item page", chromedp.Navigate(base+"/evidence/"+evID), chromedp.WaitVisible(chromedp.CSS("#custody")),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
				BrowserContextID: chromedp.FromContext(ctx).BrowserContextID})
			return err
		}))
	if got := alice.text("#evidence-sha256"); got != it.SHA256 {
		t.Fatalf("the item page shows SHA-256 %q, want %s", got, it.SHA256)
	}
	alice.run("downloading", chromedp.SendKeys(chromedp.CSS("#download-reason"), "examiner copy"), chromedp.Click(chromedp.CSS("#download")))
	var file string
	e2e.WaitFor(t, 30*time.Second, "the downloaded file", func() bool {
		m, _ := filepath.Glob(filepath.Join(downloads, evID+"*"))
		for _, p := range m {
			if !strings.HasSuffix(p, ".crdownload") {
				file = p
				return true
			}
		}
		return false
	})
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != it.SHA256 {
		t.Fatalf("the downloaded file's SHA-256 is %x, want %s", sum, it.SHA256)
	}
	alice.run("reading the custody chain", chromedp.Navigate(base+"/evidence/"+evID), chromedp.WaitVisible(chromedp.CSS("#custody")))
	rows := value(alice, "reading custody rows", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#custody tbody tr')].map(r => r.querySelector('.actor').textContent + ' ' + r.querySelector('.custody-action').textContent)`))
	if len(rows) != 2 || rows[1] != "operator:alice download" {
		t.Fatalf("custody rows %v, want the collection then alice's download", rows)
	}
	if got := alice.text("#custody"); !strings.Contains(got, "examiner copy") || !strings.Contains(got, "127.0.0.1") {
		t.Fatalf("the download's custody entry lacks the reason or the browser's address: %s", got)
	}
	alice.run("verifying", chromedp.Click(chromedp.CSS("#verify")), chromedp.WaitVisible(chromedp.CSS("#verify-verdict")))
	if got := alice.text("#verify-verdict"); got != "ok" {
		t.Fatalf("verify says %q", got)
	}
	if got := alice.text("#custody-state"); !strings.Contains(got, "The chain verifies") {
		t.Fatalf("the custody chain: %q", got)
	}
}

// TestConsoleCaseTimelineLiveInARealBrowser: a finding proposes a
// playbook run on a new case; with the case page open, a second operator
// approves it and the timeline shows the steps and the playbook's end
// without a reload. The case page's screenshot is saved to the test's
// output directory (and to $FIREBREAK_CASE_SCREENSHOT when set: the
// README's picture).
func TestConsoleCaseTimelineLiveInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := incidentController(t, "--console-listen", "127.0.0.1:0")
	base := consoleAddr(t, c)
	dir := t.TempDir()
	aliceCreds, bobCreds := filepath.Join(dir, "alice.creds"), filepath.Join(dir, "bob.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", aliceCreds)
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bobCreds)
	sample := filepath.Join(c.Bins.Root, "controller", "finding", "testdata")
	var outs []outcome
	c.MustJSON(t, &outs, 0, "findings", "send", filepath.Join(sample, "guardduty-bitcointool-dns.json"))
	if len(outs) != 1 || outs[0].Mode != "approve" || outs[0].PlaybookRunID == "" {
		t.Fatalf("findings send: %+v", outs)
	}
	alice := newBrowser("alice-case")
	alice.signIn(c, aliceCreds)
	alice.run("opening the case page", chromedp.Navigate(base+"/cases/"+outs[0].CaseID), chromedp.WaitVisible(chromedp.CSS("#timeline")),
		poll(`document.querySelector('#pbr-`+outs[0].PlaybookRunID+` .pbr-status').textContent === 'awaiting_approval'`),
		chromedp.Evaluate[chromedp.Void](`window.__noReload = true`))
	before := value(alice, "counting entries", chromedp.Evaluate[int](`document.querySelectorAll('#timeline-body tr').length`))
	if r := c.CLIAs(t, bobCreds, "playbook", "approve", outs[0].PlaybookRunID, "--wait", "--json"); r.Exit != 0 {
		t.Fatalf("approve: exit %d %s", r.Exit, r.Stderr)
	}
	alice.run("the timeline following the playbook without a reload",
		poll(`[...document.querySelectorAll('#timeline-body tr')].some(r => r.textContent.includes('step') && r.querySelector('.entry-status').textContent === 'succeeded')`),
		poll(`[...document.querySelectorAll('#timeline-body tr')].some(r => r.textContent.includes('playbook') && r.querySelector('.entry-status').textContent === 'succeeded')`),
		poll(`document.getElementById('case-phase').textContent.startsWith('eradicate')`),
		poll(`window.__noReload === true`))
	after := value(alice, "counting entries", chromedp.Evaluate[int](`document.querySelectorAll('#timeline-body tr').length`))
	if after <= before {
		t.Fatalf("the timeline has %d entries, had %d", after, before)
	}
	seqs := value(alice, "reading entry numbers", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#timeline-body tr')].map(r => r.id)`))
	seen := map[string]bool{}
	for _, s := range seqs {
		if seen[s] {
			t.Fatalf("the timeline shows entry %s twice: %v", s, seqs)
		}
		seen[s] = true
	}
	// The page reloaded shows the steps' final states too.
	alice.run("reloading", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	states := value(alice, "reading step states", chromedp.Evaluate[[]string](`[...document.querySelectorAll('.step .step-state')].map(e => e.textContent)`))
	if strings.Join(states, ",") != "succeeded,succeeded,succeeded" {
		t.Fatalf("step states %v", states)
	}
	png := value(alice, "taking the case page's screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "case-page.png"), png, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := os.Getenv("FIREBREAK_CASE_SCREENSHOT"); out != "" {
		if err := os.WriteFile(out, png, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConsoleHostileFindingInARealBrowser: a finding whose title holds
// markup and script (findings are attacker-controlled input) opens a case
// whose page shows the title as text; no script runs and no element is
// made of it (checked in the DOM).
func TestConsoleHostileFindingInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := incidentController(t, "--console-listen", "127.0.0.1:0")
	base := consoleAddr(t, c)
	dir := t.TempDir()
	aliceCreds := filepath.Join(dir, "alice.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", aliceCreds)
	raw, err := os.ReadFile(filepath.Join(c.Bins.Root, "controller", "finding", "testdata", "guardduty-bitcointool-dns.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	const hostile = `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`
	detail := ev["detail"].(map[string]any)
	detail["title"] = hostile
	detail["id"] = "hostile-title-finding"
	ev["id"] = "hostile-title-event"
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "hostile.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var outs []outcome
	c.MustJSON(t, &outs, 0, "findings", "send", file)
	if len(outs) != 1 || outs[0].CaseID == "" {
		t.Fatalf("findings send: %+v", outs)
	}
	alice := newBrowser("alice-hostile-finding")
	alice.signIn(c, aliceCreds)
	alice.run("opening the case page", chromedp.Navigate(base+"/cases/"+outs[0].CaseID), chromedp.WaitVisible(chromedp.CSS("#findings")))
	text := value(alice, "reading the finding's title", chromedp.Evaluate[string](`document.querySelector('#findings .finding-title').textContent`))
	if text != hostile {
		t.Fatalf("the finding's title shows %q, want the text %q", text, hostile)
	}
	if got := value(alice, "reading the page title", chromedp.Evaluate[string](`document.title`)); got == "pwned" {
		t.Fatal("the finding's title ran as script")
	}
	if n := value(alice, "counting elements made of the title", chromedp.Evaluate[int](`document.querySelectorAll('#findings script, #findings img').length`)); n != 0 {
		t.Fatalf("%d script or img elements were made of the finding's title", n)
	}
}
