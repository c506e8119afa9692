// Package console is the controller's web console: server-rendered HTML
// pages with htmx, live parts over Server-Sent Events, all embedded in the
// binary. It signs operators in with a one-time link made from their
// credential (ConsoleService.CreateConsoleLogin) or with OIDC single
// sign-on, keeps sessions in the store so any controller serves any
// request, and acts only through the operator services, after the same
// role check as the gRPC API (auth.CheckRole): it has no bypass.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Config.
const (
	DefaultLinkTTL         = 60 * time.Second
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	// DefaultPageSize is how many rows a list page shows.
	DefaultPageSize = 50
)

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the console's dependencies.
type Config struct {
	// Store keeps the login links and sessions, and the operators.
	Store store.Store
	// Operator is the operator service every run and agent page calls.
	Operator operatorv1.OperatorServiceServer
	// Evidence is the evidence service the evidence pages call; without
	// it they say the controller serves no evidence store.
	Evidence operatorv1.EvidenceServiceServer
	// Cases and Playbooks are the case and playbook services the case
	// and playbook pages call; without them those pages say so.
	Cases     operatorv1.CaseServiceServer
	Playbooks operatorv1.PlaybookServiceServer
	// CaseChanges, when set, tells a case page's live stream at once when
	// the case changes through this controller, and the stream reads the
	// case then, and every CaseFallbackEvery for what another controller
	// of a cluster wrote. Without it the stream reads the case every
	// second.
	CaseChanges CaseChanges
	// CaseFallbackEvery is how often a live case stream with CaseChanges
	// reads the case though no change was told (default 10s).
	CaseFallbackEvery time.Duration
	// Policy is the operator API's method → role map; every console action
	// is checked against it before the service is called.
	Policy map[string]operatorv1.OperatorRole
	// BaseURL is where browsers reach the console, https://HOST:PORT (the
	// login links name it).
	BaseURL string
	// OIDC, when set, signs operators in through an OpenID Connect
	// provider.
	OIDC *OIDC
	// LinkTTL is how long a login link stays valid (default 60s).
	LinkTTL time.Duration
	// IdleTimeout ends a session unused this long (default 30m).
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after sign-in, however
	// busy (default 12h).
	AbsoluteTimeout time.Duration
	// PageSize is the rows of a list page (default DefaultPageSize).
	PageSize int
	// Audit records sign-ins, sign-outs and refusals.
	Audit  AuditFunc
	Logger *slog.Logger
	Clock  func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "Operator": c.Operator != nil, "Policy": c.Policy != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("console: missing %s", strings.Join(missing, ", "))
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("console: the base URL %q must be https://HOST[:PORT]: the session cookie is Secure, so the console is served over HTTPS only", c.BaseURL)
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	if c.LinkTTL == 0 {
		c.LinkTTL = DefaultLinkTTL
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if c.CaseFallbackEvery == 0 {
		c.CaseFallbackEvery = DefaultCaseFallbackEvery
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Console serves the web console; it is an http.Handler.
type Console struct {
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New builds the console.
func New(cfg Config) (*Console, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// parseTemplates parses each page with the layout. html/template escapes
// every value for its context (element text, attribute, URL), so findings,
// outputs and notes, which are hostile input, render as text.
func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return fmt.Errorf("console: parsing %s: %w", n, err)
		}
		c.pages[base] = t
	}
	return nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	m.HandleFunc("GET /login", c.loginPage)
	m.HandleFunc("GET /login/{secret}", c.linkLogin)
	m.HandleFunc("GET /oidc/start", c.oidcStart)
	m.HandleFunc("GET /oidc/callback", c.oidcCallback)
	m.Handle("POST /logout", c.signedIn(c.logout))
	m.Handle("GET /{$}", c.signedIn(c.overview))
	m.Handle("GET /runs", c.signedIn(c.runList))
	m.Handle("GET /runs/{id}", c.signedIn(c.runPage))
	m.Handle("GET /runs/{id}/targets", c.signedIn(c.runTargets))
	m.Handle("GET /runs/{id}/events", c.signedIn(c.runEvents))
	m.Handle("POST /runs/{id}/approve", c.signedIn(c.approveRun))
	m.Handle("POST /runs/{id}/reject", c.signedIn(c.rejectRun))
	m.Handle("POST /runs/{id}/cancel", c.signedIn(c.cancelRun))
	m.Handle("GET /approvals", c.signedIn(c.approvals))
	m.Handle("GET /agents", c.signedIn(c.agentList))
	m.Handle("GET /cases", c.signedIn(c.caseList))
	m.Handle("GET /cases/{id}", c.signedIn(c.casePage))
	m.Handle("GET /cases/{id}/events", c.signedIn(c.caseEvents))
	m.Handle("GET /cases/{id}/report", c.signedIn(c.caseReport))
	m.Handle("POST /cases/{id}/notes", c.signedIn(c.addNote))
	m.Handle("GET /playbooks", c.signedIn(c.playbookList))
	m.Handle("GET /playbooks/{name}", c.signedIn(c.playbookPage))
	m.Handle("POST /playbooks/{name}/start", c.signedIn(c.startPlaybook))
	m.Handle("GET /audit", c.signedIn(c.auditLog))
	m.Handle("POST /audit/verify", c.signedIn(c.verifyAudit))
	m.Handle("GET /evidence", c.signedIn(c.evidenceList))
	m.Handle("GET /evidence/{id}", c.signedIn(c.evidencePage))
	m.Handle("POST /evidence/{id}/verify", c.signedIn(c.verifyEvidence))
	m.Handle("POST /evidence/{id}/download", c.signedIn(c.downloadEvidence))
	m.Handle("GET /agents/{id}", c.signedIn(c.agentPage))
	m.Handle("POST /agents/{id}/isolate", c.signedIn(c.isolateAgent))
	m.Handle("POST /agents/{id}/unisolate", c.signedIn(c.unisolateAgent))
	m.Handle("POST /agents/{id}/revoke", c.signedIn(c.revokeAgent))
	c.mux = m
}

// CSP is the console's Content-Security-Policy: scripts, styles, images
// and connections from the console's own origin only, no inline script or
// style, no framing, and forms that post only to the console.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler: every response carries the security
// headers, whatever handler writes it.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Security-critical: a login link's secret is in its path; no
	// Referer may carry a console URL anywhere.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// staticHandler serves the embedded stylesheet and scripts.
func staticHandler(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// errNoConsole is returned by CreateConsoleLogin when no console is served.
var errNoConsole = errors.New("this controller serves no console: start it with --console-listen HOST:PORT")
