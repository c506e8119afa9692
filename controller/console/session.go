package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// SessionCookie is the session cookie's name. The __Host- prefix makes the
// browser refuse it unless it is Secure, for path / and without a domain,
// so no sibling host can set or overwrite it.
const SessionCookie = "__Host-firebreak-session"

// Session sources.
const (
	sourceLink = "link"
	sourceOIDC = "oidc"
)

// LoginService implements operatorv1.ConsoleServiceServer: it turns the
// calling operator's credential into a one-time login link. Without a
// console (nil Console) it refuses with FAILED_PRECONDITION.
type LoginService struct {
	operatorv1.UnimplementedConsoleServiceServer
	// Console is the served console, nil when none is.
	Console *Console
}

// Policy is who may call the console service's methods.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.ConsoleService_CreateConsoleLogin_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
}

// CreateConsoleLogin implements operatorv1.ConsoleServiceServer.
func (s *LoginService) CreateConsoleLogin(ctx context.Context, _ *operatorv1.CreateConsoleLoginRequest) (*operatorv1.CreateConsoleLoginResponse, error) {
	if s.Console == nil {
		return nil, status.Error(codes.FailedPrecondition, errNoConsole.Error())
	}
	op, ok := auth.OperatorFrom(ctx)
	id, idOK := auth.IdentityFrom(ctx)
	// Security-critical: a link is bound to the credential that asked for
	// it; without a verified operator certificate there is none to bind.
	if !ok || !idOK || id.Kind != pki.KindOperator || id.Name != op.Name {
		return nil, status.Error(codes.PermissionDenied, "a console login link needs an operator credential")
	}
	return s.Console.createLink(ctx, op.Name, id.Serial)
}

// createLink stores a login link for operator's credential serial.
func (c *Console) createLink(ctx context.Context, operator, serial string) (*operatorv1.CreateConsoleLoginResponse, error) {
	secret, hash, err := newSecret()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "making a login link: %v", err)
	}
	now := c.cfg.Clock()
	l := &store.ConsoleLink{Hash: hash, Operator: operator, CertSerial: serial, CreatedAt: now, ExpiresAt: now.Add(c.cfg.LinkTTL)}
	if err := c.cfg.Store.CreateConsoleLink(ctx, l); err != nil {
		return nil, status.Errorf(codes.Unavailable, "storing the login link: %v", err)
	}
	c.cfg.Audit(ctx, "operator:"+operator, "console.link", hash[:16], map[string]string{"expires_at": l.ExpiresAt.UTC().Format(time.RFC3339)})
	return &operatorv1.CreateConsoleLoginResponse{Url: c.cfg.BaseURL + "/login/" + secret, ExpiresAt: timestamppb.New(l.ExpiresAt), Operator: operator}, nil
}

// newSecret returns 32 random bytes, base64url, and the hex SHA-256 of
// that text, which is all the store keeps.
func newSecret() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, hashSecret(secret), nil
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// viewer is who a request acts as.
type viewer struct {
	op      *store.Operator
	session *store.ConsoleSession
}

type viewerKey struct{}

func viewerFrom(ctx context.Context) *viewer {
	v, _ := ctx.Value(viewerKey{}).(*viewer)
	return v
}

// linkLogin signs in with a one-time link: it consumes the link, checks
// the credential it was made from, and starts a session.
func (c *Console) linkLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := c.cfg.Clock()
	l, err := c.cfg.Store.ConsumeConsoleLink(ctx, hashSecret(r.PathValue("secret")), now)
	switch {
	// Security-critical: a link signs in once, within its TTL.
	case errors.Is(err, store.ErrConsoleLinkUnknown), errors.Is(err, store.ErrConsoleLinkUsed), errors.Is(err, store.ErrConsoleLinkExpired):
		c.cfg.Audit(ctx, "console", "console.login.refused", "", map[string]string{"reason": err.Error(), "remote": r.RemoteAddr})
		c.renderError(w, r, http.StatusForbidden, err.Error())
		return
	case err != nil:
		c.renderError(w, r, http.StatusServiceUnavailable, "reading the login link: "+err.Error())
		return
	}
	// Security-critical: the link is worth no more than the credential
	// that asked for it; a revoked or replaced one signs nobody in.
	op, err := auth.OperatorForCredential(ctx, c.cfg.Store, l.Operator, l.CertSerial)
	if err != nil {
		c.renderError(w, r, http.StatusForbidden, status.Convert(err).Message())
		return
	}
	if err := c.startSession(w, r, &store.ConsoleSession{Operator: op.Name, CertSerial: l.CertSerial, Role: int32(op.Role), Source: sourceLink}); err != nil {
		c.renderError(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	c.cfg.Audit(ctx, "operator:"+op.Name, "console.login", op.Name, map[string]string{"source": sourceLink, "remote": r.RemoteAddr})
	c.signedInPage(w, r)
}

// startSession stores a new session and sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, cs *store.ConsoleSession) error {
	secret, hash, err := newSecret()
	if err != nil {
		return err
	}
	csrf, _, err := newSecret()
	if err != nil {
		return err
	}
	now := c.cfg.Clock()
	cs.Hash, cs.CSRF, cs.CreatedAt, cs.LastSeen, cs.ExpiresAt = hash, csrf, now, now, now.Add(c.cfg.AbsoluteTimeout)
	if err := c.cfg.Store.CreateConsoleSession(r.Context(), cs); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", Expires: cs.ExpiresAt,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return nil
}

