package e2e_test

// Refusals issue 11's review confirmed hold, each kept by a test here when
// no other suite covered it: the real controller binary, reached over its
// real mTLS gRPC port.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/eradicate"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/controller/operator"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// operatorServices are the services operators call.
var operatorServices = []grpc.ServiceDesc{operatorv1.OperatorService_ServiceDesc, operatorv1.PlaybookService_ServiceDesc,
	operatorv1.CaseService_ServiceDesc, operatorv1.EvidenceService_ServiceDesc, operatorv1.EradicationService_ServiceDesc}

// method is one RPC of a service.
type method struct {
	name string
	desc *grpc.StreamDesc // nil for a unary method
}

func methods(services ...grpc.ServiceDesc) []method {
	var out []method
	for _, s := range services {
		for _, m := range s.Methods {
			out = append(out, method{name: "/" + s.ServiceName + "/" + m.MethodName})
		}
		for _, st := range s.Streams {
			out = append(out, method{name: "/" + s.ServiceName + "/" + st.StreamName,
				desc: &grpc.StreamDesc{StreamName: st.StreamName, ServerStreams: st.ServerStreams, ClientStreams: st.ClientStreams}})
		}
	}
	return out
}

// call calls a method with an empty request and returns its error: the
// authorisation runs before any handler reads the request.
func call(ctx context.Context, conn *grpc.ClientConn, m method) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if m.desc == nil {
		return conn.Invoke(ctx, m.name, &emptypb.Empty{}, &emptypb.Empty{})
	}
	cs, err := conn.NewStream(ctx, m.desc, m.name)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&emptypb.Empty{}); err != nil && err != io.EOF {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return cs.RecvMsg(&emptypb.Empty{})
}

// caPool is the controller's CA.
func caPool(t *testing.T, c *e2e.Controller) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
}

func dial(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// operatorConn dials the controller with an operator's credential file.
func operatorConn(t *testing.T, c *e2e.Controller, credsPath string) *grpc.ClientConn {
	t.Helper()
	cr, err := pki.LoadCreds(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := cr.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, c.Addr, cfg)
}

// enroll enrolls an agent the way the agent binary does, over its own
// connection, and returns the answer and the agent's TLS certificate.
func enroll(ctx context.Context, t *testing.T, c *e2e.Controller, pool *x509.CertPool, token, hostname string) (*agentv1.EnrollResponse, *tls.Certificate, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	csr, err := pki.NewCSR(key, hostname)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))))
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := agentv1.NewAgentServiceClient(conn).Enroll(ctx, &agentv1.EnrollRequest{JoinToken: token, CsrDer: csr,
		Facts: &agentv1.AgentFacts{Hostname: hostname}, Role: agentv1.AgentRole_AGENT_ROLE_HOST})
	if err != nil {
		return nil, nil, err
	}
	return resp, &tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}, nil
}

// TestAgentCertificatesCannotCallOperatorMethods enrolls an agent and
// calls every operator method with its certificate, and the agent methods
// with an operator's: each is refused, naming the kind of caller.
func TestAgentCertificatesCannotCallOperatorMethods(t *testing.T) {
	c := e2e.StartController(t, e2e.Build(t), e2e.ControllerOptions{})
	pool := caPool(t, c)
	ctx := context.Background()
	resp, cert, err := enroll(ctx, t, c, pool, c.Token(t, "host", 1), "compromised-host")
	if err != nil {
		t.Fatalf("enrolling: %v", err)
	}
	asAgent := dial(t, c.Addr, pki.ClientTLS(pool, func() (*tls.Certificate, error) { return cert, nil }))
	for _, m := range methods(operatorServices...) {
		t.Run("agent calls "+m.name, func(t *testing.T) {
			err := call(ctx, asAgent, m)
			want := fmt.Sprintf("%s is for operators; the caller is agent %q", m.name, resp.GetAgentId())
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v; want PermissionDenied: %s", err, want)
			}
		})
	}
	asAdmin := operatorConn(t, c, c.Creds)
	for _, m := range methods(agentv1.AgentService_ServiceDesc) {
		if m.name == agentv1.AgentService_Enroll_FullMethodName {
			continue // open to anyone with a join token
		}
		t.Run("operator calls "+m.name, func(t *testing.T) {
			err := call(ctx, asAdmin, m)
			want := fmt.Sprintf("%s is for agents; the caller is operator %q", m.name, "admin")
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v; want PermissionDenied: %s", err, want)
			}
		})
	}
	// The certificate itself is good: the agent may call its own methods.
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "compromised-host")
	if _, err := agentv1.NewAgentServiceClient(asAgent).Renew(ctx2, &agentv1.RenewRequest{CsrDer: csr}); err != nil {
		t.Fatalf("the agent renewing its own certificate: %v", err)
	}
}

