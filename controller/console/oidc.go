package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// oidcCookie holds the state, nonce and PKCE verifier of one sign-in
// between /oidc/start and the provider's redirect back. It is SameSite=Lax,
// since the redirect back is a navigation from the provider's site.
const oidcCookie = "__Host-firebreak-oidc"

// OIDCConfig configures single sign-on.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (--oidc-issuer); its discovery
	// document is read at start.
	Issuer string
	// ClientID is the console's client id at the provider (--oidc-client-id).
	ClientID string
	// ClientSecretFile holds the client secret (--oidc-client-secret-file).
	ClientSecretFile string
	// GroupsClaim is the ID token claim listing the user's groups
	// (default "groups").
	GroupsClaim string
	// Roles maps a group onto a Firebreak role (--oidc-role GROUP=ROLE). A
	// user gets the highest role of their groups; a user in no mapped
	// group is refused.
	Roles map[string]operatorv1.OperatorRole
	// HTTPClient, when set, reaches the provider (tests trust their
	// provider's certificate with it).
	HTTPClient *http.Client
}

// OIDC is a configured single sign-on provider.
type OIDC struct {
	cfg      OIDCConfig
	verifier *oidc.IDTokenVerifier
	oauth    oauth2.Config
}

// NewOIDC reads the provider's discovery document and the client secret.
// baseURL is the console's https://HOST:PORT; the provider redirects back
// to baseURL/oidc/callback, which must be registered with it.
func NewOIDC(ctx context.Context, cfg OIDCConfig, baseURL string) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.ClientSecretFile == "" {
		return nil, errors.New("console: single sign-on needs --oidc-issuer, --oidc-client-id and --oidc-client-secret-file")
	}
	if len(cfg.Roles) == 0 {
		return nil, errors.New("console: single sign-on needs at least one --oidc-role GROUP=ROLE: with no group mapped, nobody could sign in")
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	b, err := os.ReadFile(cfg.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("console: reading --oidc-client-secret-file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return nil, fmt.Errorf("console: --oidc-client-secret-file %s is empty", cfg.ClientSecretFile)
	}
	if cfg.HTTPClient != nil {
		ctx = oidc.ClientContext(ctx, cfg.HTTPClient)
	}
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console: reading the OIDC discovery document of %s: %w", cfg.Issuer, err)
	}
	return &OIDC{cfg: cfg, verifier: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID}),
		oauth: oauth2.Config{ClientID: cfg.ClientID, ClientSecret: secret, Endpoint: provider.Endpoint(),
			RedirectURL: strings.TrimSuffix(baseURL, "/") + "/oidc/callback", Scopes: []string{oidc.ScopeOpenID, "email", "profile", "groups"}}}, nil
}

// ParseRoleMapping parses --oidc-role values, GROUP=ROLE each.
func ParseRoleMapping(values []string) (map[string]operatorv1.OperatorRole, error) {
	out := map[string]operatorv1.OperatorRole{}
	for _, v := range values {
		group, role, ok := strings.Cut(v, "=")
		r, rok := auth.ParseRole(role)
		if !ok || group == "" || !rok {
			return nil, fmt.Errorf("--oidc-role %q: want GROUP=ROLE, ROLE one of viewer, responder, approver, admin", v)
		}
		out[group] = r
	}
	return out, nil
}

// role is the highest role any of groups maps to, 0 for none.
func (o *OIDC) role(groups []string) operatorv1.OperatorRole {
	var best operatorv1.OperatorRole
	for _, g := range groups {
		if r := o.cfg.Roles[g]; r > best {
			best = r
		}
	}
	return best
}

func (c *Console) ctxOIDC(ctx context.Context) context.Context {
	if c.cfg.OIDC.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, c.cfg.OIDC.cfg.HTTPClient)
	}
	return ctx
}

