package console_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fakeOperator is an operator service with canned runs; it records who
// called which method, so a test sees whether a refused request reached
// the service at all.
type fakeOperator struct {
	operatorv1.UnimplementedOperatorServiceServer
	mu     sync.Mutex
	runs   map[string]*operatorv1.Run
	calls  []string
	events []*operatorv1.WatchRunResponse
	// refuse, when set, is returned by ApproveRun.
	refuse error
}

func (f *fakeOperator) record(ctx context.Context, m string) {
	op, _ := auth.OperatorFrom(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m+" by "+op.Name)
}

func (f *fakeOperator) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeOperator) ListRuns(ctx context.Context, _ *operatorv1.ListRunsRequest) (*operatorv1.ListRunsResponse, error) {
	f.record(ctx, "ListRuns")
	var out []*operatorv1.Run
	for _, r := range f.runs {
		out = append(out, &operatorv1.Run{Id: r.Id, Action: r.Action, Status: r.Status, CreatedBy: r.CreatedBy, Reason: r.Reason})
	}
	return &operatorv1.ListRunsResponse{Runs: out}, nil
}

func (f *fakeOperator) GetRun(ctx context.Context, req *operatorv1.GetRunRequest) (*operatorv1.GetRunResponse, error) {
	f.record(ctx, "GetRun")
	r, ok := f.runs[req.GetRunId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "run %q not found", req.GetRunId())
	}
	return &operatorv1.GetRunResponse{Run: r}, nil
}

func (f *fakeOperator) ApproveRun(ctx context.Context, req *operatorv1.ApproveRunRequest) (*operatorv1.ApproveRunResponse, error) {
	f.record(ctx, "ApproveRun "+req.GetRunId()+" "+req.GetComment())
	if f.refuse != nil {
		return nil, f.refuse
	}
	return &operatorv1.ApproveRunResponse{}, nil
}

func (f *fakeOperator) CancelRun(ctx context.Context, req *operatorv1.CancelRunRequest) (*operatorv1.CancelRunResponse, error) {
	f.record(ctx, "CancelRun "+req.GetRunId())
	return &operatorv1.CancelRunResponse{}, nil
}

func (f *fakeOperator) CreateRun(ctx context.Context, req *operatorv1.CreateRunRequest) (*operatorv1.CreateRunResponse, error) {
	f.record(ctx, "CreateRun "+req.GetAction()+" "+req.GetSelector()+" "+req.GetReason())
	return &operatorv1.CreateRunResponse{Run: &operatorv1.Run{Id: "new-run", Action: req.GetAction()}}, nil
}

func (f *fakeOperator) RevokeAgents(ctx context.Context, req *operatorv1.RevokeAgentsRequest) (*operatorv1.RevokeAgentsResponse, error) {
	f.record(ctx, "RevokeAgents "+strings.Join(req.GetIds(), ",")+" "+req.GetReason())
	return &operatorv1.RevokeAgentsResponse{}, nil
}

func (f *fakeOperator) ListAgents(ctx context.Context, _ *operatorv1.ListAgentsRequest) (*operatorv1.ListAgentsResponse, error) {
	f.record(ctx, "ListAgents")
	var out []*operatorv1.Agent
	for i := range 120 {
		a := &operatorv1.Agent{Id: fmt.Sprintf("agent-%03d", i), Connected: i%2 == 0,
			Facts: &agentv1.AgentFacts{Hostname: fmt.Sprintf("web-%03d", i), Account: "111122223333", InstanceId: fmt.Sprintf("i-%03d", i),
				Labels: map[string]string{"note": hostile}}}
		// Every tenth odd one's instance is terminated, as AWS reports.
		if i%10 == 3 {
			a.TerminatedAt = timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		}
		out = append(out, a)
	}
	return &operatorv1.ListAgentsResponse{Agents: out}, nil
}