// TestViewersCannotCallWriteMethods calls, as a viewer, every operator
// method that needs more than a viewer: each is refused, naming the role
// it needs; and nothing was created.
func TestViewersCannotCallWriteMethods(t *testing.T) {
	c := e2e.StartController(t, e2e.Build(t), e2e.ControllerOptions{})
	viewerCreds := filepath.Join(t.TempDir(), "val.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "val", "--role", "viewer", "-o", viewerCreds)
	policy := map[string]operatorv1.OperatorRole{}
	for _, p := range []map[string]operatorv1.OperatorRole{operator.Policy, playbookrun.Policy, cases.Policy, evidence.Policy, eradicate.Policy} {
		for k, v := range p {
			policy[k] = v
		}
	}
	asViewer := operatorConn(t, c, viewerCreds)
	ctx := context.Background()
	writes := 0
	for _, m := range methods(operatorServices...) {
		need, named := policy[m.name]
		if named && need == operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER {
			continue
		}
		writes++
		t.Run(m.name, func(t *testing.T) {
			err := call(ctx, asViewer, m)
			want := `operator "val" is a viewer`
			if !named {
				want = "is not permitted"
			}
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
				t.Fatalf("%v; want PermissionDenied: %s", err, want)
			}
		})
	}
	if writes < 10 {
		t.Fatalf("only %d methods need more than a viewer: the policy was not read", writes)
	}
	// The credential works for what a viewer may do.
	if _, err := operatorv1.NewOperatorServiceClient(asViewer).Whoami(ctx, &operatorv1.WhoamiRequest{}); err != nil {
		t.Fatalf("whoami as the viewer: %v", err)
	}
	var runs []any
	c.MustJSON(t, &runs, 0, "runs", "list")
	if len(runs) != 0 {
		t.Fatalf("a viewer's refused calls left %d runs", len(runs))
	}
}

// TestConcurrentEnrollmentsCannotOverUseAToken races sixteen enrollments
// on a token of three uses: exactly three agents enroll, the others are
// told the token has no uses left.
func TestConcurrentEnrollmentsCannotOverUseAToken(t *testing.T) {
	c := e2e.StartController(t, e2e.Build(t), e2e.ControllerOptions{})
	pool := caPool(t, c)
	token := c.Token(t, "host", 3)
	const racers = 16
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		mu      sync.Mutex
		ok      []string
		refused []error
	)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, _, err := enroll(context.Background(), t, c, pool, token, fmt.Sprintf("racer-%d", i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused = append(refused, err)
				return
			}
			ok = append(ok, resp.GetAgentId())
		}()
	}
	close(start)
	wg.Wait()
	if len(ok) != 3 {
		t.Fatalf("%d enrollments succeeded with a token of 3 uses (%d refused: %v)", len(ok), len(refused), refused)
	}
	for _, err := range refused {
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no uses left") {
			t.Errorf("refusal %v; want Unauthenticated: no uses left", err)
		}
	}
	if n := len(c.Agents(t)); n != 3 {
		t.Fatalf("%d agents enrolled, want 3", n)
	}
}

