package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Method names of a small policy; the real policy's coverage of every RPC
// is checked in the controller package.
const (
	openMethod      = "/test.v1.Test/Enroll"
	agentMethod     = "/test.v1.Test/Connect"
	viewerMethod    = "/test.v1.Test/List"
	responderMethod = "/test.v1.Test/CreateRun"
	approverMethod  = "/test.v1.Test/Approve"
	adminMethod     = "/test.v1.Test/AddOperator"
	unknownMethod   = "/test.v1.Test/NotInThePolicy"
)

var testPolicy = Policy{
	Open:  map[string]bool{openMethod: true},
	Agent: map[string]bool{agentMethod: true},
	Operator: map[string]operatorv1.OperatorRole{
		viewerMethod:    operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
		responderMethod: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
		approverMethod:  operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
		adminMethod:     operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	},
}

// operatorStore answers GetOperator from a map; every other store method
// is absent, since the authenticator needs none.
type operatorStore struct {
	store.Store
	ops map[string]*store.Operator
	err error
}

func (s *operatorStore) GetOperator(_ context.Context, name string) (*store.Operator, error) {
	if s.err != nil {
		return nil, s.err
	}
	o, ok := s.ops[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return o, nil
}

// caller is a certificate holder with the context a TLS connection from it
// would give an interceptor.
type caller struct {
	ctx    context.Context
	serial string
}

func newCaller(t *testing.T, ca *pki.CA, id pki.Identity, eku x509.ExtKeyUsage) caller {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var cert *x509.Certificate
	if eku == x509.ExtKeyUsageClientAuth {
		cert, err = ca.IssueClientForKey(key.Public(), id, time.Hour)
	} else {
		cert, err = ca.IssueServer(key.Public(), []string{"127.0.0.1"}, time.Hour)
	}
	if err != nil {
		t.Fatal(err)
	}
	info := credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, ca.Cert}}}}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
	return caller{ctx: ctx, serial: cert.SerialNumber.Text(16)}
}

func TestRoleOrdering(t *testing.T) {
	// The authenticator compares roles with <, so the enum order is the
	// privilege order; a reordered proto enum would silently grant more.
	order := []operatorv1.OperatorRole{
		operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED,
		operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
		operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
		operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
		operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	}
	for i := 1; i < len(order); i++ {
		if !(order[i-1] < order[i]) {
			t.Errorf("%s is not below %s", order[i-1], order[i])
		}
	}
}

