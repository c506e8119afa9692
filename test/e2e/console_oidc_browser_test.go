package e2e_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-jose/go-jose/v4"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// oidcProvider is an in-process OpenID Connect provider on a TLS test
// server: a discovery document, a JWKS, an authorization endpoint that
// signs in whichever user the test set (standing in for the provider's
// own login form), and a token endpoint that checks the client secret and
// the PKCE verifier and returns an RS256-signed ID token with the nonce.
type oidcProvider struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	clientID string
	secret   string

	mu    sync.Mutex
	user  map[string]any
	codes map[string]map[string]string
}

func newOIDCProvider(t *testing.T) *oidcProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &oidcProvider{key: key, clientID: "firebreak-console", secret: "s3cret", codes: map[string]map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := p.srv.URL
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
			"jwks_uri": iss + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"}, "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != p.clientID || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := base64.RawURLEncoding.EncodeToString([]byte(q.Get("state") + q.Get("nonce")))[:32]
		p.mu.Lock()
		p.codes[code] = map[string]string{"nonce": q.Get("nonce"), "challenge": q.Get("code_challenge")}
		p.mu.Unlock()
		//nolint:gosec // G710: the test provider redirects to the console under test, as a provider does
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		p.mu.Lock()
		c := p.codes[r.PostFormValue("code")]
		delete(p.codes, r.PostFormValue("code"))
		user := p.user
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if id != p.clientID || secret != p.secret || c == nil || base64.RawURLEncoding.EncodeToString(sum[:]) != c["challenge"] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		claims := map[string]any{"iss": p.srv.URL, "aud": p.clientID, "iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(), "nonce": c["nonce"]}
		for k, v := range user {
			claims[k] = v
		}
		payload, _ := json.Marshal(claims)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		raw, _ := jws.CompactSerialize()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": raw})
	})
	p.srv = httptest.NewTLSServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

// signInAs sets the user the provider's next sign-in is for.
func (p *oidcProvider) signInAs(claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = claims
}

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
	p := newOIDCProvider(t)
	dir := t.TempDir()
	caFile, secretFile := filepath.Join(dir, "provider-ca.pem"), filepath.Join(dir, "oidc-secret")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(p.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Env: []string{"SSL_CERT_FILE=" + caFile},
		Args: []string{"--console-listen", "127.0.0.1:0", "--oidc-issuer", p.srv.URL, "--oidc-client-id", p.clientID,
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

	p.signInAs(map[string]any{"sub": "u-1001", "email": "rita@example.org", "groups": []string{"staff", "ir-responders"}})
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

	p.signInAs(map[string]any{"sub": "u-2002", "email": "mallory@example.org", "groups": []string{"contractors"}})
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
