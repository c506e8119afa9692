package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/plugins/catalog"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// FakeAgent is an attacker's agent: it enrolls with a real join token and
// speaks the real agent protocol with its real certificate, but says about
// itself whatever the test wants (facts, plugins, results). Security tests
// use it to show that the controller never trusts an agent's self-report.
type FakeAgent struct {
	// ID is the agent id the controller assigned at enrollment.
	ID string
	// Cert is the agent's current certificate (DER).
	Cert []byte
	// Key is the agent's private key.
	Key *ecdsa.PrivateKey

	addr string
	pool *x509.CertPool

	mu    sync.Mutex
	tasks []*agentv1.SignedTask
}

// EnrollFake enrolls a fake agent against the controller with token, role
// ("host" or "worker") and the facts it claims.
func (c *Controller) EnrollFake(t testing.TB, token, role string, facts *agentv1.AgentFacts) *FakeAgent {
	t.Helper()
	f, err := c.TryEnrollFake(token, role, facts)
	if err != nil {
		t.Fatalf("enrolling a fake agent: %v", err)
	}
	return f
}

// TryEnrollFake is EnrollFake that returns the controller's refusal.
func (c *Controller) TryEnrollFake(token, role string, facts *agentv1.AgentFacts) (*FakeAgent, error) {
	caPEM, err := os.ReadFile(filepath.Join(c.DataDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(key, facts.GetHostname())
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := agentv1.AgentRole_AGENT_ROLE_HOST
	if role == "worker" {
		r = agentv1.AgentRole_AGENT_ROLE_WORKER
	}
	resp, err := agentv1.NewAgentServiceClient(conn).Enroll(ctx, &agentv1.EnrollRequest{JoinToken: token, CsrDer: csr, Facts: facts, Role: r})
	if err != nil {
		return nil, err
	}
	return &FakeAgent{ID: resp.GetAgentId(), Cert: resp.GetCertificateDer(), Key: key, addr: c.Addr, pool: pool}, nil
}

// Dial opens an mTLS connection with the fake agent's current certificate.
func (f *FakeAgent) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	f.mu.Lock()
	cert := tls.Certificate{Certificate: [][]byte{f.Cert}, PrivateKey: f.Key}
	f.mu.Unlock()
	conn, err := grpc.NewClient("passthrough:///"+f.addr, grpc.WithTransportCredentials(credentials.NewTLS(
		pki.ClientTLS(f.pool, func() (*tls.Certificate, error) { return &cert, nil }))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Renew asks for a fresh certificate with the fake agent's current one and,
// when the controller issues it, keeps it (the old one stays in old).
func (f *FakeAgent) Renew(t testing.TB) (old []byte, err error) {
	t.Helper()
	conn := f.Dial(t)
	csr, err := pki.NewCSR(f.Key, "renew")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := agentv1.NewAgentServiceClient(conn).Renew(ctx, &agentv1.RenewRequest{CsrDer: csr})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, f.Cert = f.Cert, resp.GetCertificateDer()
	return old, nil
}

// FakeStream is one open Connect stream of a fake agent.
type FakeStream struct {
	Stream  agentv1.AgentService_ConnectClient
	Welcome *agentv1.Welcome
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
	agent   *FakeAgent
	// answered counts the tasks Answer has reported.
	answered int
}

// Agent is the fake agent the stream belongs to.
func (s *FakeStream) Agent() *FakeAgent { return s.agent }

// Answer reports the oldest task pushed to the agent that Answer has not
// reported yet, with status (for streams connected without answer).
func (s *FakeStream) Answer(t testing.TB, status agentv1.TaskStatus) {
	t.Helper()
	tasks := s.agent.Tasks()
	if s.answered >= len(tasks) {
		t.Fatalf("fake agent %s has no unanswered task (%d pushed)", s.agent.ID, len(tasks))
	}
	id := taskID(tasks[s.answered])
	s.answered++
	if err := s.Stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: &agentv1.TaskResult{
		TaskId: id, Status: status, OutputJson: []byte("{}")}}}); err != nil {
		t.Fatalf("answering task %s: %v", id, err)
	}
}

// Connect opens the Connect stream, sends hello, and reads the welcome. The
// stream then records every task pushed to it; with answer set, it reports
// each task as succeeded with output {} (what a lying agent would do).
func (f *FakeAgent) Connect(t testing.TB, hello *agentv1.Hello, answer bool) (*FakeStream, error) {
	t.Helper()
	conn := f.Dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := agentv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: hello}}); err != nil {
		if errors.Is(err, io.EOF) {
			// The controller ended the stream before it read the hello (a
			// refusal at authentication); gRPC gives its status to Recv.
			_, err = stream.Recv()
		}
		cancel()
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	if first.GetWelcome() == nil {
		cancel()
		return nil, fmt.Errorf("the controller answered hello with %v, not a welcome", first)
	}
	s := &FakeStream{Stream: stream, Welcome: first.GetWelcome(), cancel: cancel, done: make(chan struct{}), agent: f}
	t.Cleanup(cancel)
	go func() {
		defer close(s.done)
		for {
			m, err := stream.Recv()
			if err != nil {
				s.err = err
				return
			}
			if st := m.GetTask(); st != nil {
				f.mu.Lock()
				f.tasks = append(f.tasks, st)
				f.mu.Unlock()
				if answer {
					_ = stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: &agentv1.TaskResult{
						TaskId: taskID(st), Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: []byte("{}")}}})
				}
			}
		}
	}()
	return s, nil
}

