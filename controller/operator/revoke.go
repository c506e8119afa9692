package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// maxRevokeAgents bounds one RevokeAgents or ForgetAgents call.
const maxRevokeAgents = 1000

// tokenInfo converts a stored token to its wire form, without the hash.
func tokenInfo(t *store.JoinToken) *operatorv1.JoinTokenInfo {
	return &operatorv1.JoinTokenInfo{Id: t.ID(), Role: apiview.ParseAgentRole(t.Role), Labels: t.Labels, Uses: uint32(t.Uses), UsesLeft: uint32(max(t.UsesLeft, 0)),
		ExpiresAt: apiview.Timestamp(t.ExpiresAt), CreatedBy: t.CreatedBy, CreatedAt: apiview.Timestamp(t.CreatedAt), Revoked: t.Revoked}
}

// ListJoinTokens implements operatorv1.OperatorServiceServer.
func (s *Service) ListJoinTokens(ctx context.Context, _ *operatorv1.ListJoinTokensRequest) (*operatorv1.ListJoinTokensResponse, error) {
	all, err := s.cfg.Store.ListJoinTokens(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "listing join tokens")
	}
	resp := &operatorv1.ListJoinTokensResponse{}
	for _, t := range all {
		resp.Tokens = append(resp.Tokens, tokenInfo(t))
	}
	return resp, nil
}

// RevokeJoinToken implements operatorv1.OperatorServiceServer.
func (s *Service) RevokeJoinToken(ctx context.Context, req *operatorv1.RevokeJoinTokenRequest) (*operatorv1.RevokeJoinTokenResponse, error) {
	t, err := s.cfg.Store.RevokeJoinToken(ctx, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "join token %q not found: `firebreak token list` shows the ids", req.GetId())
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "revoking the join token")
	}
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "token.revoke", t.ID(), map[string]any{"role": t.Role, "uses_left": t.UsesLeft})
	return &operatorv1.RevokeJoinTokenResponse{Token: tokenInfo(t)}, nil
}

// knownOperator returns the named operator or a precise refusal.
func (s *Service) knownOperator(ctx context.Context, name string) (*store.Operator, error) {
	if !operatorNameRE.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "operator name %q is not valid: lower-case letters, digits, . _ -, starting with a letter", name)
	}
	o, err := s.cfg.Store.GetOperator(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "operator %q not found", name)
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "looking up the operator")
	}
	return o, nil
}

// closeStreams ends the open streams of an operator except those on the
// certificate serial keep ("" for all).
func (s *Service) closeStreams(name, keep string) uint32 {
	if s.cfg.Streams == nil {
		return 0
	}
	return uint32(s.cfg.Streams.Close(name, keep, fmt.Errorf("%w (operator %s)", auth.ErrCredentialRevoked, name)))
}

// RevokeOperator implements operatorv1.OperatorServiceServer.
func (s *Service) RevokeOperator(ctx context.Context, req *operatorv1.RevokeOperatorRequest) (*operatorv1.RevokeOperatorResponse, error) {
	o, err := s.knownOperator(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	me := caller(ctx)
	// Security-critical: an admin cannot lock everyone out by revoking
	// the credential it is using; another admin must do it.
	if o.Name == me.Name {
		return nil, status.Errorf(codes.FailedPrecondition, "operator %q cannot revoke its own credential: ask another admin", o.Name)
	}
	o.Revoked = true
	if err := s.cfg.Store.PutOperator(ctx, o); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "revoking the operator")
	}
	closed := s.closeStreams(o.Name, "")
	s.cfg.Audit(ctx, "operator:"+me.Name, "operator.revoke", o.Name, map[string]any{"cert_serial": o.CertSerial, "closed_streams": closed})
	return &operatorv1.RevokeOperatorResponse{Name: o.Name, ClosedStreams: closed}, nil
}

// RotateOperator implements operatorv1.OperatorServiceServer.
func (s *Service) RotateOperator(ctx context.Context, req *operatorv1.RotateOperatorRequest) (*operatorv1.RotateOperatorResponse, error) {
	o, err := s.knownOperator(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	creds, serial, err := IssueCreds(s.cfg.CA, o.Name, o.Role, s.cfg.OperatorCertTTL, s.cfg.Advertise)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issuing the credential: %v", err)
	}
	old := o.CertSerial
	// A rotated credential is a working one again, even after a revoke.
	o.CertSerial, o.Revoked = serial, false
	if err := s.cfg.Store.PutOperator(ctx, o); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the new credential")
	}
	closed := s.closeStreams(o.Name, serial)
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "operator.rotate", o.Name, map[string]any{"old_serial": old, "cert_serial": serial,
		"role": auth.RoleName(o.Role), "closed_streams": closed})
	b, _ := json.MarshalIndent(creds, "", "  ")
	return &operatorv1.RotateOperatorResponse{CredsJson: b, CertSerial: serial, ClosedStreams: closed}, nil
}

