package fleet_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// nopDispatcher hears nothing: these tests stop before any stream.
type nopDispatcher struct{}

func (nopDispatcher) AgentConnected(string)                  {}
func (nopDispatcher) AgentDisconnected(string)               {}
func (nopDispatcher) TaskEvent(string, *agentv1.TaskEvent)   {}
func (nopDispatcher) TaskResult(string, *agentv1.TaskResult) {}

// fleetUnderTest is a fleet service on its own store, CA and clock.
type fleetUnderTest struct {
	svc   *fleet.Service
	store store.Store
	ca    *pki.CA
	// signer is the task-signing key the service was built with.
	signer *tasksign.Signer
	now    time.Time
	addrs  atomic.Int32

	auditMu sync.Mutex
	audits  []string // "action subject"
}

// audit records what the service audits.
func (f *fleetUnderTest) audit(_ context.Context, _, action, subject string, _ any) {
	f.auditMu.Lock()
	f.audits = append(f.audits, action+" "+subject)
	f.auditMu.Unlock()
}

// audited reports whether the service audited action on subject.
func (f *fleetUnderTest) audited(action, subject string) bool {
	f.auditMu.Lock()
	defer f.auditMu.Unlock()
	return slices.Contains(f.audits, action+" "+subject)
}

const certTTL = 2 * time.Hour

func newFleet(t *testing.T) *fleetUnderTest { return newFleetOn(t, nil) }

// newFleetOn is newFleet with the service's store wrapped by wrap (when
// not nil), for tests that watch what the service writes.
func newFleetOn(t *testing.T, wrap func(store.Store) store.Store) *fleetUnderTest {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	var st store.Store
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if wrap != nil {
		st = wrap(st)
	}
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tasksign.LoadOrCreateKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fleetUnderTest{store: st, ca: ca, signer: signer, now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.svc, err = fleet.New(fleet.Config{Store: st, CA: ca, Signer: signer, Dispatcher: nopDispatcher{}, Audit: f.audit,
		Clock: func() time.Time { return f.now }, CertTTL: certTTL})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// token stores a join token, revoked through the store when tok.Revoked,
// and returns its secret.
func (f *fleetUnderTest) token(t *testing.T, tok store.JoinToken) string {
	t.Helper()
	secret := fmt.Sprintf("fbj_%s-%d", strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()), f.addrs.Add(1))
	tok.Hash = fleet.HashToken(secret)
	if tok.Role == "" {
		tok.Role = "host"
	}
	if tok.Uses == 0 {
		tok.Uses, tok.UsesLeft = 1, 1
	}
	if tok.ExpiresAt.IsZero() {
		tok.ExpiresAt = f.now.Add(time.Hour)
	}
	tok.CreatedBy, tok.CreatedAt = "test", f.now
	revoke := tok.Revoked
	tok.Revoked = false
	if err := f.store.CreateJoinToken(context.Background(), &tok); err != nil {
		t.Fatal(err)
	}
	if revoke {
		if _, err := f.store.RevokeJoinToken(context.Background(), tok.ID()); err != nil {
			t.Fatal(err)
		}
	}
	return secret
}

// from returns a context from an address of its own, so the per-source
// enrollment limits stay out of these tests.
func (f *fleetUnderTest) from() context.Context {
	n := f.addrs.Add(1)
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 9, byte(n>>8), byte(n)), Port: 4000}})
}

