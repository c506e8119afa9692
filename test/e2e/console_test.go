package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// consoleBrowser is an HTTPS client of the controller's console that
// trusts the controller's CA and keeps its own cookies, as one browser.
type consoleBrowser struct {
	t    *testing.T
	base string
	c    *http.Client
	csrf string
}

// startConsoleController starts a controller serving the console and
// returns it with the console's base URL.
func startConsoleController(t *testing.T, args ...string) (*e2e.Controller, string) {
	t.Helper()
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: append([]string{"--console-listen", "127.0.0.1:0"}, args...)})
	var addr string
	e2e.WaitFor(t, 10*time.Second, "console.addr", func() bool {
		raw, err := os.ReadFile(filepath.Join(c.DataDir, "console.addr"))
		addr = strings.TrimSpace(string(raw))
		return err == nil && addr != ""
	})
	return c, "https://" + addr
}

func newConsoleBrowser(t *testing.T, c *e2e.Controller, base string) *consoleBrowser {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	return &consoleBrowser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *consoleBrowser) get(u string) (int, string) {
	b.t.Helper()
	if !strings.HasPrefix(u, "https://") {
		u = b.base + u
	}
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return resp.StatusCode, string(body)
}

func (b *consoleBrowser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	resp, err := b.c.PostForm(b.base+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// loginLink asks for a one-time link with an operator credential.
func loginLink(t *testing.T, c *e2e.Controller, creds string) string {
	t.Helper()
	var out struct {
		URL      string `json:"url"`
		Operator string `json:"operator"`
	}
	r := c.CLIAs(t, creds, "console", "login", "--json")
	if r.Exit != 0 {
		t.Fatalf("console login: exit %d: %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil || !strings.HasPrefix(out.URL, "https://") {
		t.Fatalf("console login printed %q: %v", r.Stdout, err)
	}
	return out.URL
}

// TestConsoleThroughTheRealController is issue 15's console through the
// real binaries: a one-time link from `firebreak console login` signs in
// once; an approval round keeps the two-person rule (the creator's approve
// is refused in the page with the reason, a second operator's goes
// through); the run page's counters arrive over SSE as the agents answer;
// a viewer's forged POST and a POST without the CSRF token are refused;
// logout ends the session on the server; and the audit log names the
// console's operators.
func TestConsoleThroughTheRealController(t *testing.T) {
	c, base := startConsoleController(t, "--approval-threshold", "2")
	dir := t.TempDir()
	alice, bob, vic := filepath.Join(dir, "alice.creds"), filepath.Join(dir, "bob.creds"), filepath.Join(dir, "vic.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "alice", "--role", "approver", "-o", alice)
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)
	c.MustJSON(t, nil, 0, "operator", "add", "vic", "--role", "viewer", "-o", vic)

	// The link signs in once.
	link := loginLink(t, c, alice)
	a := newConsoleBrowser(t, c, base)
	if code, body := a.get(link); code != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("first use of the link: %d %s", code, body)
	}
	if code, body := newConsoleBrowser(t, c, base).get(link); code != http.StatusForbidden || !strings.Contains(body, "used already") {
		t.Fatalf("second use of the link: %d %s", code, body)
	}
	if code, body := a.get("/"); code != http.StatusOK || !strings.Contains(body, `<span id="operator">alice</span>`) {
		t.Fatalf("overview: %d %s", code, body)
	}

	// Three fake agents that answer only when the test says.
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

	// alice isolates three hosts, over the threshold of two: the run waits.
	var run e2e.RunJSON
	r := c.CLIAs(t, alice, "run", "host-isolate", "--select", "all", "--reason", "contain web tier", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || run.RunID == "" {
		t.Fatalf("run: exit %d %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	if code, body := a.get("/approvals"); code != http.StatusOK || !strings.Contains(body, run.RunID) || !strings.Contains(body, "contain web tier") {
		t.Fatalf("approvals: %d %s", code, body)
	}
	// alice's approve is refused in the page, with the reason.
	a.get("/runs/" + run.RunID)
	if code, body := a.post("/runs/"+run.RunID+"/approve", url.Values{"csrf": {a.csrf}, "reason": {"mine"}}); code != http.StatusForbidden ||
		!strings.Contains(body, "id=\"error-message\"") {
		t.Fatalf("alice approving her own run: %d %s", code, body)
	}
	// A POST without the CSRF token is refused, even from a signed-in approver.
	b := newConsoleBrowser(t, c, base)
	b.get(loginLink(t, c, bob))
	b.get("/runs/" + run.RunID)
	if code, _ := b.post("/runs/"+run.RunID+"/approve", url.Values{"reason": {"ok"}}); code != http.StatusForbidden {
		t.Fatalf("approve without a CSRF token: %d", code)
	}
	// A viewer sees no buttons, and a forged POST from a viewer session is refused.
	v := newConsoleBrowser(t, c, base)
	v.get(loginLink(t, c, vic))
	if _, body := v.get("/runs/" + run.RunID); strings.Contains(body, `id="approve"`) || strings.Contains(body, `id="cancel"`) {
		t.Fatalf("a viewer sees action buttons")
	}
	if code, _ := v.post("/runs/"+run.RunID+"/approve", url.Values{"csrf": {v.csrf}, "reason": {"forged"}}); code != http.StatusForbidden {
		t.Fatalf("a viewer's forged approve: %d", code)
	}

	// bob watches the run page's live part, then approves.
	events := b.watch(t, run.RunID)
	if code, body := b.post("/runs/"+run.RunID+"/approve", url.Values{"csrf": {b.csrf}, "reason": {"second pair of eyes"}}); code != http.StatusSeeOther {
		t.Fatalf("bob approving: %d %s", code, body)
	}
	e2e.WaitFor(t, 20*time.Second, "the tasks pushed to the agents", func() bool {
		for _, s := range streams {
			if len(s.Agent().Tasks()) == 0 {
				return false
			}
		}
		return true
	})
	for i, s := range streams {
		s.Answer(t, agentv1.TaskStatus_TASK_STATUS_SUCCEEDED)
		events.waitFor(t, fmt.Sprintf(`id="count-succeeded">%d<`, i+1))
	}
	events.waitEvent(t, "done")
	if _, body := b.get("/runs/" + run.RunID); !strings.Contains(body, `id="run-state">succeeded<`) || !strings.Contains(body, "second pair of eyes") {
		t.Fatalf("the ended run's page: %s", body)
	}

	// Logout ends the session on the server: the old cookie is refused.
	u, _ := url.Parse(base)
	saved := b.c.Jar.Cookies(u)
	if code, _ := b.post("/logout", url.Values{"csrf": {b.csrf}}); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	b.c.Jar.SetCookies(u, saved)
	if code, _ := b.get("/runs"); code != http.StatusSeeOther {
		t.Fatalf("the logged-out session still serves: %d", code)
	}

	// The audit log names the console's operators.
	audit := c.CLI(t, "audit", "list", "--json").Stdout
	for _, want := range []string{`"operator:alice"`, `"console.login"`, `"console.logout"`, `"run.approve"`, `"operator:bob"`, `"console.denied"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}

// sseWatch reads a console SSE stream in the background.
type sseWatch struct {
	lines chan string
}

// watch opens the run's event stream.
func (b *consoleBrowser) watch(t *testing.T, runID string) *sseWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/runs/"+runID+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	client := &http.Client{Jar: b.c.Jar, Transport: b.c.Transport}
	resp, err := client.Do(req) //nolint:bodyclose // the reading goroutine below closes it
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	w := &sseWatch{lines: make(chan string, 4096)}
	go func() {
		defer resp.Body.Close()
		defer close(w.lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	return w
}

// waitFor reads the stream until a line holds want.
func (w *sseWatch) waitFor(t *testing.T, want string) time.Time {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("the event stream ended before %s", want)
			}
			if strings.Contains(l, want) {
				return time.Now()
			}
		case <-deadline:
			t.Fatalf("no %s on the event stream", want)
		}
	}
}

// waitEvent reads the stream until an event of kind.
func (w *sseWatch) waitEvent(t *testing.T, kind string) { t.Helper(); w.waitFor(t, "event: "+kind) }

// TestConsoleRunPageLatency measures the time from a result arriving at the
// controller to the run page's counter changing, over SSE: one result at a
// time over a run of FIREBREAK_CONSOLE_TARGETS targets (default 20; the
// figure in docs/console.md is for 1,000), and prints p50 and p99.
func TestConsoleRunPageLatency(t *testing.T) {
	n := 20
	if s := os.Getenv("FIREBREAK_CONSOLE_TARGETS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("FIREBREAK_CONSOLE_TARGETS=%q", s)
		}
	}
	c, base := startConsoleController(t, "--enroll-rate-per-source", "100000", "--enroll-burst-per-source", "100000",
		"--enroll-rate", "100000", "--enroll-burst", "100000")
	token := c.Token(t, "host", n)
	var streams []*e2e.FakeStream
	var ids []string
	for i := range n {
		host := fmt.Sprintf("lat-%04d", i)
		f := c.EnrollFake(t, token, "host", &agentv1.AgentFacts{Hostname: host, Os: "linux"})
		s, err := f.Connect(t, &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: host, Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}, false)
		if err != nil {
			t.Fatal(err)
		}
		streams, ids = append(streams, s), append(ids, f.ID)
	}
	c.WaitConnected(t, ids...)
	var run e2e.RunJSON
	r := c.CLI(t, "run", "noop", "--select", "all", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || run.RunID == "" {
		t.Fatalf("run: exit %d %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	b := newConsoleBrowser(t, c, base)
	b.get(loginLink(t, c, c.Creds))
	start := time.Now()
	code, page := b.get("/runs/" + run.RunID)
	firstRender := time.Since(start)
	if code != http.StatusOK {
		t.Fatalf("run page: %d", code)
	}
	events := b.watch(t, run.RunID)
	e2e.WaitFor(t, 60*time.Second, "the tasks pushed", func() bool {
		for _, s := range streams {
			if len(s.Agent().Tasks()) == 0 {
				return false
			}
		}
		return true
	})
	lat := make([]time.Duration, 0, n)
	for i, s := range streams {
		sent := time.Now()
		s.Answer(t, agentv1.TaskStatus_TASK_STATUS_SUCCEEDED)
		got := events.waitFor(t, fmt.Sprintf(`id="count-succeeded">%d<`, i+1))
		lat = append(lat, got.Sub(sent))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	t.Logf("console run page, %d targets: result → counter p50 %v, p99 %v, max %v; first render %v (client-side), %d bytes",
		n, p(0.50), p(0.99), lat[len(lat)-1], firstRender, len(page))
}

// TestConsoleHolds200Streams opens 200 run-page event streams on one
// controller and prints its RSS and CPU while they are open and idle, and
// while one result reaches all of them.
func TestConsoleHolds200Streams(t *testing.T) {
	c, base := startConsoleController(t, "--max-watches-per-operator", "256")
	token := c.Token(t, "host", 2)
	var streams []*e2e.FakeStream
	for i := range 2 {
		host := fmt.Sprintf("sse-%d", i)
		f := c.EnrollFake(t, token, "host", &agentv1.AgentFacts{Hostname: host, Os: "linux"})
		s, err := f.Connect(t, &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: host, Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}, false)
		if err != nil {
			t.Fatal(err)
		}
		c.WaitConnected(t, f.ID)
		streams = append(streams, s)
	}
	var run e2e.RunJSON
	r := c.CLI(t, "run", "noop", "--select", "all", "--json")
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || run.RunID == "" {
		t.Fatalf("run: exit %d %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	b := newConsoleBrowser(t, c, base)
	b.get(loginLink(t, c, c.Creds))
	rss0, cpu0 := procUsage(t, c.Proc.Pid())
	const n = 200
	watches := make([]*sseWatch, n)
	for i := range watches {
		watches[i] = b.watch(t, run.RunID)
		watches[i].waitEvent(t, "counts")
	}
	rss1, cpu1 := procUsage(t, c.Proc.Pid())
	time.Sleep(10 * time.Second)
	rss2, cpu2 := procUsage(t, c.Proc.Pid())
	e2e.WaitFor(t, 20*time.Second, "the tasks pushed", func() bool {
		return len(streams[0].Agent().Tasks()) > 0 && len(streams[1].Agent().Tasks()) > 0
	})
	streams[0].Answer(t, agentv1.TaskStatus_TASK_STATUS_SUCCEEDED)
	for _, w := range watches {
		w.waitFor(t, `id="count-succeeded">1<`)
	}
	rss3, cpu3 := procUsage(t, c.Proc.Pid())
	t.Logf("controller with %d console streams: RSS %d KiB before, %d KiB with them open (+%d KiB, %.1f KiB a stream); CPU %v to open them, %v over 10 s idle, %v to send one update to all; RSS %d KiB after 10 s idle, %d KiB after the update",
		n, rss0, rss1, rss1-rss0, float64(rss1-rss0)/n, cpu1-cpu0, cpu2-cpu1, cpu3-cpu2, rss2, rss3)
}

// procUsage reads a process's resident set (KiB) and its CPU time so far.
func procUsage(t *testing.T, pid int) (int64, time.Duration) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc to measure with: %v", err)
	}
	var rss int64
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			rss, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name: utime and stime are the 14th and
	// 15th fields of the line, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return rss, time.Duration(ut+st) * 10 * time.Millisecond
}
