package operator

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// maxAttestPolicyBytes bounds a policy file.
const maxAttestPolicyBytes = 256 << 10

// attestPolicyInfo converts a stored policy to its wire form.
func attestPolicyInfo(p *store.AttestPolicy, pol *attest.Policy) *operatorv1.AttestPolicyInfo {
	info := &operatorv1.AttestPolicyInfo{Version: p.Version, PolicyYaml: p.YAML, Source: p.Source, SetBy: p.SetBy, SetAt: apiview.Timestamp(p.SetAt)}
	if pol != nil {
		info.AllowsIid, info.StsRules = pol.IID != nil, uint32(len(pol.STS)) //nolint:gosec // G115: a policy file holds far fewer rules
	}
	return info
}

// SetAttestPolicy implements operatorv1.OperatorServiceServer.
func (s *Service) SetAttestPolicy(ctx context.Context, req *operatorv1.SetAttestPolicyRequest) (*operatorv1.SetAttestPolicyResponse, error) {
	if len(req.GetPolicyYaml()) > maxAttestPolicyBytes {
		return nil, status.Errorf(codes.InvalidArgument, "the attestation policy is %d bytes; the limit is %d", len(req.GetPolicyYaml()), maxAttestPolicyBytes)
	}
	name := req.GetFileName()
	if name == "" {
		name = "policy"
	}
	// Security-critical: only a policy that validates is stored, so no
	// controller of the cluster ever loads one it must refuse.
	pol, err := attest.ParsePolicy(name, req.GetPolicyYaml())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the attestation policy is not valid: %v", err)
	}
	me := caller(ctx)
	p := &store.AttestPolicy{YAML: req.GetPolicyYaml(), Source: name, SetBy: "operator:" + me.Name, SetAt: s.cfg.Clock()}
	if err := s.cfg.Store.SetAttestPolicy(ctx, p); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the attestation policy")
	}
	// This controller enforces it at once; the others at their next read.
	if s.cfg.Attest != nil {
		if err := s.cfg.Attest.SetPolicy(p.Version, pol); err != nil {
			s.cfg.Logger.Warn("the stored attestation policy could not be put in force here", "policy_version", p.Version, "error", err)
		}
	}
	s.cfg.Audit(ctx, "operator:"+me.Name, "attest.policy.set", name, map[string]any{"version": p.Version, "allows_iid": pol.IID != nil,
		"sts_rules": len(pol.STS), "bytes": len(p.YAML)})
	return &operatorv1.SetAttestPolicyResponse{Policy: attestPolicyInfo(p, pol)}, nil
}

// GetAttestPolicy implements operatorv1.OperatorServiceServer.
func (s *Service) GetAttestPolicy(ctx context.Context, _ *operatorv1.GetAttestPolicyRequest) (*operatorv1.GetAttestPolicyResponse, error) {
	p, err := s.cfg.Store.GetAttestPolicy(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return &operatorv1.GetAttestPolicyResponse{}, nil
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the attestation policy")
	}
	pol, _ := attest.ParsePolicy(p.Source, p.YAML)
	return &operatorv1.GetAttestPolicyResponse{Policy: attestPolicyInfo(p, pol)}, nil
}