// TestNoSecretsInLogs drives the controller and an agent through
// enrollment, operator creation, a run and the events endpoint, at debug
// level, and checks that no join token, events secret or private key
// reaches either log.
func TestNoSecretsInLogs(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("q7", 24)
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := e2e.StartController(t, e2e.Build(t), e2e.ControllerOptions{Args: []string{"--log-level", "debug",
		"--events-listen", "127.0.0.1:0", "--events-secret-file", filepath.Join(dir, "secret")}})
	token := c.Token(t, "host", 1)
	a := c.StartAgent(t, e2e.AgentOptions{Name: "host0", Token: token, Args: []string{"--log-level", "debug"}})
	c.WaitConnected(t, a.AgentID(t))
	// A mistyped token: its text is refused, not logged.
	wrong := "fbt_" + strings.Repeat("Zx", 20)
	bad := c.StartAgent(t, e2e.AgentOptions{Name: "mistyped", Token: wrong, Args: []string{"--log-level", "debug"}})
	e2e.WaitFor(t, 30*time.Second, "the agent with a wrong token to exit", func() bool { return !bad.Running() })
	opCreds := filepath.Join(dir, "olga.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "olga", "--role", "responder", "-o", opCreds)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("run %+v", run)
	}
	// An event through the HTTPS endpoint with the shared secret.
	url := eventsURL(t, c)
	body, err := os.ReadFile(filepath.Join(c.Bins.Root, "controller", "finding", "testdata", "guardduty-ssh-bruteforce.json"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set(intake.SecretHeader, secret)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, c), ServerName: pki.ServerName,
		MinVersion: tls.VersionTLS13}}, Timeout: 30 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting the event with the secret: %s", resp.Status)
	}

	secrets := map[string]string{"join token": token, "mistyped join token": wrong, "events secret": secret}
	for name, path := range map[string]string{"admin": c.Creds, "olga": opCreds} {
		cr, err := pki.LoadCreds(path)
		if err != nil {
			t.Fatal(err)
		}
		secrets[name+"'s private key"] = pemBody(t, cr.KeyPEM)
	}
	agentKey, err := os.ReadFile(filepath.Join(a.DataDir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets["the agent's private key"] = pemBody(t, string(agentKey))
	logs := map[string]string{"controller": c.Log(), "agent": a.Log(), "refused agent": bad.Log()}
	for lname, log := range logs {
		if strings.Contains(log, "PRIVATE KEY") {
			t.Errorf("the %s log holds a PEM private key", lname)
		}
		for sname, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("the %s log holds the %s", lname, sname)
			}
		}
	}
}

// pemBody is one line of a PEM private key's body that a log holding the
// key would show: the second base64 line, past the header every key of the
// type shares.
func pemBody(t *testing.T, s string) string {
	t.Helper()
	if blk, _ := pem.Decode([]byte(s)); blk == nil {
		t.Fatal("the key file is not PEM")
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) < 4 {
		t.Fatalf("the PEM key has %d lines", len(lines))
	}
	return strings.TrimSpace(lines[2])
}

// TestHalfOpenTLSFloodDoesNotStopTheController holds hundreds of
// connections that never finish a TLS handshake — silent ones and ones
// that stop part-way through a ClientHello — and checks that while they
// are open the controller still enrolls an agent, answers operators and
// runs a task.
func TestHalfOpenTLSFloodDoesNotStopTheController(t *testing.T) {
	c := e2e.StartController(t, e2e.Build(t), e2e.ControllerOptions{})
	const flood = 400
	var conns []net.Conn
	t.Cleanup(func() {
		for _, cn := range conns {
			cn.Close()
		}
	})
	// A TLS record header announcing a 512-byte handshake message, then
	// only its first bytes.
	partial := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	for i := range flood {
		cn, err := net.DialTimeout("tcp", c.Addr, 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d of the flood: %v", i, err)
		}
		conns = append(conns, cn)
		if i%2 == 1 {
			if _, err := cn.Write(partial); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
	}
	a := c.StartAgent(t, e2e.AgentOptions{Name: "host0", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, a.AgentID(t))
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("run during the flood %+v", run)
	}
	if !c.Running() {
		t.Fatal("the controller exited under the flood")
	}
}
