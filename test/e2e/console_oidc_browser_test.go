package e2e_test

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firebreak-ir/firebreak/internal/oidctest"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestConsoleOIDCSignInInARealBrowser: the real controller is configured
// for single sign-on against an in-process provider (trusted through
// SSL_CERT_FILE, as a private CA would be). In the browser, the sign-in
// page's single sign-on link goes to the provider and back to the
// console's callback: a user of the ir-responders group (mapped to
// responder) is signed in as oidc:EMAIL and sees the cancel button on a
// running run; a user of an unmapped group gets a page saying why, no
// session (the overview sends them to the sign-in page), and the refusal
// is audited.
func TestConsoleOIDCSignInInARealBrowser(t *testing.T) {
	newBrowser := newChromium(t)
	p := oidctest.New(t)
	dir := t.TempDir()
	caFile, secretFile := filepath.Join(dir, "provider-ca.pem"), filepath.Join(dir, "oidc-secret")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Server.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(p.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Env: []string{"SSL_CERT_FILE=" + caFile},
		Args: []string{"--console-listen", "127.0.0.1:0", "--oidc-issuer", p.URL(), "--oidc-client-id", p.ClientID,
			"--oidc-client-secret-file", secretFile, "--oidc-role", "ir-responders=responder", "--oidc-role", "ir-readers=viewer"}})
	base := consoleAddr(t, c)

	// A run that stays running: its one agent takes the task and never answers.
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", &agentv1.AgentFacts{Hostname: "db-1", Os: "linux"})
	if _, err := f.Connect(t, &agentv1.Hello{Facts: &agentv1.AgentFacts{Hostname: "db-1", Os: "linux"}, Plugins: e2e.HonestPlugins(t, "noop")}, false); err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--reason", "sso check")
	e2e.WaitFor(t, 20*time.Second, "the task at the agent", func() bool { return len(f.Tasks()) == 1 })

	p.SignInAs(map[string]any{"sub": "u-1001", "email": "rita@example.org", "groups": []string{"staff", "ir-responders"}})
	rita := newBrowser("rita-oidc")
	rita.run("signing in through the provider", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#oidc-login")),
		chromedp.Click(chromedp.CSS("#oidc-login")), chromedp.WaitVisible(chromedp.CSS("#operator")))
	if got := rita.text("#operator"); got != "oidc:rita@example.org" {
		t.Fatalf("signed in as %q", got)
	}
	if got := rita.text(".who .role"); got != "responder" {
		t.Fatalf("the group ir-responders gave role %q", got)
	}
	rita.run("opening the running run", chromedp.Navigate(base+"/runs/"+run.RunID), chromedp.WaitVisible(chromedp.CSS("#live")))
	if n := value(rita, "looking for the cancel button", chromedp.Evaluate[int](`document.querySelectorAll('#cancel').length`)); n != 1 {
		t.Fatalf("a responder by single sign-on sees %d cancel buttons", n)
	}

	p.SignInAs(map[string]any{"sub": "u-2002", "email": "mallory@example.org", "groups": []string{"contractors"}})
	mallory := newBrowser("mallory-oidc")
	mallory.run("signing in through the provider", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#oidc-login")),
		chromedp.Click(chromedp.CSS("#oidc-login")), chromedp.WaitVisible(chromedp.CSS("#error-message")))
	if got := mallory.text("#error-message"); !strings.Contains(got, "mallory@example.org is in no group mapped to a Firebreak role") || !strings.Contains(got, "contractors") {
		t.Fatalf("the refusal says %q", got)
	}
	if n := value(mallory, "looking for a session", chromedp.Evaluate[int](`document.querySelectorAll('#operator').length`)); n != 0 {
		t.Fatal("the refused user's page shows an operator")
	}
	mallory.run("opening the overview", chromedp.Navigate(base+"/runs/"+run.RunID), poll(`location.pathname === '/login'`))
	var recs []auditRecordJSON
	c.MustJSON(t, &recs, 0, "audit", "list", "--limit", "10000")
	refused, signedIn := false, false
	for _, r := range recs {
		if reason, _ := r.Detail["reason"].(string); r.Action == "console.login.refused" && strings.Contains(reason, "mallory@example.org") {
			refused = true
		}
		if r.Action == "console.login" && r.Actor == "operator:oidc:rita@example.org" {
			signedIn = true
		}
	}
	if !refused || !signedIn {
		t.Fatalf("the audit log lacks the refusal (%v) or rita's sign-in (%v)", refused, signedIn)
	}
}