func TestParseRole(t *testing.T) {
	tests := []struct {
		in     string
		want   operatorv1.OperatorRole
		wantOK bool
	}{
		{in: "viewer", want: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER, wantOK: true},
		{in: "responder", want: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER, wantOK: true},
		{in: "approver", want: operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER, wantOK: true},
		{in: "admin", want: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, wantOK: true},
		{in: "ADMIN", want: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN, wantOK: true},
		{in: "unspecified", wantOK: false},
		{in: "", wantOK: false},
		{in: "root", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseRole(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseRole(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
			if ok && RoleName(got) != lower(tt.in) {
				t.Fatalf("RoleName(%v) = %q; want %q", got, RoleName(got), lower(tt.in))
			}
		})
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func TestAuthenticate(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	agent := newCaller(t, ca, pki.Identity{Kind: pki.KindAgent, Name: "agent-1", Role: "host"}, x509.ExtKeyUsageClientAuth)
	ops := map[string]*store.Operator{}
	operatorAs := func(name string, role operatorv1.OperatorRole) caller {
		c := newCaller(t, ca, pki.Identity{Kind: pki.KindOperator, Name: name}, x509.ExtKeyUsageClientAuth)
		ops[name] = &store.Operator{Name: name, Role: role, CertSerial: c.serial}
		return c
	}
	viewer := operatorAs("vera", operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER)
	responder := operatorAs("rory", operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER)
	approver := operatorAs("april", operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER)
	admin := operatorAs("ada", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN)
	revoked := operatorAs("rex", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN)
	ops["rex"].Revoked = true
	replaced := operatorAs("rita", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN)
	ops["rita"].CertSerial = "a-newer-serial"
	// A certificate the CA signed for an operator the store does not know.
	stranger := newCaller(t, ca, pki.Identity{Kind: pki.KindOperator, Name: "stranger"}, x509.ExtKeyUsageClientAuth)
	// A controller's serving certificate presented as a client certificate.
	server := newCaller(t, ca, pki.Identity{}, x509.ExtKeyUsageServerAuth)
	anonymous := caller{ctx: context.Background()}
	noCert := caller{ctx: peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})}

	tests := []struct {
		name   string
		caller caller
		method string
		want   codes.Code
		// wantOperator is the operator the handler sees, when allowed.
		wantOperator string
	}{
		{name: "open method without a certificate", caller: anonymous, method: openMethod, want: codes.OK},
		{name: "open method with an agent certificate", caller: agent, method: openMethod, want: codes.OK},
		{name: "agent method from an agent", caller: agent, method: agentMethod, want: codes.OK},
		{name: "agent method from an operator", caller: admin, method: agentMethod, want: codes.PermissionDenied},
		{name: "agent method without a peer", caller: anonymous, method: agentMethod, want: codes.Unauthenticated},
		{name: "agent method without a client certificate", caller: noCert, method: agentMethod, want: codes.Unauthenticated},
		{name: "server certificate as a client", caller: server, method: agentMethod, want: codes.Unauthenticated},
		{name: "operator method from an agent", caller: agent, method: viewerMethod, want: codes.PermissionDenied},
		{name: "viewer lists", caller: viewer, method: viewerMethod, want: codes.OK, wantOperator: "vera"},
		{name: "viewer may not create runs", caller: viewer, method: responderMethod, want: codes.PermissionDenied},
		{name: "responder creates runs", caller: responder, method: responderMethod, want: codes.OK, wantOperator: "rory"},
		{name: "responder lists", caller: responder, method: viewerMethod, want: codes.OK, wantOperator: "rory"},
		{name: "responder may not approve", caller: responder, method: approverMethod, want: codes.PermissionDenied},
		{name: "approver approves", caller: approver, method: approverMethod, want: codes.OK, wantOperator: "april"},
		{name: "approver may not add operators", caller: approver, method: adminMethod, want: codes.PermissionDenied},
		{name: "admin adds operators", caller: admin, method: adminMethod, want: codes.OK, wantOperator: "ada"},
		{name: "admin creates runs", caller: admin, method: responderMethod, want: codes.OK, wantOperator: "ada"},
		{name: "revoked operator", caller: revoked, method: viewerMethod, want: codes.PermissionDenied},
		{name: "replaced credential", caller: replaced, method: viewerMethod, want: codes.PermissionDenied},
		{name: "operator unknown to the store", caller: stranger, method: viewerMethod, want: codes.PermissionDenied},
		{name: "unknown method from an admin", caller: admin, method: unknownMethod, want: codes.PermissionDenied},
		{name: "unknown method from an agent", caller: agent, method: unknownMethod, want: codes.PermissionDenied},
		{name: "unknown method without a certificate", caller: anonymous, method: unknownMethod, want: codes.Unauthenticated},
	}
	a := &Authenticator{Policy: testPolicy, Store: &operatorStore{ops: ops}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen *store.Operator
			handler := func(ctx context.Context, _ any) (any, error) {
				seen, _ = OperatorFrom(ctx)
				return "ok", nil
			}
			_, err := a.Unary()(tt.caller.ctx, nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, handler)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code %v (%v); want %v", got, err, tt.want)
			}
			if tt.want != codes.OK {
				return
			}
			if tt.wantOperator == "" && seen != nil {
				t.Fatalf("the handler saw operator %q; want none", seen.Name)
			}
			if tt.wantOperator != "" && (seen == nil || seen.Name != tt.wantOperator) {
				t.Fatalf("the handler saw operator %v; want %q", seen, tt.wantOperator)
			}
		})
	}
}

func TestAuthenticateStoreFailure(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := newCaller(t, ca, pki.Identity{Kind: pki.KindOperator, Name: "ada"}, x509.ExtKeyUsageClientAuth)
	a := &Authenticator{Policy: testPolicy, Store: &operatorStore{err: errors.New("disk I/O error")}}
	called := false
	_, err = a.Unary()(c.ctx, nil, &grpc.UnaryServerInfo{FullMethod: viewerMethod}, func(context.Context, any) (any, error) {
		called = true
		return nil, nil
	})
	if err == nil || called {
		t.Fatalf("a store failure let the call through (err %v, handler called %v)", err, called)
	}
}

func TestStreamInterceptorDenies(t *testing.T) {
	a := &Authenticator{Policy: testPolicy, Store: &operatorStore{}}
	called := false
	err := a.Stream()(nil, &fakeServerStream{ctx: context.Background()}, &grpc.StreamServerInfo{FullMethod: unknownMethod},
		func(any, grpc.ServerStream) error {
			called = true
			return nil
		})
	if status.Code(err) != codes.Unauthenticated || called {
		t.Fatalf("stream to an unknown method without a certificate: %v, handler called %v", err, called)
	}
}

type fakeServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *fakeServerStream) Context() context.Context { return s.ctx }