func (f *fakeOperator) WatchRun(req *operatorv1.WatchRunRequest, stream operatorv1.OperatorService_WatchRunServer) error {
	f.record(stream.Context(), "WatchRun")
	for _, ev := range f.events {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// hostile is text an attacker controls (a finding, an output, a note).
const hostile = `<script>document.title="pwned"</script><img src=x onerror=alert(1)>`

// testConsole is a console on a TLS test server, with a real store.
type testConsole struct {
	srv   *httptest.Server
	store *store.SQL
	op    *fakeOperator
	ev    *fakeEvidence
	cases *fakeCases
	pb    *fakePlaybooks
	now   time.Time
	mu    sync.Mutex
}

func (tc *testConsole) clock() time.Time {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.now
}

func (tc *testConsole) advance(d time.Duration) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.now = tc.now.Add(d)
}

func newTestConsole(t *testing.T) *testConsole {
	t.Helper()
	return newTestConsoleWith(t, nil)
}

// newTestConsoleWith is newTestConsole with the console's config changed
// by with (when not nil) before the console is built.
func newTestConsoleWith(t *testing.T, with func(*console.Config)) *testConsole {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, o := range []struct {
		name string
		role operatorv1.OperatorRole
	}{{"alice", operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER}, {"bob", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER},
		{"vic", operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER}, {"ada", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN}} {
		if err := st.PutOperator(ctx, &store.Operator{Name: o.name, Role: o.role, CertSerial: "serial-" + o.name, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	tasks := make([]*operatorv1.Task, 0, 10000)
	for i := range 10000 {
		tasks = append(tasks, &operatorv1.Task{Id: fmt.Sprintf("t%05d", i), Hostname: fmt.Sprintf("host-%05d", i), AgentId: fmt.Sprintf("a%05d", i),
			Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED})
	}
	tasks[0].Error = hostile
	tasks[0].OutputJson = []byte(`{"note":` + fmt.Sprintf("%q", hostile) + `}`)
	tasks[1].Status = agentv1.TaskStatus_TASK_STATUS_RUNNING
	op := &fakeOperator{runs: map[string]*operatorv1.Run{
		"big": {Id: "big", Action: "noop", Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", Reason: hostile, Tasks: tasks, CreatedAt: timestamppb.Now()},
		"iso": {Id: "iso", Action: "host-isolate", Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CreatedBy: "alice", Tasks: []*operatorv1.Task{
			{Id: "iso-t1", AgentId: "agent-001", Hostname: "web-001", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, Error: hostile}}},
		"waiting": {Id: "waiting", Action: "host-isolate", Status: operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, CreatedBy: "alice", Reason: hostile},
	}}
	tc := &testConsole{store: st, op: op, ev: newFakeEvidence(), cases: newFakeCases(), pb: &fakePlaybooks{}, now: time.Unix(1_800_000_000, 0)}
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := console.Config{Store: st, Operator: op, Evidence: tc.ev, Cases: tc.cases, Playbooks: tc.pb, Policy: policy(), BaseURL: srv.URL, Clock: tc.clock}
	if with != nil {
		with(&cfg)
	}
	c, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = c
	tc.srv = srv
	return tc
}

// policy is the controller's policy for the services the console calls.
func policy() map[string]operatorv1.OperatorRole {
	p := maps.Clone(operator.Policy)
	maps.Copy(p, evidence.Policy)
	maps.Copy(p, cases.Policy)
	maps.Copy(p, playbookrun.Policy)
	return p
}

// link stores a login link for operator's credential and returns its URL.
func (tc *testConsole) link(t *testing.T, operator, serial string, ttl time.Duration) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	now := tc.clock()
	if err := tc.store.CreateConsoleLink(context.Background(), &store.ConsoleLink{Hash: hex.EncodeToString(sum[:]), Operator: operator, CertSerial: serial,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
		t.Fatal(err)
	}
	return tc.srv.URL + "/login/" + secret
}

// browser is an HTTP client with its own cookie jar that does not follow
// redirects, so a test sees each answer.
func (tc *testConsole) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	c := tc.srv.Client()
	return &http.Client{Transport: c.Transport, Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn returns a browser signed in as operator through a login link.
func (tc *testConsole) signIn(t *testing.T, operator string) *http.Client {
	t.Helper()
	b := tc.browser(t)
	resp, body := get(t, b, tc.link(t, operator, "serial-"+operator, time.Minute))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signing in %s: %d %s", operator, resp.StatusCode, body)
	}
	return b
}

// answer is a response whose body has been read and closed.
type answer struct {
	StatusCode int
	Header     http.Header
	cookies    []*http.Cookie
}

// Cookies are the cookies the response set.
func (a answer) Cookies() []*http.Cookie { return a.cookies }

func read(t *testing.T, resp *http.Response, err error) (answer, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{StatusCode: resp.StatusCode, Header: resp.Header, cookies: resp.Cookies()}, string(b)
}

func get(t *testing.T, c *http.Client, u string) (answer, string) {
	t.Helper()
	resp, err := c.Get(u)
	return read(t, resp, err)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (answer, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	return read(t, resp, err)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a signed-in page.
func (tc *testConsole) csrf(t *testing.T, c *http.Client) string {
	t.Helper()
	_, body := get(t, c, tc.srv.URL+"/runs")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on the runs page: %s", body)
	}
	return m[1]
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	tc := newTestConsole(t)
	alice := tc.signIn(t, "alice")
	anon := tc.browser(t)
	tests := []struct {
		name   string
		client *http.Client
		path   string
	}{
		{"sign-in page", anon, "/login"},
		{"redirect of a signed-out request", anon, "/runs"},
		{"static script", anon, "/static/htmx.min.js"},
		{"unknown path", anon, "/nope"},
		{"run page", alice, "/runs/big"},
		{"error page", alice, "/runs/missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := get(t, tt.client, tc.srv.URL+tt.path)
			if got := resp.Header.Get("Content-Security-Policy"); got != console.CSP {
				t.Errorf("CSP = %q, want %q", got, console.CSP)
			}
			for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
		})
	}
	if strings.Contains(console.CSP, "unsafe-inline") || strings.Contains(console.CSP, "unsafe-eval") || strings.Contains(console.CSP, "http") {
		t.Errorf("the CSP allows inline script, eval or a remote origin: %s", console.CSP)
	}
}

func TestPagesLoadNothingFromAnotherOriginAndNoInlineScript(t *testing.T) {
	tc := newTestConsole(t)
	alice := tc.signIn(t, "alice")
	for _, path := range []string{"/", "/runs", "/runs/big", "/runs/big?q=" + url.QueryEscape(hostile), "/approvals", "/agents", "/agents/agent-001", "/evidence", "/evidence/evd-001", "/cases", "/cases/case-001", "/playbooks", "/playbooks/ec2-compromise", "/audit", "/login"} {
		t.Run(path, func(t *testing.T) {
			_, body := get(t, alice, tc.srv.URL+path)
			for _, bad := range domProblems(t, body) {
				t.Error(bad)
			}
		})
	}
}

// domProblems parses a page as a browser would and lists what the CSP
// would block or what would run: an inline script, an event handler
// attribute, a javascript: URL, or a resource from another origin.
func domProblems(t *testing.T, page string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			src := ""
			for _, a := range n.Attr {
				switch {
				case strings.HasPrefix(a.Key, "on"):
					bad = append(bad, fmt.Sprintf("<%s> has an event handler %s=%q", n.Data, a.Key, a.Val))
				case a.Key == "src" || a.Key == "href" || a.Key == "action" || a.Key == "sse-connect" || a.Key == "hx-get":
					v := strings.ToLower(strings.TrimSpace(a.Val))
					if strings.HasPrefix(v, "javascript:") || strings.Contains(v, "//") {
						bad = append(bad, fmt.Sprintf("<%s %s=%q> leaves the origin or runs script", n.Data, a.Key, a.Val))
					}
					if a.Key == "src" {
						src = a.Val
					}
				}
			}
			if n.Data == "script" && (src == "" || (n.FirstChild != nil && strings.TrimSpace(n.FirstChild.Data) != "")) {
				bad = append(bad, "an inline <script>")
			}
			if n.Data == "style" {
				bad = append(bad, "an inline <style>")
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return bad
}

func TestLinkLogin(t *testing.T) {
	tc := newTestConsole(t)
	used := tc.link(t, "alice", "serial-alice", time.Minute)
	if resp, body := get(t, tc.browser(t), used); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use: %d %s", resp.StatusCode, body)
	}
	tests := []struct {
		name     string
		link     string
		wantCode int
		wantText string
	}{
		{"a valid link signs in", tc.link(t, "bob", "serial-bob", time.Minute), http.StatusOK, "Signed in"},
		{"a used link is refused", used, http.StatusForbidden, "used already"},
		{"an expired link is refused", tc.link(t, "bob", "serial-bob", -time.Second), http.StatusForbidden, "expired"},
		{"an unknown link is refused", tc.srv.URL + "/login/forged", http.StatusForbidden, "not known"},
		{"a replaced credential's link is refused", tc.link(t, "bob", "serial-old", time.Minute), http.StatusForbidden, "revoked or replaced"},
		{"an unknown operator's link is refused", tc.link(t, "mallory", "serial-mallory", time.Minute), http.StatusForbidden, "not known"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, tc.browser(t), tt.link)
			if resp.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantText) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tt.wantCode, tt.wantText)
			}
			var session *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == console.SessionCookie {
					session = c
				}
			}
			if tt.wantCode != http.StatusOK {
				if session != nil {
					t.Fatalf("a refused link set a session cookie")
				}
				return
			}
			if session == nil || !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Domain != "" {
				t.Fatalf("session cookie = %+v, want HttpOnly, Secure, SameSite=Strict, path / and no domain", session)
			}
		})
	}
}

