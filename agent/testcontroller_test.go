package agent

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/firebreak-ir/firebreak/internal/pki"
)

// serveController serves what register puts on a gRPC server over real
// mTLS on loopback, under a CA of its own, and returns the address and an
// agent identity (agentID) of that CA that the agent's own dialling
// accepts. The server stops with the test.
func serveController(t *testing.T, agentID string, register func(*grpc.Server)) (string, *identity) {
	t.Helper()
	ca, err := pki.CreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.IssueServer(srvKey.Public(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	agentKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	agentCert, err := ca.IssueClientForKey(agentKey.Public(), pki.Identity{Kind: pki.KindAgent, Name: agentID}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(ca, tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey, Leaf: srvCert}))))
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), &identity{AgentID: agentID, caPool: ca.Pool(),
		cert: &tls.Certificate{Certificate: [][]byte{agentCert.Raw}, PrivateKey: agentKey, Leaf: agentCert}}
}
