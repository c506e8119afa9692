package e2e_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// closeWait is how long a test waits for the controller to close a stream
// it has revoked; the controller acts at revoke time, so this is only a
// bound for a loaded machine, not a measurement.
const closeWait = 10 * time.Second

type auditJSON struct {
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Subject string          `json:"subject"`
	Detail  json.RawMessage `json:"detail"`
}

// audited reports whether the audit log holds action on subject.
func audited(t *testing.T, c *e2e.Controller, action, subject string) bool {
	t.Helper()
	var recs []auditJSON
	c.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
	for _, r := range recs {
		if r.Action == action && r.Subject == subject {
			return true
		}
	}
	return false
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%s: got %v, want PermissionDenied", what, err)
	}
}

// TestSupersededAgentCertificateIsRefused: once an agent renews, its old
// certificate can neither renew nor connect, and a stream opened with a
// key whose certificate someone else renewed is closed.
func TestSupersededAgentCertificateIsRefused(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	hello := &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "renewer", Os: "linux"}}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", hello.GetFacts())
	old, err := f.Renew(t)
	if err != nil {
		t.Fatalf("renewing with the current certificate: %v", err)
	}
	thief := f.WithCert(old)
	_, err = thief.Renew(t)
	wantDenied(t, "renewing with the superseded certificate", err)
	_, err = thief.Connect(t, hello, false)
	wantDenied(t, "connecting with the superseded certificate", err)
	if !audited(t, c, "agent.refused", f.ID) {
		t.Fatal("no agent.refused audit record for the superseded certificate")
	}
	// The current certificate still works, and renews again.
	live, err := f.Connect(t, hello, false)
	if err != nil {
		t.Fatalf("connecting with the current certificate: %v", err)
	}
	// Someone holding the key and the current certificate renews it on
	// another connection: the stream on the superseded one is closed.
	stolen := f.WithCert(f.Cert)
	if _, err := stolen.Renew(t); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, "the stream after another connection renewed", live.Closed(closeWait))
	_, err = f.Connect(t, hello, false)
	wantDenied(t, "reconnecting with the certificate another connection superseded", err)
}

// TestHelloCannotClaimAnotherIdentity: an agent whose certificate holds
// i-bbbb2222 says it is i-aaaa1111; the claim is ignored and audited, and
// selecting i-aaaa1111 reaches only the real holder.
func TestHelloCannotClaimAnotherIdentity(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	tok := c.Token(t, "host", 2)
	realFacts := &agentv1.AgentFacts{Hostname: "real-1", Os: "linux", InstanceId: "i-aaaa1111", Account: "111111111111", Region: "eu-west-1"}
	liarFacts := &agentv1.AgentFacts{Hostname: "liar-1", Os: "linux", InstanceId: "i-bbbb2222", Account: "222222222222", Region: "eu-west-1"}
	real := c.EnrollFake(t, tok, "host", realFacts)
	liar := c.EnrollFake(t, tok, "host", liarFacts)
	if _, err := real.Connect(t, &agentv1.Hello{Facts: realFacts, Plugins: e2e.HonestPlugins(t, "noop")}, true); err != nil {
		t.Fatal(err)
	}
	claim := &agentv1.AgentFacts{Hostname: "real-1", Os: "linux", InstanceId: "i-aaaa1111", Account: "111111111111", Region: "eu-west-1"}
	if _, err := liar.Connect(t, &agentv1.Hello{Facts: claim, Plugins: e2e.HonestPlugins(t, "noop")}, true); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, real.ID, liar.ID)
	if !audited(t, c, "agent.identity_mismatch", liar.ID) {
		t.Fatal("no agent.identity_mismatch audit record for the false claim")
	}
	var listed []struct {
		ID         string `json:"id"`
		InstanceID string `json:"instance_id"`
		Account    string `json:"account"`
		Source     string `json:"identity_source"`
		Reported   struct {
			Hostname string `json:"hostname"`
		} `json:"reported"`
	}
	c.MustJSON(t, &listed, 0, "agents", "list", "--select", "instance_id=i-aaaa1111")
	if len(listed) != 1 || listed[0].ID != real.ID {
		t.Fatalf("--select instance_id=i-aaaa1111 listed %+v, want only %s", listed, real.ID)
	}
	c.MustJSON(t, &listed, 0, "agents", "list", "--select", "id="+liar.ID)
	if len(listed) != 1 || listed[0].InstanceID != "i-bbbb2222" || listed[0].Account != "222222222222" || listed[0].Source != "certificate" ||
		listed[0].Reported.Hostname != "real-1" {
		t.Fatalf("the liar is listed as %+v, want its certificate's identity and its claimed hostname marked as reported", listed)
	}
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "instance_id=i-aaaa1111", "--wait")
	if run.Targets != 1 || run.Succeeded != 1 {
		t.Fatalf("run %+v, want one target", run)
	}
	if n := len(liar.Tasks()); n != 0 {
		t.Fatalf("the agent claiming i-aaaa1111 was sent %d task(s)", n)
	}
	if n := len(real.Tasks()); n != 1 {
		t.Fatalf("the real i-aaaa1111 was sent %d task(s), want 1", n)
	}
}

