package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestConsoleCancelRunInARealBrowser: two real agents run a noop task
// that waits five minutes; a responder opens the run page, watches both
// tasks start, presses cancel, and the page (not reloaded) shows the
// cancellation, the counters move to cancelled and the run ends
// cancelled. The CLI reads the same ended run from the controller, and
// the audit log's run.cancel record names the console's operator and her
// reason.
func TestConsoleCancelRunInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := startConsoleController(t)
	base := consoleAddr(t, c)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", creds)
	tok := c.Token(t, "host", 2)
	var ids []string
	for i := range 2 {
		a := c.StartAgent(t, e2e.AgentOptions{Name: fmt.Sprintf("slow-%d", i), Token: tok})
		ids = append(ids, a.AgentID(t))
	}
	c.WaitConnected(t, ids...)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--param", "delay=5m", "--param", "message=too late", "--reason", "slow drill")
	if run.RunID == "" {
		t.Fatalf("run: %+v", run)
	}

	alice := newBrowser("alice-cancel")
	alice.signIn(c, creds)
	alice.run("opening the run page and waiting for both tasks to run",
		chromedp.Navigate(base+"/runs/"+run.RunID), chromedp.WaitVisible(chromedp.CSS("#cancel")),
		poll(`document.getElementById('count-running').textContent === '2'`),
		// A marker that a reload would lose.
		chromedp.Evaluate[chromedp.Void](`window.__noReload = true`))
	alice.run("cancelling from the page",
		chromedp.SendKeys(chromedp.CSS(`form[action$="/cancel"] input[name=reason]`), "wrong fleet"),
		chromedp.Click(chromedp.CSS("#cancel")), chromedp.WaitVisible(chromedp.CSS("#decided")))
	if got := alice.text("#decided"); !strings.Contains(got, "Cancelled by alice") {
		t.Fatalf("the page says %q after cancel", got)
	}
	alice.run("the run ending cancelled without a reload",
		poll(`document.getElementById('run-state').textContent === 'cancelled' && document.getElementById('count-cancelled').textContent === '2'`),
		poll(`document.getElementById('count-running').textContent === '0'`),
		poll(`[...document.querySelectorAll('#targets td.state')].filter(e => e.textContent === 'cancelled').length === 2`),
		// The run has ended: its cancel button goes, and the page says why.
		poll(`document.getElementById('cancel') === null && document.getElementById('run-cancel').textContent.includes('the run has ended')`),
		poll(`window.__noReload === true`))
	if n := value(alice, "looking for an error", chromedp.Evaluate[int](`document.querySelectorAll('#error-message').length`)); n != 0 {
		t.Fatalf("the page shows an error: %s", alice.text("#error-message"))
	}

	// The controller agrees: the CLI reads the run as cancelled (exit 5).
	r := c.CLI(t, "runs", "show", run.RunID, "--json")
	var shown e2e.RunJSON
	if err := json.Unmarshal([]byte(r.Stdout), &shown); err != nil {
		t.Fatalf("runs show: exit %d %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	if r.Exit != 5 || shown.Status != "cancelled" || shown.Cancelled != 2 || shown.Succeeded != 0 {
		t.Fatalf("runs show: exit %d, %+v", r.Exit, shown)
	}
	for _, res := range shown.Results {
		if res.Status != "cancelled" {
			t.Errorf("target %s: %s %q", res.Hostname, res.Status, res.Error)
		}
	}

	// The audit record of the cancel names the console's operator.
	var recs []auditRecordJSON
	c.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
	found := false
	for _, rec := range recs {
		if rec.Action == "run.cancel" && rec.Subject == run.RunID {
			found = true
			if rec.Actor != "operator:alice" || rec.Detail["reason"] != "wrong fleet" {
				t.Errorf("the cancel's audit record: %+v", rec)
			}
		}
	}
	if !found {
		t.Fatalf("no run.cancel audit record for %s", run.RunID)
	}
}

