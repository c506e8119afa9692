package eradicate

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Policy is who may call which EradicationService method.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.EradicationService_CreatePlan_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.EradicationService_GetPlan_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	// Recording a verification moves the case to its eradicate phase.
	operatorv1.EradicationService_RecordVerification_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
}

// Server implements operatorv1.EradicationServiceServer.
type Server struct {
	operatorv1.UnimplementedEradicationServiceServer
	svc *Service
}

// NewServer returns the EradicationService.
func NewServer(s *Service) *Server { return &Server{svc: s} }

func (s *Server) rpcError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, cases.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrNoScope), errors.Is(err, ErrNotVerification), errors.Is(err, ErrOperation):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return rpcerr.Error(ctx, s.svc.cfg.Logger, err, "")
}

// CreatePlan implements operatorv1.EradicationServiceServer.
func (s *Server) CreatePlan(ctx context.Context, req *operatorv1.CreatePlanRequest) (*operatorv1.CreatePlanResponse, error) {
	if strings.TrimSpace(req.GetCaseId()) == "" {
		return nil, status.Error(codes.InvalidArgument, "case_id is required")
	}
	actor := "unknown"
	if o, ok := auth.OperatorFrom(ctx); ok {
		actor = o.Name
	}
	p, err := s.svc.Plan(ctx, req.GetCaseId(), actor, eradplan.Options{TerminateInstances: req.GetTerminateInstances()})
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.CreatePlanResponse{PlanJson: doc}, nil
}

// GetPlan implements operatorv1.EradicationServiceServer.
func (s *Server) GetPlan(ctx context.Context, req *operatorv1.GetPlanRequest) (*operatorv1.GetPlanResponse, error) {
	p, err := s.svc.Get(ctx, req.GetPlanId())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.GetPlanResponse{PlanJson: doc}, nil
}

// RecordVerification implements operatorv1.EradicationServiceServer.
func (s *Server) RecordVerification(ctx context.Context, req *operatorv1.RecordVerificationRequest) (*operatorv1.RecordVerificationResponse, error) {
	if !strings.HasPrefix(req.GetPlanId(), "erp-") {
		return nil, status.Errorf(codes.InvalidArgument, "plan_id %q is not an eradication plan id (erp-…)", req.GetPlanId())
	}
	if len(req.GetRunIds()) == 0 || len(req.GetRunIds()) > 1000 {
		return nil, status.Error(codes.InvalidArgument, "run_ids must name between 1 and 1000 verify runs")
	}
	actor := "unknown"
	if o, ok := auth.OperatorFrom(ctx); ok {
		actor = o.Name
	}
	v, err := s.svc.RecordVerification(ctx, req.GetPlanId(), req.GetRunIds(), actor)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	doc, err := json.Marshal(v)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.RecordVerificationResponse{VerificationJson: doc}, nil
}