// TestRevokeAgent: a revoked agent's live stream closes at once, its
// certificate is refused for renewal and Connect, and runs do not reach it.
func TestRevokeAgent(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	hello := &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "victim", Os: "linux"}}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", hello.GetFacts())
	live, err := f.Connect(t, hello, true)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var out []struct {
		ID           string `json:"id"`
		StreamClosed bool   `json:"stream_closed"`
	}
	c.MustJSON(t, &out, 0, "agents", "revoke", f.ID, "--reason", "host compromised")
	if len(out) != 1 || out[0].ID != f.ID || !out[0].StreamClosed {
		t.Fatalf("agents revoke: %+v", out)
	}
	wantDenied(t, "the revoked agent's live stream", live.Closed(closeWait))
	_, err = f.Renew(t)
	wantDenied(t, "renewal by a revoked agent", err)
	_, err = f.Connect(t, hello, true)
	wantDenied(t, "Connect by a revoked agent", err)
	if !audited(t, c, "agent.revoke", f.ID) {
		t.Fatal("no agent.revoke audit record")
	}
	r := c.CLI(t, "run", "noop", "--select", "id="+f.ID, "--wait", "--json")
	if r.Exit != 1 || !contains(r.Stderr, "revoked") {
		t.Fatalf("a run at a revoked agent: exit %d, stderr %q; want exit 1 naming it revoked", r.Exit, r.Stderr)
	}
	if n := len(f.Tasks()); n != 0 {
		t.Fatalf("the revoked agent was sent %d task(s)", n)
	}
	if r := c.CLI(t, "agents", "revoke", "agt_nosuch", "--json"); r.Exit != 1 {
		t.Fatalf("revoking an unknown agent: exit %d, want 1", r.Exit)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestRevokeAndRotateOperator: revoking an operator stops its calls and
// closes its open WatchRun stream at once; rotating issues a new
// credential and denies the old one the same way.
func TestRevokeAndRotateOperator(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	dir := t.TempDir()
	bob := filepath.Join(dir, "bob.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "-o", bob)
	var who struct {
		Role string `json:"role"`
	}
	if r := c.CLIAs(t, bob, "whoami", "--json"); r.Exit != 0 || json.Unmarshal([]byte(r.Stdout), &who) != nil || who.Role != "viewer" {
		t.Fatalf("operator add without --role: %q exit %d, want a viewer", r.Stdout, r.Exit)
	}
	// A run that stays open: the fake agent never answers.
	hello := &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "silent", Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", hello.GetFacts())
	if _, err := f.Connect(t, hello, false); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID)
	watch := func(creds string) <-chan error {
		conn := c.OperatorConn(t, creds)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		st, err := operatorv1.NewOperatorServiceClient(conn).WatchRun(ctx, &operatorv1.WatchRunRequest{RunId: run.RunID})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("the first watch event: %v", err)
		}
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := st.Recv(); err != nil {
					done <- err
					return
				}
			}
		}()
		return done
	}
	ended := func(ch <-chan error) error {
		select {
		case err := <-ch:
			return err
		case <-time.After(closeWait):
			return nil
		}
	}

	// Rotation: the old credential's stream closes, the old credential is
	// refused, the new one works.
	oldWatch := watch(bob)
	rotated := filepath.Join(dir, "bob2.creds")
	var rot struct {
		Closed int `json:"closed_streams"`
	}
	c.MustJSON(t, &rot, 0, "operator", "rotate", "bob", "--out", rotated)
	if rot.Closed != 1 {
		t.Fatalf("operator rotate closed %d streams, want 1", rot.Closed)
	}
	wantDenied(t, "the old credential's WatchRun after rotation", ended(oldWatch))
	if r := c.CLIAs(t, bob, "whoami"); r.Exit != 1 {
		t.Fatalf("the rotated-out credential still works: exit %d", r.Exit)
	}
	if r := c.CLIAs(t, rotated, "whoami"); r.Exit != 0 {
		t.Fatalf("the new credential does not work: %s", r.Stderr)
	}

	// Revocation: the live stream closes and every call is refused.
	newWatch := watch(rotated)
	c.MustJSON(t, nil, 0, "operator", "revoke", "bob")
	wantDenied(t, "the revoked operator's WatchRun", ended(newWatch))
	if r := c.CLIAs(t, rotated, "whoami"); r.Exit != 1 {
		t.Fatalf("the revoked credential still works: exit %d", r.Exit)
	}
	for _, action := range []string{"operator.rotate", "operator.revoke"} {
		if !audited(t, c, action, "bob") {
			t.Fatalf("no %s audit record", action)
		}
	}
	if r := c.CLI(t, "operator", "revoke", "nosuch", "--json"); r.Exit != 1 {
		t.Fatalf("revoking an unknown operator: exit %d, want 1", r.Exit)
	}
}

