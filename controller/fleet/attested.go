package fleet

import (
	"context"
	"errors"
	"maps"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// enrollAttested enrols an agent that proves its AWS identity instead of
// presenting a join token. Who the agent is (account, region, instance,
// role, labels) comes from the proof as the verifier read it, never from
// the agent's facts.
func (s *Service) enrollAttested(ctx context.Context, src string, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	// A copy: the attested identity and labels are written into it, and
	// the request stays as the agent sent it.
	facts := proto.CloneOf(req.GetFacts())
	if facts == nil {
		facts = &agentv1.AgentFacts{}
	}
	if req.GetJoinToken() != "" || (req.GetAwsIid() != nil && req.GetAwsSts() != nil) {
		s.guard.Refused(ctx, src, facts.GetHostname(), "several join proofs")
		return nil, status.Error(codes.InvalidArgument, "enrollment refused: give one join proof (a join token, an instance identity document or a signed STS request)")
	}
	if s.cfg.Attest == nil {
		s.guard.Refused(ctx, src, facts.GetHostname(), "attestation not configured")
		return nil, status.Error(codes.FailedPrecondition, "enrollment refused: this controller accepts no AWS attestation (start it with --attest-policy)")
	}
	var (
		who     *attest.Identity
		refusal *attest.Refusal
	)
	if req.GetAwsIid() != nil {
		who, refusal = s.cfg.Attest.VerifyIID(ctx, req.GetAwsIid())
	} else {
		who, refusal = s.cfg.Attest.VerifySTS(ctx, req.GetAwsSts())
	}
	if refusal != nil {
		s.refuseAttested(ctx, src, facts.GetHostname(), refusal)
		return nil, status.Errorf(refusal.Code, "enrollment refused: %v", refusal.Err)
	}
	role := apiview.AgentRoleName(req.GetRole())
	// Security-critical: the proof decides the role. An instance document
	// makes a host agent and an STS proof a worker, whatever is asked.
	if req.GetRole() != agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED && role != who.Role {
		s.refuseAttested(ctx, src, facts.GetHostname(), &attest.Refusal{Reason: "role mismatch", Code: codes.PermissionDenied,
			Detail: map[string]any{"asked": role, "proof": who.Method}})
		return nil, status.Errorf(codes.PermissionDenied, "enrollment refused: %s attestation enrols %s agents, not %s", who.Method, who.Role, role)
	}
	now := s.cfg.Clock()
	id := ids.New("agt")
	cert, err := s.cfg.CA.IssueClient(req.GetCsrDer(), pki.Identity{Kind: pki.KindAgent, Name: id, Role: who.Role,
		Account: who.Account, Region: who.Region, InstanceID: who.InstanceID}, s.cfg.CertTTL)
	if err != nil {
		s.guard.Refused(ctx, src, facts.GetHostname(), "invalid certificate request")
		return nil, status.Errorf(codes.InvalidArgument, "enrollment refused: %v", err)
	}
	facts.InstanceId, facts.Account, facts.Region = who.InstanceID, who.Account, who.Region
	a := &store.Agent{ID: id, Role: who.Role, Hostname: facts.GetHostname(), Facts: facts, EnrolledAt: now, LastSeen: now,
		CertSerial: cert.SerialNumber.Text(16), CertNotAfter: cert.NotAfter, TokenLabels: maps.Clone(who.Labels)}
	a.Facts.Labels = mergeLabels(facts.GetLabels(), who.Labels)
	att := &store.Attestation{AgentID: id, Method: who.Method, Subject: who.Subject, InstanceID: who.InstanceID,
		Account: who.Account, Region: who.Region, At: now}
	// Security-critical: one instance, one agent. The claim and the agent
	// are stored together, so two enrollments racing with one document
	// cannot both win.
	err = s.cfg.Store.EnrollAttested(ctx, a, att)
	var taken *store.InstanceEnrolledError
	if errors.As(err, &taken) {
		reason := attest.ReasonStolenDocument
		if taken.Revoked {
			reason = "instance of a revoked agent"
		}
		s.refuseAttested(ctx, src, facts.GetHostname(), &attest.Refusal{Reason: reason, Code: codes.AlreadyExists, Err: taken,
			Detail: map[string]any{"instance_id": who.InstanceID, "account": who.Account, "enrolled_agent": taken.AgentID}})
		return nil, status.Errorf(codes.AlreadyExists, "enrollment refused: %v", taken)
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "enrollment: storing the agent")
	}
	s.remember(a)
	s.cfg.Audit(ctx, "agent:"+id, "agent.enroll", id, map[string]any{"hostname": facts.GetHostname(), "role": who.Role,
		"attestation": who.Method, "subject": who.Subject, "account": who.Account, "region": who.Region,
		"instance_id": who.InstanceID, "cert_serial": a.CertSerial, "labels": who.Labels, "source": src})
	s.cfg.Logger.Info("agent enrolled", "agent", id, "hostname", facts.GetHostname(), "role", who.Role, "attestation", who.Method)
	return &agentv1.EnrollResponse{AgentId: id, CertificateDer: cert.Raw, CaDer: s.cfg.CA.Cert.Raw,
		TaskSigningKey: s.cfg.Signer.PublicKey(), Labels: who.Labels}, nil
}

// refuseAttested records a refused attested enrollment. A proof that does
// not verify is anyone's to send, so it only counts against the source's
// budget (the guard writes the first of a window and then a summary); a
// refusal of a proof AWS signed is audited on its own, with its detail.
func (s *Service) refuseAttested(ctx context.Context, src, hostname string, r *attest.Refusal) {
	s.guard.Refused(ctx, src, hostname, r.Reason)
	if r.Reason == attest.ReasonMalformed || r.Reason == attest.ReasonSignature || r.Reason == attest.ReasonSTSRequest {
		return
	}
	detail := map[string]any{"reason": r.Reason, "source": src, "hostname": hostname}
	maps.Copy(detail, r.Detail)
	if r.Err != nil {
		detail["error"] = r.Err.Error()
	}
	s.cfg.Logger.Warn("attested enrollment refused", "reason", r.Reason, "source", src)
	s.cfg.Audit(ctx, "system", "agent.attest_refused", hostname, detail)
}

// remember puts a stored agent into the mirror.
func (s *Service) remember(a *store.Agent) {
	c := *a
	s.mu.Lock()
	if s.known == nil {
		s.known = map[string]*store.Agent{}
	}
	s.known[a.ID] = &c
	s.mu.Unlock()
}