func (f *fleetUnderTest) agents(t *testing.T) []*store.Agent {
	t.Helper()
	all, err := f.store.ListAgents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// keyAndCSR returns a new key and a certificate request signed by it.
func keyAndCSR(t *testing.T) (crypto.Signer, []byte) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := pki.NewCSR(key, "agent")
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// csr returns a certificate request for a new key.
func csr(t *testing.T) []byte {
	t.Helper()
	_, der := keyAndCSR(t)
	return der
}

func TestEnrollRefusals(t *testing.T) {
	tests := []struct {
		name  string
		token store.JoinToken
		// secret replaces the stored token's secret when set.
		secret string
		edit   func(*agentv1.EnrollRequest)
		want   codes.Code
	}{
		{name: "no token", secret: "-", want: codes.Unauthenticated},
		{name: "unknown token", secret: "fbj_never-issued", want: codes.Unauthenticated},
		{name: "token longer than 256 bytes", secret: "fbj_" + strings.Repeat("x", 253), want: codes.Unauthenticated},
		{name: "expired token", token: store.JoinToken{ExpiresAt: time.Date(2026, 3, 1, 11, 59, 0, 0, time.UTC)}, want: codes.Unauthenticated},
		{name: "exhausted token", token: store.JoinToken{Uses: 2, UsesLeft: 0}, want: codes.Unauthenticated},
		{name: "revoked token", token: store.JoinToken{Revoked: true}, want: codes.Unauthenticated},
		{name: "a host asks for a worker token's enrollment", token: store.JoinToken{Role: "worker"},
			edit: func(r *agentv1.EnrollRequest) { r.Role = agentv1.AgentRole_AGENT_ROLE_HOST }, want: codes.PermissionDenied},
		{name: "a worker asks for a host token's enrollment", token: store.JoinToken{Role: "host"},
			edit: func(r *agentv1.EnrollRequest) { r.Role = agentv1.AgentRole_AGENT_ROLE_WORKER }, want: codes.PermissionDenied},
		{name: "no facts", edit: func(r *agentv1.EnrollRequest) { r.Facts = nil }, want: codes.InvalidArgument},
		{name: "hostname with a space", edit: func(r *agentv1.EnrollRequest) { r.Facts.Hostname = "web 1" }, want: codes.InvalidArgument},
		{name: "label key with a quote", edit: func(r *agentv1.EnrollRequest) { r.Facts.Labels = map[string]string{`a"b`: "x"} }, want: codes.InvalidArgument},
		{name: "certificate request that is not one", edit: func(r *agentv1.EnrollRequest) { r.CsrDer = []byte("not a CSR") }, want: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			secret := f.token(t, tt.token)
			switch tt.secret {
			case "":
			case "-":
				secret = ""
			default:
				secret = tt.secret
			}
			req := &agentv1.EnrollRequest{JoinToken: secret, CsrDer: csr(t), Facts: &agentv1.AgentFacts{Hostname: "web-1", Os: "linux", Arch: "amd64"}}
			if tt.edit != nil {
				tt.edit(req)
			}
			resp, err := f.svc.Enroll(f.from(), req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("Enroll: code %v (%v); want %v", got, err, tt.want)
			}
			if resp != nil {
				t.Fatalf("a refused enrollment returned %v", resp)
			}
			// Security-critical: a refusal leaves no agent behind.
			if a := f.agents(t); len(a) != 0 {
				t.Fatalf("a refused enrollment stored %d agents", len(a))
			}
			// And it spends no use of a token that could be used: the
			// enrollment is one transaction.
			toks, err := f.store.ListJoinTokens(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range toks {
				want := tt.token.UsesLeft
				if tt.token.Uses == 0 {
					want = 1
				}
				if tok.UsesLeft != want {
					t.Fatalf("a refused enrollment left %d uses of the token, want %d", tok.UsesLeft, want)
				}
			}
		})
	}
}

func TestEnrollIdentity(t *testing.T) {
	tests := []struct {
		name        string
		tokenRole   string
		askRole     agentv1.AgentRole
		agentLabels map[string]string
		tokenLabels map[string]string
		wantLabels  map[string]string
	}{
		{name: "the role comes from the token when the agent names none", tokenRole: "worker",
			wantLabels: map[string]string{}},
		{name: "an agent naming the token's role", tokenRole: "host", askRole: agentv1.AgentRole_AGENT_ROLE_HOST,
			agentLabels: map[string]string{"team": "web"}, wantLabels: map[string]string{"team": "web"}},
		{name: "token labels override the agent's", tokenRole: "host",
			agentLabels: map[string]string{"env": "dev", "team": "web"}, tokenLabels: map[string]string{"env": "prod", "tier": "1"},
			wantLabels: map[string]string{"env": "prod", "team": "web", "tier": "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			secret := f.token(t, store.JoinToken{Role: tt.tokenRole, Labels: tt.tokenLabels})
			resp, err := f.svc.Enroll(f.from(), &agentv1.EnrollRequest{JoinToken: secret, CsrDer: csr(t), Role: tt.askRole,
				Facts: &agentv1.AgentFacts{Hostname: "web-1", Os: "linux", Arch: "amd64", Labels: tt.agentLabels,
					InstanceId: "i-0123456789abcdef0", Account: "111122223333", Region: "eu-west-1"}})
			if err != nil {
				t.Fatal(err)
			}
			cert, err := x509.ParseCertificate(resp.GetCertificateDer())
			if err != nil {
				t.Fatal(err)
			}
			id, err := pki.IdentityFromCert(cert)
			if err != nil {
				t.Fatal(err)
			}
			if id.Kind != pki.KindAgent || id.Name != resp.GetAgentId() || id.Role != tt.tokenRole {
				t.Fatalf("certificate identity %+v; want agent %s with role %s", id, resp.GetAgentId(), tt.tokenRole)
			}
			if got := cert.NotAfter.Sub(cert.NotBefore); got > certTTL+time.Hour {
				t.Fatalf("certificate valid for %v; the fleet's CertTTL is %v", got, certTTL)
			}
			stored, err := f.store.GetAgent(context.Background(), resp.GetAgentId())
			if err != nil {
				t.Fatal(err)
			}
			if stored.Role != tt.tokenRole || stored.CertSerial != id.Serial {
				t.Fatalf("stored agent role %q serial %s; want %q and the certificate's %s", stored.Role, stored.CertSerial, tt.tokenRole, id.Serial)
			}
			if got := stored.Facts.GetLabels(); !maps.Equal(got, tt.wantLabels) && !(len(got) == 0 && len(tt.wantLabels) == 0) {
				t.Fatalf("stored labels %v; want %v", got, tt.wantLabels)
			}
			if !maps.Equal(resp.GetLabels(), tt.tokenLabels) && !(len(resp.GetLabels()) == 0 && len(tt.tokenLabels) == 0) {
				t.Fatalf("the response's labels %v; want the token's %v", resp.GetLabels(), tt.tokenLabels)
			}
		})
	}
}

// connect makes a real TLS 1.3 handshake with the controller's server
// configuration, presenting holder's certificate (none when nil), and
// returns the server's view of the connection, as gRPC gives it to the
// interceptors: the verified chain and the keying material the fleet tells
// connections apart by.
func (f *fleetUnderTest) connect(t *testing.T, holder *tls.Certificate) *tls.ConnectionState {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := f.ca.IssueServer(key.Public(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvConf := pki.ServerTLS(f.ca, tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: key, Leaf: srvCert})
	cliConf := pki.ClientTLS(f.ca.Pool(), func() (*tls.Certificate, error) {
		if holder == nil {
			return &tls.Certificate{}, nil
		}
		return holder, nil
	})
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	srv, cli := tls.Server(a, srvConf), tls.Client(b, cliConf)
	done := make(chan error, 1)
	go func() { done <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("TLS handshake (client): %v", err)
	}
	state := srv.ConnectionState()
	return &state
}

// holder is an agent's key and certificate.
func holder(key crypto.Signer, cert *x509.Certificate) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// renew calls Renew on conn through the authenticator the controller
// serves the agent protocol with.
func (f *fleetUnderTest) renew(conn *tls.ConnectionState, csrDER []byte) (*agentv1.RenewResponse, error) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: *conn},
		Addr: &net.TCPAddr{IP: net.IPv4(10, 8, 0, 1), Port: 4000}})
	method := agentv1.AgentService_Renew_FullMethodName
	a := &auth.Authenticator{Policy: auth.Policy{Agent: map[string]bool{method: true}}, Store: f.store}
	out, err := a.Unary()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
		return f.svc.Renew(ctx, &agentv1.RenewRequest{CsrDer: csrDER})
	})
	if err != nil {
		return nil, err
	}
	return out.(*agentv1.RenewResponse), nil
}

