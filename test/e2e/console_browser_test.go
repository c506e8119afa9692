package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// chromiumPath finds Debian's chromium (or another Chromium build).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium installed (apt-get install chromium): the console's real-browser tests need one")
	return ""
}

// browserSession is one headless Chromium browser context (its own
// cookies), driven by chromedp.
type browserSession struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// newChromium starts a headless Chromium and returns a function making
// browser contexts, each with cookies of its own.
func newChromium(t *testing.T) func(name string) *browserSession {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-background-networking", true),
		// The console's certificate is issued by the test controller's own
		// CA, which this throwaway profile does not hold.
		chromedp.Flag("ignore-certificate-errors", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	if err := chromedp.Do(browser); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return func(name string) *browserSession {
		ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The first run on a context opens its tab for the context's life:
		// it must not carry a step's timeout.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("opening a tab for %s: %v", name, err)
		}
		s := &browserSession{t: t, name: name, ctx: ctx}
		t.Cleanup(s.screenshotOnFailure)
		return s
	}
}

// run runs chromedp actions with a bound on the whole step.
func (s *browserSession) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		s.t.Fatalf("%s (%s): %v", what, s.name, err)
	}
}

// value runs one action that returns a value.
func value[T any](s *browserSession, what string, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		s.t.Fatalf("%s (%s): %v", what, s.name, err)
	}
	return v
}

// text reads an element's text.
func (s *browserSession) text(sel string) string {
	s.t.Helper()
	b, _ := json.Marshal(sel)
	return value(s, "reading "+sel, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, b)))
}

// poll waits until a JavaScript predicate holds.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))
}

// screenshotOnFailure saves what the browser shows when the test failed,
// into the test's artifact directory (go test -artifacts).
func (s *browserSession) screenshotOnFailure() {
	if !s.t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
	if err != nil {
		s.t.Logf("screenshot of %s: %v", s.name, err)
		return
	}
	path := filepath.Join(s.t.ArtifactDir(), s.name+".jpg")
	if err := os.WriteFile(path, png, 0o600); err == nil {
		s.t.Logf("screenshot of %s's page: %s", s.name, path)
	}
}

