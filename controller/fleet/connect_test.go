package fleet_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// countingStore counts the agent rows the service writes.
type countingStore struct {
	store.Store
	puts atomic.Int32
}

func (c *countingStore) PutAgent(ctx context.Context, a *store.Agent) error {
	c.puts.Add(1)
	return c.Store.PutAgent(ctx, a)
}

// serveAgents serves the fleet's agent protocol over real mTLS on
// loopback, with the authenticator the controller uses, and returns a
// client presenting holder's certificate.
func (f *fleetUnderTest) serveAgents(t *testing.T, holder *tls.Certificate) agentv1.AgentServiceClient {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := f.ca.IssueServer(key.Public(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{Policy: auth.Policy{Agent: map[string]bool{agentv1.AgentService_Connect_FullMethodName: true}}, Store: f.store}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(f.ca, tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: key, Leaf: srvCert}))),
		grpc.StreamInterceptor(a.Stream()))
	agentv1.RegisterAgentServiceServer(srv, f.svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(f.ca.Pool(), func() (*tls.Certificate, error) { return holder, nil }))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentv1.NewAgentServiceClient(conn)
}

// hello opens a stream, says hello and returns the first answer (the
// welcome) or the stream's error, with the trailer; the stream is closed
// before it returns.
func hello(t *testing.T, client agentv1.AgentServiceClient, facts *agentv1.AgentFacts) (*agentv1.ConnectResponse, metadata.MD, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: &agentv1.Hello{Facts: facts}}}); err != nil && err != io.EOF {
		return nil, nil, err
	}
	m, err := stream.Recv()
	return m, stream.Trailer(), err
}

// TestConnectWritesOnlyAChangedHello: a hello that says what the store
// already holds writes nothing (a reconnect herd costs one read per agent),
// and one that changes the agent's facts is stored.
func TestConnectWritesOnlyAChangedHello(t *testing.T) {
	var counting *countingStore
	f := newFleetOn(t, func(s store.Store) store.Store { counting = &countingStore{Store: s}; return counting })
	e := f.enrollWorker(t)
	enrolled := counting.puts.Load() // the enrollment's own write
	client := f.serveAgents(t, holder(e.key, e.cert))
	facts := func(hostname string) *agentv1.AgentFacts {
		return &agentv1.AgentFacts{Hostname: hostname, Os: "linux", Arch: "amd64", Account: "111122223333", Region: "eu-west-1", AgentVersion: "test"}
	}
	for _, step := range []struct {
		name      string
		hostname  string
		wantPuts  int32
		wantStore string
	}{
		{name: "first hello with new facts", hostname: "worker-1", wantPuts: 1, wantStore: "worker-1"},
		{name: "the same hello again", hostname: "worker-1", wantPuts: 1, wantStore: "worker-1"},
		{name: "and again", hostname: "worker-1", wantPuts: 1, wantStore: "worker-1"},
		{name: "a hello that changes the hostname", hostname: "worker-renamed", wantPuts: 2, wantStore: "worker-renamed"},
	} {
		m, _, err := hello(t, client, facts(step.hostname))
		if err != nil || m.GetWelcome().GetAgentId() != e.id {
			t.Fatalf("%s: %v, %v; want a welcome for %s", step.name, m, err, e.id)
		}
		if got := counting.puts.Load() - enrolled; got != step.wantPuts {
			t.Fatalf("%s: %d agent writes since the enrollment, want %d", step.name, got, step.wantPuts)
		}
		a, err := f.store.GetAgent(context.Background(), e.id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Hostname != step.wantStore {
			t.Fatalf("%s: stored hostname %q, want %q", step.name, a.Hostname, step.wantStore)
		}
	}
}

// TestConnectShedWithRetryAfter: with every handshake slot busy and the
// waiting line full, a Connect stream is answered RESOURCE_EXHAUSTED with a
// retry-after trailer before its hello is stored; once there is room, the
// same agent connects.
func TestConnectShedWithRetryAfter(t *testing.T) {
	var counting *countingStore
	f := newFleetOn(t, func(s store.Store) store.Store { counting = &countingStore{Store: s}; return counting })
	e := f.enrollWorker(t)
	enrolled := counting.puts.Load() // the enrollment's own write
	client := f.serveAgents(t, holder(e.key, e.cert))
	adm := f.svc.Admission()
	free := fillAdmission(t, adm)
	shedBefore := adm.Shed()
	facts := &agentv1.AgentFacts{Hostname: "worker-shed", Os: "linux", Arch: "amd64", Account: "111122223333", Region: "eu-west-1"}
	_, trailer, err := hello(t, client, facts)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a connection beyond the admission: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := trailer.Get("retry-after"); len(got) != 1 || got[0] != "1" {
		t.Errorf("retry-after trailer %q, want [\"1\"]", got)
	}
	if adm.Shed() != shedBefore+1 {
		t.Errorf("shed count %d, want %d", adm.Shed(), shedBefore+1)
	}
	if n := counting.puts.Load() - enrolled; n != 0 {
		t.Errorf("a shed hello wrote the agent's row %d times", n)
	}

	free()
	m, _, err := hello(t, client, facts)
	if err != nil || m.GetWelcome().GetAgentId() != e.id {
		t.Fatalf("the same agent once the controller has room: %v, %v", m, err)
	}
}

// TestHelloIdentityClaims: the certificate's instance id, account and
// region are the agent's identity. A hello claiming other values is
// audited as agent.identity_mismatch; a value the certificate does not
// hold (a worker enrolled by STS has no region there) cannot be
// contradicted, so claiming one is not recorded. Either way the stored
// facts are the certificate's.
func TestHelloIdentityClaims(t *testing.T) {
	// enrollWorker's certificate holds account 111122223333 and region
	// eu-west-1, and no instance id.
	tests := []struct {
		name      string
		claim     func(*agentv1.AgentFacts)
		wantAudit bool
	}{
		{name: "the certificate's own values", claim: func(*agentv1.AgentFacts) {}},
		{name: "another region", claim: func(f *agentv1.AgentFacts) { f.Region = "us-east-1" }, wantAudit: true},
		{name: "another account", claim: func(f *agentv1.AgentFacts) { f.Account = "999999999999" }, wantAudit: true},
		{name: "no account, which the certificate holds", claim: func(f *agentv1.AgentFacts) { f.Account = "" }, wantAudit: true},
		{name: "an instance id the certificate does not hold", claim: func(f *agentv1.AgentFacts) { f.InstanceId = "i-0123456789abcdef0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			e := f.enrollWorker(t)
			client := f.serveAgents(t, holder(e.key, e.cert))
			facts := &agentv1.AgentFacts{Hostname: "worker-1", Os: "linux", Arch: "amd64", Account: "111122223333", Region: "eu-west-1"}
			tt.claim(facts)
			if m, _, err := hello(t, client, facts); err != nil || m.GetWelcome() == nil {
				t.Fatalf("hello: %v, %v", m, err)
			}
			if got := f.audited("agent.identity_mismatch", e.id); got != tt.wantAudit {
				t.Fatalf("agent.identity_mismatch audited %v, want %v", got, tt.wantAudit)
			}
			a, err := f.store.GetAgent(context.Background(), e.id)
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]string{a.Facts.GetInstanceId(), a.Facts.GetAccount(), a.Facts.GetRegion()}; got != [3]string{"", "111122223333", "eu-west-1"} {
				t.Fatalf("stored identity %v, want the certificate's", got)
			}
		})
	}
}