// enrolled is an agent just enrolled with a worker token.
type enrolled struct {
	id   string
	key  crypto.Signer
	cert *x509.Certificate
}

func (f *fleetUnderTest) enrollWorker(t *testing.T) enrolled {
	t.Helper()
	key, req := keyAndCSR(t)
	resp, err := f.svc.Enroll(f.from(), &agentv1.EnrollRequest{JoinToken: f.token(t, store.JoinToken{Role: "worker"}), CsrDer: req,
		Facts: &agentv1.AgentFacts{Hostname: "worker-1", Os: "linux", Arch: "amd64", Account: "111122223333", Region: "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(resp.GetCertificateDer())
	if err != nil {
		t.Fatal(err)
	}
	return enrolled{id: resp.GetAgentId(), key: key, cert: cert}
}

func TestRenew(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the connection to renew on.
		setup func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState
		csr   []byte
		want  codes.Code
	}{
		{name: "the current certificate renews", want: codes.OK,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				return f.connect(t, holder(a.key, a.cert))
			}},
		{name: "the renewing connection may renew again on the superseded certificate", want: codes.OK,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				conn := f.connect(t, holder(a.key, a.cert))
				if _, err := f.renew(conn, csr(t)); err != nil {
					t.Fatalf("the first renewal: %v", err)
				}
				return conn
			}},
		{name: "a superseded certificate on another connection is refused", want: codes.PermissionDenied,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				if _, err := f.renew(f.connect(t, holder(a.key, a.cert)), csr(t)); err != nil {
					t.Fatalf("the first renewal: %v", err)
				}
				return f.connect(t, holder(a.key, a.cert))
			}},
		{name: "a revoked agent is refused", want: codes.PermissionDenied,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				if _, err := f.svc.Revoke(context.Background(), a.id, "test"); err != nil {
					t.Fatal(err)
				}
				return f.connect(t, holder(a.key, a.cert))
			}},
		{name: "an agent whose instance AWS reports terminated is refused", want: codes.PermissionDenied,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				stored, err := f.store.GetAgent(context.Background(), a.id)
				if err != nil {
					t.Fatal(err)
				}
				stored.TerminatedAt = f.now
				if err := f.store.PutAgent(context.Background(), stored); err != nil {
					t.Fatal(err)
				}
				return f.connect(t, holder(a.key, a.cert))
			}},
		{name: "an agent this controller never enrolled is refused", want: codes.PermissionDenied,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				cert, err := f.ca.IssueClientForKey(a.key.Public(), pki.Identity{Kind: pki.KindAgent, Name: "agt-stranger", Role: "host"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return f.connect(t, holder(a.key, cert))
			}},
		{name: "an operator certificate is refused", want: codes.PermissionDenied,
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				cert, err := f.ca.IssueClientForKey(a.key.Public(), pki.Identity{Kind: pki.KindOperator, Name: "ada"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return f.connect(t, holder(a.key, cert))
			}},
		{name: "no certificate", want: codes.Unauthenticated,
			setup: func(t *testing.T, f *fleetUnderTest, _ enrolled) *tls.ConnectionState {
				return f.connect(t, nil)
			}},
		{name: "a certificate request that is not one", want: codes.InvalidArgument, csr: []byte("not a CSR"),
			setup: func(t *testing.T, f *fleetUnderTest, a enrolled) *tls.ConnectionState {
				return f.connect(t, holder(a.key, a.cert))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			a := f.enrollWorker(t)
			conn := tt.setup(t, f, a)
			req := tt.csr
			if req == nil {
				req = csr(t)
			}
			before, err := f.store.GetAgent(context.Background(), a.id)
			if err != nil {
				t.Fatal(err)
			}
			out, err := f.renew(conn, req)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("Renew: code %v (%v); want %v", got, err, tt.want)
			}
			after, err := f.store.GetAgent(context.Background(), a.id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != codes.OK {
				// Security-critical: a refused renewal changes nothing.
				if after.CertSerial != before.CertSerial {
					t.Fatalf("a refused renewal moved the current serial from %s to %s", before.CertSerial, after.CertSerial)
				}
				return
			}
			renewed, err := x509.ParseCertificate(out.GetCertificateDer())
			if err != nil {
				t.Fatal(err)
			}
			id, err := pki.IdentityFromCert(renewed)
			if err != nil {
				t.Fatal(err)
			}
			// The renewed certificate keeps the identity the controller
			// issued: the same agent, role, account and region.
			if id.Kind != pki.KindAgent || id.Name != a.id || id.Role != "worker" || id.Account != "111122223333" || id.Region != "eu-west-1" {
				t.Fatalf("renewed identity %+v; want agent %s, worker, 111122223333, eu-west-1", id, a.id)
			}
			if after.CertSerial != id.Serial || id.Serial == before.CertSerial {
				t.Fatalf("stored serial %s; want the renewed certificate's %s (was %s)", after.CertSerial, id.Serial, before.CertSerial)
			}
		})
	}
}
