package console_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/operator"
)

// testProvider is an OpenID Connect provider on a TLS test server: a real
// discovery document, a JWKS, an authorization endpoint that signs in
// whichever user the test sets, and a token endpoint that checks the PKCE
// verifier and returns an RS256-signed ID token.
type testProvider struct {
	srv      *httptest.Server
	key      *rsa.PrivateKey
	signWith *rsa.PrivateKey // the key tokens are signed with (key unless a test forges)
	clientID string

	mu    sync.Mutex
	user  map[string]any
	codes map[string]map[string]string
}

func newTestProvider(t *testing.T) *testProvider {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &testProvider{key: key, signWith: key, clientID: "firebreak-console", codes: map[string]map[string]string{}}
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
		if q.Get("client_id") != p.clientID || q.Get("code_challenge_method") != "S256" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := strings.Repeat("c", 8) + q.Get("state")[:8]
		p.mu.Lock()
		p.codes[code] = map[string]string{"nonce": q.Get("nonce"), "challenge": q.Get("code_challenge"), "redirect": q.Get("redirect_uri")}
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
		if id != p.clientID || secret != "s3cret" || c == nil || base64.RawURLEncoding.EncodeToString(sum[:]) != c["challenge"] {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant"}`))
			return
		}
		claims := map[string]any{"iss": p.srv.URL, "aud": p.clientID, "iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(),
			"nonce": c["nonce"]}
		for k, v := range user {
			claims[k] = v
		}
		payload, _ := json.Marshal(claims)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.signWith, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
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

func TestOIDCSignIn(t *testing.T) {
	p := newTestProvider(t)
	tc := newTestConsole(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	roles, err := console.ParseRoleMapping([]string{"ir-approvers=approver", "soc=viewer"})
	if err != nil {
		t.Fatal(err)
	}
	sso, err := console.NewOIDC(context.Background(), console.OIDCConfig{Issuer: p.srv.URL, ClientID: p.clientID, ClientSecretFile: secretFile,
		Roles: roles, HTTPClient: p.srv.Client()}, tc.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Store: tc.store, Operator: tc.op, Policy: operator.Policy, BaseURL: tc.srv.URL, OIDC: sso})
	if err != nil {
		t.Fatal(err)
	}
	tc.srv.Config.Handler = c
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)

	tests := []struct {
		name     string
		user     map[string]any
		forge    func(u *url.URL)
		signWith *rsa.PrivateKey
		wantCode int
		wantText string
		wantRole string
		wantName string
	}{
		{name: "a mapped group gets its role", user: map[string]any{"sub": "u1", "email": "ann@example.com", "groups": []string{"other", "ir-approvers"}},
			wantCode: http.StatusOK, wantText: "Signed in", wantRole: "approver", wantName: "oidc:ann@example.com"},
		{name: "a viewer group signs in a viewer", user: map[string]any{"sub": "u2", "email": "sam@example.com", "groups": []string{"soc"}},
			wantCode: http.StatusOK, wantText: "Signed in", wantRole: "viewer", wantName: "oidc:sam@example.com"},
		{name: "an unknown group gets no access", user: map[string]any{"sub": "u3", "email": "eve@example.com", "groups": []string{"marketing"}},
			wantCode: http.StatusForbidden, wantText: "in no group mapped to a Firebreak role"},
		{name: "a forged state is refused", user: map[string]any{"sub": "u1", "groups": []string{"ir-approvers"}},
			forge: func(u *url.URL) { q := u.Query(); q.Set("state", "forged"); u.RawQuery = q.Encode() }, wantCode: http.StatusBadRequest, wantText: "state does not match"},
		{name: "a token signed with another key is refused", user: map[string]any{"sub": "u1", "groups": []string{"ir-approvers"}}, signWith: otherKey,
			wantCode: http.StatusForbidden, wantText: "does not verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.mu.Lock()
			p.user, p.signWith = tt.user, p.key
			if tt.signWith != nil {
				p.signWith = tt.signWith
			}
			p.mu.Unlock()
			jar, _ := cookiejar.New(nil)
			b := &http.Client{Transport: tc.srv.Client().Transport, Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if tt.forge != nil && strings.HasSuffix(req.URL.Path, "/oidc/callback") {
					tt.forge(req.URL)
				}
				return nil
			}}
			resp, body := get(t, b, tc.srv.URL+"/oidc/start")
			if resp.StatusCode != tt.wantCode || !strings.Contains(body, tt.wantText) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tt.wantCode, tt.wantText)
			}
			resp, body = get(t, b, tc.srv.URL+"/runs/waiting")
			if tt.wantRole == "" {
				if resp.StatusCode == http.StatusOK && strings.Contains(body, `id="operator"`) {
					t.Fatalf("a refused sign-in left a session")
				}
				return
			}
			if !strings.Contains(body, `<span id="operator">`+tt.wantName+`</span> <span class="role">`+tt.wantRole+`</span>`) {
				t.Fatalf("the page does not show role %s: %s", tt.wantRole, body)
			}
			approver := strings.Contains(body, `id="approve"`)
			if approver != (tt.wantRole == "approver") {
				t.Fatalf("approve button shown = %v for a %s", approver, tt.wantRole)
			}
		})
	}
	if _, err := console.ParseRoleMapping([]string{"ops=root"}); err == nil {
		t.Fatal("an unknown role was accepted in the mapping")
	}
}