// RevokeAgents implements operatorv1.OperatorServiceServer. Every id is
// checked before any agent is revoked, so a typo leaves nothing half-done.
func (s *Service) RevokeAgents(ctx context.Context, req *operatorv1.RevokeAgentsRequest) (*operatorv1.RevokeAgentsResponse, error) {
	ids := req.GetIds()
	if len(ids) == 0 {
		return nil, status.Error(codes.InvalidArgument, "name at least one agent id to revoke")
	}
	if len(ids) > maxRevokeAgents {
		return nil, status.Errorf(codes.InvalidArgument, "%d agents in one call; the limit is %d", len(ids), maxRevokeAgents)
	}
	if len(req.GetReason()) > 1024 {
		return nil, status.Error(codes.InvalidArgument, "--reason is longer than 1024 characters")
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return nil, status.Errorf(codes.InvalidArgument, "agent %q is named twice", id)
		}
		seen[id] = true
		if _, err := s.cfg.Store.GetAgent(ctx, id); errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "agent %q is not enrolled: `firebreak agents list` shows the ids", id)
		} else if err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("looking up agent %s", id))
		}
	}
	me := caller(ctx)
	resp := &operatorv1.RevokeAgentsResponse{}
	for _, id := range ids {
		closed := s.cfg.Fleet.Connected(id)
		a, err := s.cfg.Fleet.Revoke(ctx, id, req.GetReason())
		if err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("revoking agent %s (agents before it in the list are revoked)", id))
		}
		s.cfg.Dispatcher.AgentRevoked(id, req.GetReason())
		s.cfg.Audit(ctx, "operator:"+me.Name, "agent.revoke", id, map[string]any{"hostname": a.Hostname, "cert_serial": a.CertSerial,
			"reason": req.GetReason(), "stream_closed": closed})
		resp.Agents = append(resp.Agents, &operatorv1.RevokedAgent{Id: id, Hostname: a.Hostname, CertSerial: a.CertSerial, StreamClosed: closed})
	}
	return resp, nil
}

// ForgetAgents implements operatorv1.OperatorServiceServer. Every agent is
// checked before any is forgotten, so one that may still be in use leaves
// the others as they were.
func (s *Service) ForgetAgents(ctx context.Context, req *operatorv1.ForgetAgentsRequest) (*operatorv1.ForgetAgentsResponse, error) {
	ids := req.GetIds()
	if len(ids) == 0 {
		return nil, status.Error(codes.InvalidArgument, "name at least one agent id to forget")
	}
	if len(ids) > maxRevokeAgents {
		return nil, status.Errorf(codes.InvalidArgument, "%d agents in one call; the limit is %d", len(ids), maxRevokeAgents)
	}
	if len(req.GetReason()) > 1024 {
		return nil, status.Error(codes.InvalidArgument, "--reason is longer than 1024 characters")
	}
	type forget struct {
		a   *store.Agent
		why string
	}
	var todo []forget
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return nil, status.Errorf(codes.InvalidArgument, "agent %q is named twice", id)
		}
		seen[id] = true
		a, err := s.cfg.Store.GetAgent(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.NotFound, "agent %q is not enrolled: `firebreak agents list --revoked` shows the ids", id)
		} else if err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("looking up agent %s", id))
		}
		// Security-critical: an agent that may still be in use is not
		// forgotten, which would let its instance enroll again unrevoked.
		why, err := s.cfg.Fleet.Forgettable(a)
		if err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
		}
		todo = append(todo, forget{a, why})
	}
	me := caller(ctx)
	resp := &operatorv1.ForgetAgentsResponse{}
	for _, f := range todo {
		if err := s.cfg.Fleet.Forget(ctx, f.a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("forgetting agent %s (agents before it in the list are forgotten)", f.a.ID))
		}
		s.cfg.Audit(ctx, "operator:"+me.Name, "agent.forget", f.a.ID, map[string]any{"hostname": f.a.Hostname, "why": f.why,
			"instance_id": f.a.Facts.GetInstanceId(), "account": f.a.Facts.GetAccount(), "cert_serial": f.a.CertSerial,
			"revoke_reason": f.a.RevokeReason, "reason": req.GetReason()})
		resp.Agents = append(resp.Agents, &operatorv1.ForgottenAgent{Id: f.a.ID, Hostname: f.a.Hostname, Why: f.why})
	}
	return resp, nil
}