// TestConsoleInARealBrowser drives the console in headless Chromium through
// the real login: a one-time link signs in and is refused a second time;
// the creator's approve is refused in the page; a second approver's goes
// through and the run page's counters reach the end without a reload; an
// agent's hostile error renders as text and runs no script; a viewer sees
// no action buttons; sign-out ends the session.
func TestConsoleInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	c, _ := startConsoleController(t, "--approval-threshold", "2")
	dir := t.TempDir()
	aliceCreds, bobCreds, vicCreds := filepath.Join(dir, "alice.creds"), filepath.Join(dir, "bob.creds"), filepath.Join(dir, "vic.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "approver", "-o", aliceCreds)
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bobCreds)
	c.MustJSON(t, nil, 0, "operator", "add", "vic", "--role", "viewer", "-o", vicCreds)

	alice := newBrowser("alice")
	link := loginLink(t, c, aliceCreds)
	alice.run("opening the login link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#operator")))
	if got := alice.text("#operator"); got != "alice" {
		t.Fatalf("signed in as %q", got)
	}
	again := newBrowser("second-use")
	again.run("opening the link again", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	if got := again.text("#error-message"); !strings.Contains(got, "used already") {
		t.Fatalf("the second use says %q", got)
	}

	token := c.Token(t, "host", 3)
	var streams []*e2e.FakeStream
	for i := range 3 {
		host := fmt.Sprintf("web-%d", i)
		f := c.EnrollFake(t, token, "host", &agentv1.AgentFacts{Hostname: host, Os: "linux"})
		s, err := f.Connect(t, &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: host, Os: "linux"}, Plugins: e2e.HonestPlugins(t, "host-isolate")}, false)
		if err != nil {
			t.Fatal(err)
		}
		c.WaitConnected(t, f.ID)
		streams = append(streams, s)
	}
	var run e2e.RunJSON
	r := c.CLIAs(t, aliceCreds, "run", "host-isolate", "--select", "all", "--reason", "contain web tier", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || run.RunID == "" {
		t.Fatalf("run: exit %d %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	base := strings.SplitN(link, "/login/", 2)[0]
	runURL := base + "/runs/" + run.RunID

	// alice approving her own run is refused in the page, with the reason.
	alice.run("alice approving", chromedp.Navigate(runURL), chromedp.WaitVisible(chromedp.CSS("#approve")),
		chromedp.SendKeys(chromedp.CSS(`form[action$="/approve"] input[name=reason]`), "mine"),
		chromedp.Click(chromedp.CSS("#approve")), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	if got := alice.text("#error-message"); !strings.Contains(got, "cannot approve") && !strings.Contains(got, "created") {
		t.Fatalf("alice's refusal says %q", got)
	}

	// A viewer sees the run and no action button.
	vic := newBrowser("vic")
	vic.run("vic signing in", chromedp.Navigate(loginLink(t, c, vicCreds)), chromedp.WaitVisible(chromedp.CSS("#operator")),
		chromedp.Navigate(runURL), chromedp.WaitVisible(chromedp.CSS("#live")))
	buttons := value(vic, "counting buttons", chromedp.Evaluate[int](`document.querySelectorAll('#approve, #reject, #cancel').length`))
	if buttons != 0 {
		t.Fatalf("a viewer sees %d action buttons", buttons)
	}

	// bob approves; the page he lands on follows the run live.
	bob := newBrowser("bob")
	bob.run("bob approving", chromedp.Navigate(loginLink(t, c, bobCreds)), chromedp.WaitVisible(chromedp.CSS("#operator")),
		chromedp.Navigate(runURL), chromedp.WaitVisible(chromedp.CSS("#approve")),
		chromedp.SendKeys(chromedp.CSS(`form[action$="/approve"] input[name=reason]`), "second pair of eyes"),
		chromedp.Click(chromedp.CSS("#approve")), chromedp.WaitVisible(chromedp.CSS("#decisions")))
	title := value(bob, "reading the title", chromedp.Title())
	e2e.WaitFor(t, 20*time.Second, "the tasks pushed to the agents", func() bool {
		for _, s := range streams {
			if len(s.Agent().Tasks()) == 0 {
				return false
			}
		}
		return true
	})
	// One agent answers with hostile text in its error and output.
	hostileText := `<script>document.title="pwned"</script><img src=x onerror="document.title='pwned'">`
	tasks := streams[0].Agent().Tasks()
	if err := streams[0].Stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: &agentv1.TaskResult{
		TaskId: e2e.TaskID(tasks[0]), Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: hostileText,
		OutputJson: []byte(fmt.Sprintf(`{"note":%q}`, hostileText))}}}); err != nil {
		t.Fatal(err)
	}
	bob.run("the failed counter", poll(`document.getElementById('count-failed').textContent === '1'`))
	for _, s := range streams[1:] {
		s.Answer(t, agentv1.TaskStatus_TASK_STATUS_SUCCEEDED)
	}
	bob.run("the counters reaching the end without a reload",
		poll(`document.getElementById('count-succeeded').textContent === '2' && document.getElementById('run-state').textContent !== 'running'`),
		poll(`document.querySelector('#targets').innerText.includes('<script>')`))
	injected := value(bob, "checking the DOM", chromedp.Evaluate[int](`document.querySelectorAll('#targets script, #targets img').length`))
	after := value(bob, "reading the title", chromedp.Title())
	if injected != 0 || after != title {
		t.Fatalf("hostile text became markup: %d elements, title %q (was %q)", injected, after, title)
	}

	// Sign-out ends the session; the overview then asks to sign in.
	bob.run("signing out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#signed-out")),
		chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("pre")))
	loc := value(bob, "reading the location", chromedp.Location())
	if !strings.HasSuffix(loc, "/login") {
		t.Fatalf("after sign-out / went to %s", loc)
	}
}