// signedInPage ends a sign-in with a page that moves on to the overview.
// A redirect would not do: the browser treats the redirected request as
// part of the cross-site navigation that opened the link and withholds
// the SameSite=Strict cookie, while a navigation from this page is
// same-site.
func (c *Console) signedInPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signedin", nil)
}

// signedIn wraps a handler that needs a session: it reads the session,
// re-checks the operator behind it, and for every state-changing request
// checks the CSRF token.
func (c *Console) signedIn(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		v, err := c.session(ctx, r)
		if err != nil {
			if r.Method == http.MethodGet && r.Header.Get("HX-Request") == "" && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			c.renderError(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			token := r.Header.Get("X-CSRF-Token")
			if token == "" {
				token = r.PostFormValue("csrf")
			}
			// Security-critical: a state-changing request must carry the
			// session's CSRF token; a page of another origin cannot read it.
			if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(v.session.CSRF)) != 1 {
				c.cfg.Audit(ctx, "operator:"+v.op.Name, "console.csrf.refused", r.URL.Path, map[string]string{"remote": r.RemoteAddr})
				c.renderError(w, r, http.StatusForbidden, "the request carries no valid CSRF token: reload the page and try again")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(ctx, viewerKey{}, v)))
	})
}

// errSignedOut is the reason given for a request without a live session.
var errSignedOut = errors.New("not signed in, or the session has ended: sign in again")

// session returns the request's live session and its operator.
func (c *Console) session(ctx context.Context, r *http.Request) (*viewer, error) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil || ck.Value == "" {
		return nil, errSignedOut
	}
	cs, err := c.cfg.Store.TouchConsoleSession(ctx, hashSecret(ck.Value), c.cfg.Clock(), c.cfg.IdleTimeout)
	if errors.Is(err, store.ErrConsoleSessionEnded) {
		return nil, errSignedOut
	}
	if err != nil {
		return nil, err
	}
	switch cs.Source {
	case sourceLink:
		// Security-critical: the operator is looked up at every request,
		// so a revoked or replaced credential or a changed role takes
		// effect at once, as it does on the gRPC API.
		op, err := auth.OperatorForCredential(ctx, c.cfg.Store, cs.Operator, cs.CertSerial)
		if err != nil {
			_ = c.cfg.Store.EndConsoleSession(ctx, cs.Hash, c.cfg.Clock())
			return nil, errors.New(status.Convert(err).Message())
		}
		return &viewer{op: op, session: cs}, nil
	case sourceOIDC:
		return &viewer{op: &store.Operator{Name: cs.Operator, Role: operatorv1.OperatorRole(cs.Role)}, session: cs}, nil
	}
	// Security-critical: a session of an unknown kind grants nothing.
	return nil, errSignedOut
}

// logout ends the session on the server and clears the cookie.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	v := viewerFrom(r.Context())
	if err := c.cfg.Store.EndConsoleSession(r.Context(), v.session.Hash, c.cfg.Clock()); err != nil {
		c.renderError(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.cfg.Audit(r.Context(), "operator:"+v.op.Name, "console.logout", v.op.Name, nil)
	http.Redirect(w, r, "/login?signed_out=1", http.StatusSeeOther)
}

// loginPage says how to sign in.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", map[string]any{"OIDC": c.cfg.OIDC != nil, "SignedOut": r.URL.Query().Get("signed_out") != ""})
}

// authorize checks the viewer may call method, with the operator API's
// own role check, and returns the context the service is called with.
func (c *Console) authorize(r *http.Request, method string) (context.Context, error) {
	v := viewerFrom(r.Context())
	if err := auth.CheckRole(c.cfg.Policy, v.op, method); err != nil {
		c.cfg.Audit(r.Context(), "operator:"+v.op.Name, "console.denied", r.URL.Path, map[string]string{"method": method, "reason": status.Convert(err).Message()})
		return nil, err
	}
	return auth.WithOperator(r.Context(), v.op), nil
}

// can reports whether the viewer may call method (to show or hide a
// button; the call itself is checked again).
func (c *Console) can(r *http.Request, method string) bool {
	v := viewerFrom(r.Context())
	return v != nil && auth.CheckRole(c.cfg.Policy, v.op, method) == nil
}

// LoginLink makes a one-time login link for the stored operator name,
// bound to its current credential, as CreateConsoleLogin does for a
// caller holding that credential. It is for code that holds the
// controller itself (the lab prints one after its drill); no RPC reaches
// it.
func (c *Console) LoginLink(ctx context.Context, name string) (*operatorv1.CreateConsoleLoginResponse, error) {
	op, err := c.cfg.Store.GetOperator(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("console: operator %q: %w", name, err)
	}
	// Security-critical: a revoked operator gets no link.
	if op.Revoked {
		return nil, fmt.Errorf("console: operator %q is revoked", name)
	}
	return c.createLink(ctx, op.Name, op.CertSerial)
}