func TestSessionEnds(t *testing.T) {
	tc := newTestConsole(t)
	tests := []struct {
		name string
		end  func(t *testing.T, c *http.Client)
	}{
		{"logout ends it on the server", func(t *testing.T, c *http.Client) {
			// The cookie is kept as a copied cookie would be: the server
			// must refuse it, not just the browser forget it.
			u, _ := url.Parse(tc.srv.URL)
			saved := c.Jar.Cookies(u)
			resp, _ := post(t, c, tc.srv.URL+"/logout", url.Values{"csrf": {tc.csrf(t, c)}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("logout: %d", resp.StatusCode)
			}
			c.Jar.SetCookies(u, saved)
		}},
		{"idle timeout", func(t *testing.T, c *http.Client) { tc.advance(console.DefaultIdleTimeout + time.Second) }},
		{"absolute timeout", func(t *testing.T, c *http.Client) {
			for range 30 {
				tc.advance(console.DefaultIdleTimeout - time.Minute)
				get(t, c, tc.srv.URL+"/runs")
			}
		}},
		{"revoking the credential", func(t *testing.T, c *http.Client) {
			op, _ := tc.store.GetOperator(context.Background(), "alice")
			op.Revoked = true
			if err := tc.store.PutOperator(context.Background(), op); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { op.Revoked = false; _ = tc.store.PutOperator(context.Background(), op) })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tc.signIn(t, "alice")
			if resp, body := get(t, c, tc.srv.URL+"/runs"); resp.StatusCode != http.StatusOK {
				t.Fatalf("signed in: %d %s", resp.StatusCode, body)
			}
			tt.end(t, c)
			resp, _ := get(t, c, tc.srv.URL+"/runs")
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Fatalf("after the end: %d to %q, want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

func TestStateChangingRequestsNeedTheCSRFTokenAndTheRole(t *testing.T) {
	tc := newTestConsole(t)
	bob := tc.signIn(t, "bob")
	vic := tc.signIn(t, "vic")
	bobToken, vicToken := tc.csrf(t, bob), tc.csrf(t, vic)
	tests := []struct {
		name     string
		client   *http.Client
		path     string
		form     url.Values
		wantCode int
		wantCall string
	}{
		{"no token", bob, "/runs/waiting/approve", url.Values{"reason": {"ok"}}, http.StatusForbidden, ""},
		{"a wrong token", bob, "/runs/waiting/approve", url.Values{"reason": {"ok"}, "csrf": {"forged"}}, http.StatusForbidden, ""},
		{"another session's token", bob, "/runs/waiting/approve", url.Values{"reason": {"ok"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"a viewer's forged approve", vic, "/runs/waiting/approve", url.Values{"reason": {"ok"}, "csrf": {vicToken}}, http.StatusForbidden, ""},
		{"a viewer's forged cancel", vic, "/runs/big/cancel", url.Values{"csrf": {vicToken}}, http.StatusForbidden, ""},
		{"an approver with the token", bob, "/runs/waiting/approve", url.Values{"reason": {"looks right"}, "csrf": {bobToken}}, http.StatusSeeOther,
			"ApproveRun waiting looks right by bob"},
		{"logout without the token", bob, "/logout", nil, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(tc.op.called())
			resp, body := post(t, tt.client, tc.srv.URL+tt.path, tt.form)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("POST %s: %d %s, want %d", tt.path, resp.StatusCode, body, tt.wantCode)
			}
			var calls []string
			for _, c := range tc.op.called()[before:] {
				if !strings.HasPrefix(c, "List") && !strings.HasPrefix(c, "GetRun") {
					calls = append(calls, c)
				}
			}
			if tt.wantCall == "" && len(calls) > 0 {
				t.Fatalf("a refused request reached the service: %v", calls)
			}
			if tt.wantCall != "" && (len(calls) != 1 || calls[0] != tt.wantCall) {
				t.Fatalf("service calls = %v, want %q", calls, tt.wantCall)
			}
		})
	}
}

func TestButtonsFollowTheRole(t *testing.T) {
	tc := newTestConsole(t)
	tests := []struct {
		operator string
		run      string
		want     map[string]bool
	}{
		{"vic", "waiting", map[string]bool{`id="approve"`: false, `id="reject"`: false, `id="cancel"`: false}},
		{"alice", "waiting", map[string]bool{`id="approve"`: false, `id="cancel"`: true}},
		{"bob", "waiting", map[string]bool{`id="approve"`: true, `id="reject"`: true, `id="cancel"`: true}},
		{"bob", "big", map[string]bool{`id="approve"`: false, `id="cancel"`: true}},
	}
	for _, tt := range tests {
		t.Run(tt.operator+" on "+tt.run, func(t *testing.T) {
			_, body := get(t, tc.signIn(t, tt.operator), tc.srv.URL+"/runs/"+tt.run)
			for el, want := range tt.want {
				if got := strings.Contains(body, el); got != want {
					t.Errorf("%s shown = %v, want %v", el, got, want)
				}
			}
		})
	}
}

func TestRefusalOfTheServiceIsShownWithItsReason(t *testing.T) {
	tc := newTestConsole(t)
	tc.op.refuse = status.Error(codes.PermissionDenied, `run "waiting": the operator who created a run cannot approve it`)
	bob := tc.signIn(t, "bob")
	resp, body := post(t, bob, tc.srv.URL+"/runs/waiting/approve", url.Values{"reason": {"x"}, "csrf": {tc.csrf(t, bob)}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot approve it") {
		t.Fatalf("got %d %s, want 403 with the service's reason", resp.StatusCode, body)
	}
}

func TestHostileTextRendersAsText(t *testing.T) {
	tc := newTestConsole(t)
	alice := tc.signIn(t, "alice")
	for _, path := range []string{"/runs/big", "/approvals", "/runs/big?q=" + url.QueryEscape(hostile)} {
		t.Run(path, func(t *testing.T) {
			_, body := get(t, alice, tc.srv.URL+path)
			if strings.Contains(body, "<script>document") || strings.Contains(body, "<img src=x") {
				t.Fatalf("hostile text reached the page as markup")
			}
			if !strings.Contains(body, "&lt;script&gt;document.title=") {
				t.Fatalf("hostile text is not shown escaped: %s", body)
			}
		})
	}
}

var (
	totalRE = regexp.MustCompile(`of <span class="total">(\d+)</span>`)
	nextRE  = regexp.MustCompile(`class="next" href="([^"]+)"`)
	rowRE   = regexp.MustCompile(`<td>(host-\d+)</td>`)
)

func TestTenThousandTargetsArePaged(t *testing.T) {
	tc := newTestConsole(t)
	alice := tc.signIn(t, "alice")
	tests := []struct {
		name      string
		path      string
		wantTotal string
		wantFirst string
		wantRows  int
		wantNext  bool
	}{
		{"first page", "/runs/big", "10000", "host-00000", console.DefaultPageSize, true},
		{"a search narrows the total", "/runs/big?q=host-0999", "10", "host-09990", 10, false},
		{"a search for a state", "/runs/big?q=running", "1", "host-00001", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body := get(t, alice, tc.srv.URL+tt.path)
			if m := totalRE.FindStringSubmatch(body); m == nil || m[1] != tt.wantTotal {
				t.Fatalf("total = %v, want %s", m, tt.wantTotal)
			}
			rows := rowRE.FindAllStringSubmatch(body, -1)
			if len(rows) != tt.wantRows || rows[0][1] != tt.wantFirst {
				t.Fatalf("rows = %d starting %v, want %d starting %s", len(rows), rows[:min(1, len(rows))], tt.wantRows, tt.wantFirst)
			}
			if got := nextRE.MatchString(body); got != tt.wantNext {
				t.Fatalf("next link shown = %v, want %v", got, tt.wantNext)
			}
		})
	}
	// Following the cursor gives the next rows, and the page size does not
	// grow with the run.
	_, first := get(t, alice, tc.srv.URL+"/runs/big")
	next := strings.ReplaceAll(nextRE.FindStringSubmatch(first)[1], "&amp;", "&")
	_, second := get(t, alice, tc.srv.URL+next)
	rows := rowRE.FindAllStringSubmatch(second, -1)
	if len(rows) != console.DefaultPageSize || rows[0][1] != fmt.Sprintf("host-%05d", console.DefaultPageSize) {
		t.Fatalf("second page starts %v with %d rows", rows[:min(1, len(rows))], len(rows))
	}
	if !strings.Contains(second, "Showing 51–100 of") {
		t.Fatalf("the second page does not say where it is")
	}
	if len(first) > 64<<10 {
		t.Fatalf("the first page of a 10,000-target run is %d bytes", len(first))
	}
}

func TestAgentsAreSearchedAndPaged(t *testing.T) {
	tc := newTestConsole(t)
	vic := tc.signIn(t, "vic")
	tests := []struct{ path, wantTotal string }{
		{"/agents", "120"},
		{"/agents?q=i-007", "1"},
		{"/agents?q=111122223333", "120"},
	}
	for _, tt := range tests {
		_, body := get(t, vic, tc.srv.URL+tt.path)
		if m := totalRE.FindStringSubmatch(body); m == nil || m[1] != tt.wantTotal {
			t.Errorf("%s: total = %v, want %s", tt.path, m, tt.wantTotal)
		}
	}
}

func TestRunEventsStreamTheCounters(t *testing.T) {
	tc := newTestConsole(t)
	run := &operatorv1.Run{Id: "live", Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, Tasks: []*operatorv1.Task{
		{Id: "a", Status: agentv1.TaskStatus_TASK_STATUS_DISPATCHED}, {Id: "b", Status: agentv1.TaskStatus_TASK_STATUS_DISPATCHED}}}
	done := &operatorv1.Run{Id: "live", Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, Tasks: []*operatorv1.Task{
		{Id: "a", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED}, {Id: "b", Status: agentv1.TaskStatus_TASK_STATUS_FAILED}}}
	tc.op.events = []*operatorv1.WatchRunResponse{
		{Event: &operatorv1.WatchRunResponse_Snapshot{Snapshot: run}},
		{Event: &operatorv1.WatchRunResponse_Task{Task: &operatorv1.Task{Id: "a", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED}}},
		{Event: &operatorv1.WatchRunResponse_Done{Done: done}},
	}
	alice := tc.signIn(t, "alice")
	req, _ := http.NewRequest(http.MethodGet, tc.srv.URL+"/runs/live/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var events []string
	var last string
	sc := bufio.NewScanner(resp.Body)
	var cur strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			events = append(events, strings.TrimPrefix(line, "event: "))
			cur.Reset()
		case strings.HasPrefix(line, "data: "):
			cur.WriteString(strings.TrimPrefix(line, "data: "))
		case line == "" && len(events) > 0 && events[len(events)-1] == "counts":
			last = cur.String()
		}
	}
	if len(events) == 0 || events[len(events)-1] != "done" {
		t.Fatalf("events = %v, want counts then done", events)
	}
	for _, want := range []string{`id="count-succeeded">1<`, `id="count-failed">1<`, `id="count-dispatched">0<`, `id="run-state">succeeded<`} {
		if !strings.Contains(last, want) {
			t.Errorf("the last counters lack %s: %s", want, last)
		}
	}
	// A viewer may watch; the stream went through the operator service
	// as the session's operator.
	if calls := tc.op.called(); !contains(calls, "WatchRun by alice") {
		t.Fatalf("calls = %v", calls)
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// TestOverviewCountsTerminatedApart: agents whose instance AWS reports
// terminated are counted as such, not as offline, on the overview, and
// shown as terminated on their own page.
func TestOverviewCountsTerminatedApart(t *testing.T) {
	tc := newTestConsole(t)
	b := tc.signIn(t, "ada")
	tests := []struct{ path, want string }{
		{"/", "120 agents</a>: 60 connected, 48 offline, 0 isolated, 12 terminated"},
		{"/agents/agent-003", "terminated: AWS reported its instance terminated at"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, b, tc.srv.URL+tt.path)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, tt.want) {
				t.Fatalf("%s: %d, body lacks %q:\n%s", tt.path, resp.StatusCode, tt.want, body)
			}
		})
	}
}

// TestOverviewShowsOpenCasesAndTheLastDrills: the overview counts the
// open cases by severity and shows the newest recorded drill of each
// scenario, or says how to record one.
func TestOverviewShowsOpenCasesAndTheLastDrills(t *testing.T) {
	tc := newTestConsole(t)
	b := tc.signIn(t, "vic")
	ctx := context.Background()
	page := func() string {
		t.Helper()
		resp, body := get(t, b, tc.srv.URL+"/")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("overview: %d", resp.StatusCode)
		}
		return body
	}
	if body := page(); !strings.Contains(body, "No drill recorded") {
		t.Fatalf("with no drill recorded the overview does not say so:\n%s", body)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, d := range []*store.DrillResult{
		{ID: "d1", Scenario: "ec2-compromise", Playbook: "ec2-compromise", Score: 40, RecordedAt: at, RecordedBy: "operator:ada"},
		{ID: "d2", Scenario: "ec2-compromise", Playbook: "ec2-compromise", Score: 100, Contained: true, RecordedAt: at.Add(time.Hour), RecordedBy: "operator:ada"},
		{ID: "d3", Scenario: "iam-credential-compromise", Playbook: "iam-credential-compromise", Score: 90, Contained: true, SimulatedHosts: true,
			RecordedAt: at.Add(2 * time.Hour), RecordedBy: "operator:bob"},
	} {
		d.ResultJSON = []byte(`{}`)
		if err := tc.store.SaveDrillResult(ctx, d); err != nil {
			t.Fatalf("drill %d: %v", i, err)
		}
	}
	body := page()
	tests := []struct {
		name string
		want string
		not  bool
	}{
		{name: "open cases counted", want: "40 open"},
		{name: "by severity", want: "<tr><td>HIGH</td><td>40</td></tr>"},
		{name: "the newest drill of a scenario", want: "<tr><td>ec2-compromise</td><td>100/100</td><td>yes</td><td>2026-12-01 11:00 by operator:ada</td></tr>"},
		{name: "not the older one", want: "40/100", not: true},
		{name: "simulated hosts said", want: "<td>90/100 (hosts simulated)</td>"},
		{name: "no empty-state once recorded", want: "No drill recorded", not: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(body, tt.want) == tt.not {
				t.Fatalf("overview contains %q = %v, want %v:\n%s", tt.want, !tt.not, !tt.not, body)
			}
		})
	}
}