// seedOfflineHosts stops the controller, writes n enrolled host agents
// into its SQLite store (what enrollment leaves there: facts, the noop
// action as the catalogue describes it, no stream), and starts the
// controller again on the same data dir. None of them ever connects.
func seedOfflineHosts(t *testing.T, c *e2e.Controller, n int) {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Logf("controller exit: %v", err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: c.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	plugins := e2e.HonestPlugins(t, "noop")
	now := time.Now()
	for i := range n {
		host := fmt.Sprintf("bulk-%05d", i)
		if err := st.PutAgent(ctx, &store.Agent{ID: fmt.Sprintf("agt-bulk-%05d", i), Role: "host", Hostname: host,
			Facts:   &agentv1.AgentFacts{Hostname: host, Os: "linux", Labels: map[string]string{"fleet": "bulk"}},
			Plugins: plugins, EnrolledAt: now, LastSeen: now, CertSerial: fmt.Sprintf("bulk%05d", i), CertNotAfter: now.Add(24 * time.Hour),
			TokenLabels: map[string]string{"fleet": "bulk"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(c.DataDir, "console.addr"))
	c.StartAt(t, c.Addr)
}

// TestConsoleRunOf10000TargetsInARealBrowser: a run over 10,000 targets
// in one run page in the browser. What is seeded: 10,000 host agent
// records written straight into the controller's store (seedOfflineHosts:
// enrolled, offering noop, never connected), because enrolling 10,000
// agents for real would take the test's whole budget. Everything after
// that is the real path: `firebreak run noop --select label.fleet=bulk` plans
// the run through the controller's planner and dispatcher (10,000 queued
// tasks waiting for their agents), and the page reads it through GetRun.
// The first page renders with the total 10,000, the next page shows 50
// other targets, and the page's size does not grow with the targets.
func TestConsoleRunOf10000TargetsInARealBrowser(t *testing.T) {
	const n = 10000
	newBrowser := newChromium(t)
	c, _ := startConsoleController(t)
	seedOfflineHosts(t, c, n)
	base := consoleAddr(t, c)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "responder", "-o", creds)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "label.fleet=bulk", "--reason", "fleet-wide sweep")
	if run.RunID == "" {
		t.Fatalf("run: %+v", run)
	}

	alice := newBrowser("alice-10000")
	alice.signIn(c, creds)
	alice.run("opening the run page", chromedp.Navigate(base+"/runs/"+run.RunID), chromedp.WaitVisible(chromedp.CSS("#targets")))
	if got := alice.text("#run-targets"); got != "10000" {
		t.Fatalf("the page counts %q targets", got)
	}
	if got := alice.text("#count-queued"); got != "10000" {
		t.Fatalf("the queued counter shows %q", got)
	}
	if got := alice.text("#targets .pager .total"); got != "10000" {
		t.Fatalf("the table's total shows %q", got)
	}
	hosts := func() []string {
		return value(alice, "reading the hosts", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#targets tbody tr')].map(r => r.cells[0].textContent)`))
	}
	first := hosts()
	if len(first) != 50 || !strings.HasPrefix(alice.text("#targets .pager"), "Showing 1–50 of 10000") {
		t.Fatalf("the first page shows %d rows: %q", len(first), alice.text("#targets .pager"))
	}
	size := value(alice, "measuring the page", chromedp.Evaluate[int](`document.documentElement.outerHTML.length`))
	if size > 64<<10 {
		t.Fatalf("the run page of %d targets is %d bytes: a page must not grow with the targets", n, size)
	}

	alice.run("opening the next page", chromedp.Click(chromedp.CSS("#targets .pager a.next")),
		chromedp.WaitVisible(chromedp.CSS("#targets")), poll(`location.search.includes('after=')`))
	second := hosts()
	if len(second) != 50 || !strings.HasPrefix(alice.text("#targets .pager"), "Showing 51–100 of 10000") {
		t.Fatalf("the second page shows %d rows: %q", len(second), alice.text("#targets .pager"))
	}
	seen := map[string]bool{}
	for _, h := range first {
		seen[h] = true
	}
	for _, h := range second {
		if seen[h] || !strings.HasPrefix(h, "bulk-") {
			t.Fatalf("the second page repeats or invents target %q (first %v, second %v)", h, first, second)
		}
		seen[h] = true
	}
	t.Logf("run page of %d targets: %d bytes in the DOM; pages 1 and 2 show 100 different targets", n, size)
}
