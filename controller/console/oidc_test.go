package console_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/internal/oidctest"
)

func TestOIDCSignIn(t *testing.T) {
	p := oidctest.New(t)
	tc := newTestConsole(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(p.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	roles, err := console.ParseRoleMapping([]string{"ir-approvers=approver", "soc=viewer"})
	if err != nil {
		t.Fatal(err)
	}
	sso, err := console.NewOIDC(context.Background(), console.OIDCConfig{Issuer: p.URL(), ClientID: p.ClientID, ClientSecretFile: secretFile,
		Roles: roles, HTTPClient: p.Server.Client()}, tc.srv.URL)
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
			p.SignInAs(tt.user)
			p.SignWith(tt.signWith)
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