// oidcStart sends the browser to the provider with a fresh state, nonce
// and PKCE challenge.
func (c *Console) oidcStart(w http.ResponseWriter, r *http.Request) {
	if c.cfg.OIDC == nil {
		c.renderError(w, r, http.StatusNotFound, "single sign-on is not configured on this controller: use `firebreak console login`")
		return
	}
	state, _, err1 := newSecret()
	nonce, _, err2 := newSecret()
	if err := errors.Join(err1, err2); err != nil {
		c.renderError(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	verifier := oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: state + "." + nonce + "." + verifier, Path: "/", MaxAge: 600,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, c.cfg.OIDC.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback finishes a sign-in: it checks the state, exchanges the
// code, verifies the ID token (signature, issuer, audience, expiry, nonce)
// and maps the user's groups onto a role.
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	o := c.cfg.OIDC
	if o == nil {
		c.renderError(w, r, http.StatusNotFound, "single sign-on is not configured on this controller")
		return
	}
	ctx := r.Context()
	refuse := func(code int, reason string) {
		c.cfg.Audit(ctx, "console", "console.login.refused", "oidc", map[string]string{"reason": reason, "remote": r.RemoteAddr})
		c.renderError(w, r, code, reason)
	}
	ck, err := r.Cookie(oidcCookie)
	parts := []string{}
	if err == nil {
		parts = strings.Split(ck.Value, ".")
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
	// Security-critical: the state binds the provider's answer to a
	// sign-in this browser started; anything else is a forged callback.
	if len(parts) != 3 || subtle.ConstantTimeCompare([]byte(parts[0]), []byte(r.URL.Query().Get("state"))) != 1 {
		refuse(http.StatusBadRequest, "the sign-in's state does not match this browser's: start again from the sign-in page")
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		refuse(http.StatusForbidden, "the identity provider refused the sign-in: "+e+" "+r.URL.Query().Get("error_description"))
		return
	}
	tok, err := o.oauth.Exchange(c.ctxOIDC(ctx), r.URL.Query().Get("code"), oauth2.VerifierOption(parts[2]))
	if err != nil {
		refuse(http.StatusBadGateway, "exchanging the authorization code with the identity provider: "+err.Error())
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		refuse(http.StatusBadGateway, "the identity provider returned no ID token")
		return
	}
	// Security-critical: signature, issuer, audience and expiry.
	idt, err := o.verifier.Verify(c.ctxOIDC(ctx), raw)
	if err != nil {
		refuse(http.StatusForbidden, "the ID token does not verify: "+err.Error())
		return
	}
	// Security-critical: the nonce ties the token to this sign-in, so a
	// token replayed from another sign-in is refused.
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(parts[1])) != 1 {
		refuse(http.StatusForbidden, "the ID token's nonce does not match this sign-in")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		refuse(http.StatusForbidden, "reading the ID token's claims: "+err.Error())
		return
	}
	groups := stringsClaim(claims[o.cfg.GroupsClaim])
	name := idt.Subject
	if email, _ := claims["email"].(string); email != "" {
		name = email
	}
	role := o.role(groups)
	// Security-critical: a user in no mapped group gets no access at all.
	if role == operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED {
		sort.Strings(groups)
		refuse(http.StatusForbidden, fmt.Sprintf("%s is in no group mapped to a Firebreak role (groups: %s): ask an admin to map one with --oidc-role", name, strings.Join(groups, ", ")))
		return
	}
	opName := "oidc:" + name
	if err := c.startSession(w, r, &store.ConsoleSession{Operator: opName, Role: int32(role), Source: sourceOIDC}); err != nil {
		c.renderError(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	c.cfg.Audit(ctx, "operator:"+opName, "console.login", opName, map[string]any{"source": sourceOIDC, "role": auth.RoleName(role),
		"groups": groups, "remote": r.RemoteAddr, "token_expiry": idt.Expiry.UTC().Format(time.RFC3339)})
	c.signedInPage(w, r)
}

// stringsClaim reads a claim that is a list of strings (or one string).
func stringsClaim(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