// TestRevokeJoinToken: a revoked token enrolls nothing, token list shows
// it revoked, and never shows a secret.
func TestRevokeJoinToken(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	tok := c.Token(t, "host", 5, "--label", "team=web")
	var tokens []struct {
		ID       string            `json:"id"`
		Role     string            `json:"role"`
		UsesLeft int               `json:"uses_left"`
		Labels   map[string]string `json:"labels"`
		Revoked  bool              `json:"revoked"`
	}
	r := c.MustJSON(t, &tokens, 0, "token", "list")
	if len(tokens) != 1 || tokens[0].Role != "host" || tokens[0].UsesLeft != 5 || tokens[0].Labels["team"] != "web" {
		t.Fatalf("token list: %+v", tokens)
	}
	if contains(r.Stdout, tok) {
		t.Fatal("token list shows the secret")
	}
	c.MustJSON(t, nil, 0, "token", "revoke", tokens[0].ID)
	_, err := c.TryEnrollFake(tok, "host", &agentv1.AgentFacts{Hostname: "late", Os: "linux"})
	if status.Code(err) != codes.Unauthenticated || !contains(err.Error(), "revoked") {
		t.Fatalf("enrolling with a revoked token: %v", err)
	}
	c.MustJSON(t, &tokens, 0, "token", "list")
	if len(tokens) != 1 || !tokens[0].Revoked {
		t.Fatalf("token list after revoke: %+v", tokens)
	}
	if !audited(t, c, "token.revoke", tokens[0].ID) {
		t.Fatal("no token.revoke audit record")
	}
	if r := c.CLI(t, "token", "revoke", "0000000000000000", "--json"); r.Exit != 1 {
		t.Fatalf("revoking an unknown token: exit %d, want 1", r.Exit)
	}
}

// TestRealAgentKeepsWorkingAcrossRenewals: the real agent renews over its
// existing connection and goes on using it, twice (the second renewal
// presents the superseded certificate on the connection that renewed it),
// and still takes tasks. A certificate of 5m30s, backdated 5 minutes,
// reaches half its life 15 seconds after issue.
func TestRealAgentKeepsWorkingAcrossRenewals(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--agent-cert-ttl", "5m30s"}})
	a := c.StartAgent(t, e2e.AgentOptions{Name: "renewing", Token: c.Token(t, "host", 1)})
	id := a.AgentID(t)
	c.WaitConnected(t, id)
	renewals := func() int {
		var recs []auditJSON
		c.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
		n := 0
		for _, r := range recs {
			if r.Action == "agent.renew" && r.Subject == id {
				n++
			}
		}
		return n
	}
	e2e.WaitFor(t, 2*time.Minute, "two renewals of the real agent", func() bool { return renewals() >= 2 })
	if audited(t, c, "agent.refused", id) {
		t.Fatal("the real agent's own renewal was refused")
	}
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+id, "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("run after renewals: %+v", run)
	}
}
