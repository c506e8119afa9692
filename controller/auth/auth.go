// Package auth authenticates every controller RPC by the caller's client
// certificate and authorises operators by role.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Policy maps a full gRPC method name to who may call it.
type Policy struct {
	// Open methods need no certificate (enrollment, health).
	Open map[string]bool
	// Agent methods need an agent certificate.
	Agent map[string]bool
	// Operator methods need an operator certificate and at least the role.
	Operator map[string]operatorv1.OperatorRole
	// Controller methods need a controller certificate: the routing
	// between the controllers of a cluster (route.PeerPolicy).
	Controller map[string]bool
}

type ctxKey int

const (
	identityKey ctxKey = iota
	operatorKey
)

// IdentityFrom returns the caller's verified certificate identity.
func IdentityFrom(ctx context.Context) (pki.Identity, bool) {
	id, ok := ctx.Value(identityKey).(pki.Identity)
	return id, ok
}

// OperatorFrom returns the calling operator, for operator methods.
func OperatorFrom(ctx context.Context) (*store.Operator, bool) {
	o, ok := ctx.Value(operatorKey).(*store.Operator)
	return o, ok
}

// WithOperator returns ctx carrying an operator, for in-process callers
// (the lab and playbook engine act as a named system operator).
func WithOperator(ctx context.Context, o *store.Operator) context.Context {
	return context.WithValue(ctx, operatorKey, o)
}

// ErrCredentialRevoked is the cause given to streams closed because their
// operator credential was revoked or replaced.
var ErrCredentialRevoked = errors.New("the operator credential was revoked or replaced; the stream is closed")

// Authenticator checks callers against the policy and the store.
type Authenticator struct {
	Policy Policy
	Store  store.Store
	// Streams, when set, records every open operator stream so that a
	// revoked or replaced credential's streams are closed at once.
	Streams *Streams
}

func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if a.Policy.Open[method] {
		if id, err := peerIdentity(ctx); err == nil {
			ctx = context.WithValue(ctx, identityKey, id)
		}
		return ctx, nil
	}
	id, err := peerIdentity(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	ctx = context.WithValue(ctx, identityKey, id)
	switch {
	case a.Policy.Agent[method]:
		// Security-critical: an operator certificate must not drive the
		// agent protocol, nor an agent certificate the operator API.
		if id.Kind != pki.KindAgent {
			return nil, status.Errorf(codes.PermissionDenied, "%s is for agents; the caller is %s %q", method, id.Kind, id.Name)
		}
		return ctx, nil
	case a.Policy.Controller[method]:
		// Security-critical: only a controller of the cluster (a
		// certificate the cluster's CA issued to a controller) routes
		// tasks and reports; an agent or operator certificate never does.
		if id.Kind != pki.KindController {
			return nil, status.Errorf(codes.PermissionDenied, "%s is for the controllers of the cluster; the caller is %s %q", method, id.Kind, id.Name)
		}
		return ctx, nil
	case a.Policy.Operator[method] != operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED:
		if id.Kind != pki.KindOperator {
			return nil, status.Errorf(codes.PermissionDenied, "%s is for operators; the caller is %s %q", method, id.Kind, id.Name)
		}
		op, err := OperatorForCredential(ctx, a.Store, id.Name, id.Serial)
		if err != nil {
			return nil, err
		}
		if err := CheckRole(a.Policy.Operator, op, method); err != nil {
			return nil, err
		}
		return context.WithValue(ctx, operatorKey, op), nil
	}
	// Security-critical: default deny for any method the policy does not name.
	return nil, status.Errorf(codes.PermissionDenied, "method %s is not permitted", method)
}

// OperatorForCredential returns the operator a credential names, refusing
// an unknown operator and a revoked or replaced credential. The operator
// API and the console's link sessions (bound to the credential that asked
// for the link) both check a caller with it.
func OperatorForCredential(ctx context.Context, st store.Store, name, serial string) (*store.Operator, error) {
	op, err := st.GetOperator(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.PermissionDenied, "operator %q is not known to this controller", name)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "looking up the operator: %v", err)
	}
	// Security-critical: a revoked or re-issued credential stops working
	// at once, even though its certificate has not expired.
	if op.Revoked || op.CertSerial != serial {
		return nil, status.Errorf(codes.PermissionDenied, "the credential of operator %q has been revoked or replaced", name)
	}
	return op, nil
}

// CheckRole checks that op may call method under the operator policy. The
// gRPC interceptors and the web console both authorise with it, so a
// method needs the same role whichever way it is reached.
func CheckRole(policy map[string]operatorv1.OperatorRole, op *store.Operator, method string) error {
	need := policy[method]
	// Security-critical: default deny for any method the policy does not name.
	if need == operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED {
		return status.Errorf(codes.PermissionDenied, "method %s is not permitted", method)
	}
	// Security-critical: a role below the method's is refused.
	if op.Role < need {
		return status.Errorf(codes.PermissionDenied, "operator %q is a %s; %s needs %s", op.Name, RoleName(op.Role), shortMethod(method), RoleName(need))
	}
	return nil
}

func shortMethod(m string) string {
	if i := strings.LastIndex(m, "/"); i >= 0 {
		return m[i+1:]
	}
	return m
}

// RoleName is the lower-case name of an operator role.
func RoleName(r operatorv1.OperatorRole) string {
	return apiview.EnumName(r)
}

// ParseRole parses viewer, responder, approver or admin.
func ParseRole(s string) (operatorv1.OperatorRole, bool) {
	v, ok := operatorv1.OperatorRole_value["OPERATOR_ROLE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, false
	}
	return operatorv1.OperatorRole(v), true
}

func peerIdentity(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, errors.New("no peer information")
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, errors.New("the connection is not TLS")
	}
	chains := tlsInfo.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return pki.Identity{}, errors.New("no client certificate: present an operator credential (--creds) or an agent certificate")
	}
	leaf := chains[0][0]
	if !hasClientAuth(leaf) {
		return pki.Identity{}, errors.New("the certificate is not a client certificate")
	}
	return pki.IdentityFromCert(leaf)
}

func hasClientAuth(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth {
			return true
		}
	}
	return false
}

// Unary is the unary server interceptor.
func (a *Authenticator) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream is the stream server interceptor.
func (a *Authenticator) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		op, isOperator := OperatorFrom(ctx)
		if a.Streams == nil || !isOperator {
			return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		}
		id, _ := IdentityFrom(ctx)
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		defer a.Streams.add(op.Name, id.Serial, cancel)()
		err = handler(srv, &wrappedStream{ServerStream: ss, ctx: sctx})
		// Security-critical: a stream closed by a revocation ends with the
		// reason, not as a cancellation the client might retry quietly.
		if cause := context.Cause(sctx); errors.Is(cause, ErrCredentialRevoked) {
			return status.Error(codes.PermissionDenied, cause.Error())
		}
		return err
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