// Closed waits up to d for the controller to end the stream and returns
// its error (nil if it is still open).
func (s *FakeStream) Closed(d time.Duration) error {
	select {
	case <-s.done:
		return s.err
	case <-time.After(d):
		return nil
	}
}

// Close ends the stream from the agent's side.
func (s *FakeStream) Close() { s.cancel() }

// TaskSpecs decodes the tasks pushed to the fake agent so far.
func (f *FakeAgent) TaskSpecs(t testing.TB) []*agentv1.TaskSpec {
	t.Helper()
	var out []*agentv1.TaskSpec
	for _, st := range f.Tasks() {
		spec := &agentv1.TaskSpec{}
		if err := proto.Unmarshal(st.GetSpec(), spec); err != nil {
			t.Fatalf("decoding a pushed task: %v", err)
		}
		out = append(out, spec)
	}
	return out
}

// Tasks returns the tasks pushed to the fake agent so far.
func (f *FakeAgent) Tasks() []*agentv1.SignedTask {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*agentv1.SignedTask(nil), f.tasks...)
}

// TaskID reads the task id from a signed task, as the fake agent does.
func TaskID(st *agentv1.SignedTask) string { return taskID(st) }

// taskID reads the task id from a signed task without verifying it (the
// fake agent is the attacker; it does not care).
func taskID(st *agentv1.SignedTask) string {
	spec := &agentv1.TaskSpec{}
	if err := proto.Unmarshal(st.GetSpec(), spec); err != nil {
		return ""
	}
	return spec.GetTaskId()
}

// WithCert returns a copy of the fake agent that presents cert with the
// same key: a thief holding an agent's key and an older certificate.
func (f *FakeAgent) WithCert(cert []byte) *FakeAgent {
	return &FakeAgent{ID: f.ID, Cert: cert, Key: f.Key, addr: f.addr, pool: f.pool}
}

// OperatorConn opens an mTLS connection to the controller with an operator
// credential file, for tests that hold a stream open.
func (c *Controller) OperatorConn(t testing.TB, credsPath string) *grpc.ClientConn {
	t.Helper()
	creds, err := pki.LoadCreds(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// HonestPlugins returns the plugin list an honest agent reports for the
// named first-party actions: the catalogue's exact descriptions.
func HonestPlugins(t testing.TB, names ...string) []*agentv1.PluginInfo {
	t.Helper()
	descs, err := catalog.Descriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []*agentv1.PluginInfo
	for _, n := range names {
		d := descs[n]
		if d == nil {
			t.Fatalf("no first-party action %q", n)
		}
		out = append(out, &agentv1.PluginInfo{Description: d, Sha256: "builtin"})
	}
	return out
}
