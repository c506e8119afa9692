package playbookrun

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Policy is who may call which PlaybookService method.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.PlaybookService_ListPlaybooks_FullMethodName:      operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.PlaybookService_ValidatePlaybook_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.PlaybookService_GetPlaybookRun_FullMethodName:     operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.PlaybookService_ListPlaybookRuns_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.PlaybookService_WatchPlaybookRun_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.PlaybookService_StartPlaybookRun_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.PlaybookService_CancelPlaybookRun_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.PlaybookService_ApprovePlaybookRun_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
	operatorv1.PlaybookService_RejectPlaybookRun_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
}

// Server implements operatorv1.PlaybookServiceServer.
type Server struct {
	operatorv1.UnimplementedPlaybookServiceServer
	x       *Executor
	watches *watchcap.Limiter
}

// NewServer returns the PlaybookService over an executor. Its watches are
// capped with watchcap's defaults until ShareWatchLimit.
func NewServer(x *Executor) *Server { return &Server{x: x, watches: watchcap.New(0, 0)} }

// ShareWatchLimit counts this service's watches against l, the limit the
// controller's other watch streams share.
func (s *Server) ShareWatchLimit(l *watchcap.Limiter) { s.watches = l }

func caller(ctx context.Context) string {
	if o, ok := auth.OperatorFrom(ctx); ok {
		return o.Name
	}
	return "unknown"
}

// rpcError maps executor errors to status errors.
func (s *Server) rpcError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownPlaybook), errors.Is(err, ErrCaseNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrInputs):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrSelfApproval):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrCaseClosed), errors.Is(err, ErrNotAwaiting), errors.Is(err, ErrEnded):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrNotRunning):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return rpcerr.Error(ctx, s.x.cfg.Logger, err, "")
}

// ListPlaybooks implements operatorv1.PlaybookServiceServer.
func (s *Server) ListPlaybooks(ctx context.Context, _ *operatorv1.ListPlaybooksRequest) (*operatorv1.ListPlaybooksResponse, error) {
	entries, err := s.x.cfg.Library.List()
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	// Listed problems say what the fleet cannot run now (an action no
	// connected agent offers), so the first-party actions are not filled in.
	cat, err := FleetCatalog(ctx, s.x.cfg.Actions, nil)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	resp := &operatorv1.ListPlaybooksResponse{}
	for _, e := range entries {
		info := &operatorv1.PlaybookInfo{Name: e.Name, Source: e.Source}
		if e.ParseErr != nil {
			info.Problems = problems(e.ParseErr)
		} else {
			info = PlaybookInfo(e.Playbook, e.Source)
			info.Problems = problems(playbook.Errors(playbook.Validate(e.Playbook, cat)))
		}
		resp.Playbooks = append(resp.Playbooks, info)
	}
	return resp, nil
}

// ValidatePlaybook implements operatorv1.PlaybookServiceServer.
func (s *Server) ValidatePlaybook(ctx context.Context, req *operatorv1.ValidatePlaybookRequest) (*operatorv1.ValidatePlaybookResponse, error) {
	name := req.GetFilename()
	if name == "" {
		name = "playbook.yaml"
	}
	if len(name) > 256 {
		name = name[:256]
	}
	cat, err := FleetCatalog(ctx, s.x.cfg.Actions, s.x.cfg.KnownActions)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	pb, errs := playbook.Load(name, req.GetContent(), cat)
	resp := &operatorv1.ValidatePlaybookResponse{Valid: len(errs) == 0, Problems: problems(playbook.Errors(errs))}
	if pb != nil {
		resp.Playbook = PlaybookInfo(pb, name)
	}
	return resp, nil
}

func problems(err error) []*operatorv1.PlaybookProblem {
	var es playbook.Errors
	if !errors.As(err, &es) {
		if err == nil {
			return nil
		}
		return []*operatorv1.PlaybookProblem{{Message: err.Error()}}
	}
	out := make([]*operatorv1.PlaybookProblem, 0, len(es))
	for _, e := range es {
		out = append(out, &operatorv1.PlaybookProblem{File: e.File, Line: uint32(max(e.Pos.Line, 0)), Column: uint32(max(e.Pos.Column, 0)), Message: e.Msg})
	}
	return out
}

// PlaybookInfo describes a parsed playbook for the API.
func PlaybookInfo(pb *playbook.Playbook, source string) *operatorv1.PlaybookInfo {
	info := &operatorv1.PlaybookInfo{Name: pb.Metadata.Name, Version: uint32(max(pb.Metadata.Version, 0)), Description: pb.Metadata.Description, Source: source}
	for _, in := range pb.Inputs {
		pi := &operatorv1.PlaybookInput{Name: in.Name, Type: string(in.Type), Required: in.Required, Description: in.Description}
		if in.Default != nil {
			pi.DefaultJson, _ = json.Marshal(defaultValue(in.Default))
		}
		info.Inputs = append(info.Inputs, pi)
	}
	for _, st := range pb.Steps {
		info.Steps = append(info.Steps, &operatorv1.PlaybookStepInfo{Id: st.ID, Phase: cases.PhaseProto(st.Phase), Action: st.ActionName(),
			Needs: st.Needs, Description: st.Description})
	}
	return info
}

// defaultValue is an input default as plain data.
func defaultValue(v *playbook.Value) any {
	switch v.Kind {
	case playbook.ValueLiteral:
		return v.Literal
	case playbook.ValueList:
		out := make([]any, len(v.List))
		for i, el := range v.List {
			out[i] = defaultValue(el)
		}
		return out
	case playbook.ValueMap:
		out := map[string]any{}
		for _, p := range v.Map {
			out[p.Name] = defaultValue(p.Value)
		}
		return out
	}
	return v.Text
}

// StartPlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) StartPlaybookRun(ctx context.Context, req *operatorv1.StartPlaybookRunRequest) (*operatorv1.StartPlaybookRunResponse, error) {
	inputs := make(map[string]any, len(req.GetInputs()))
	for k, v := range req.GetInputs() {
		inputs[k] = v
	}
	r, plan, err := s.x.Start(ctx, StartRequest{Playbook: req.GetPlaybook(), Inputs: inputs, CaseID: req.GetCaseId(), DryRun: req.GetDryRun(),
		Reason: req.GetReason(), CreatedBy: caller(ctx)})
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	if plan != nil {
		b, err := json.Marshal(plan)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encoding the plan: %v", err)
		}
		return &operatorv1.StartPlaybookRunResponse{Result: &operatorv1.StartPlaybookRunResponse_PlanJson{PlanJson: b}}, nil
	}
	return &operatorv1.StartPlaybookRunResponse{Result: &operatorv1.StartPlaybookRunResponse_Run{Run: RunProto(r, true)}}, nil
}

// GetPlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) GetPlaybookRun(ctx context.Context, req *operatorv1.GetPlaybookRunRequest) (*operatorv1.GetPlaybookRunResponse, error) {
	r, err := s.x.Get(ctx, req.GetPlaybookRunId())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.GetPlaybookRunResponse{Run: RunProto(r, true)}, nil
}

// ListPlaybookRuns implements operatorv1.PlaybookServiceServer.
func (s *Server) ListPlaybookRuns(ctx context.Context, req *operatorv1.ListPlaybookRunsRequest) (*operatorv1.ListPlaybookRunsResponse, error) {
	runs, err := s.x.List(ctx, ListOptions{CaseID: req.GetCaseId(), Limit: int(min(req.GetLimit(), 1000))})
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	resp := &operatorv1.ListPlaybookRunsResponse{}
	for _, r := range runs {
		resp.Runs = append(resp.Runs, RunProto(r, false))
	}
	return resp, nil
}

// WatchPlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) WatchPlaybookRun(req *operatorv1.WatchPlaybookRunRequest, stream operatorv1.PlaybookService_WatchPlaybookRunServer) error {
	ctx := stream.Context()
	release, err := s.watches.Acquire(caller(ctx))
	if err != nil {
		return err
	}
	defer release()
	snap, sub, err := s.x.Watch(ctx, req.GetPlaybookRunId())
	if err != nil {
		return s.rpcError(ctx, err)
	}
	defer s.x.Unwatch(sub)
	if err := stream.Send(&operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Snapshot{Snapshot: RunProto(snap, true)}}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-sub.C:
			if !ok {
				return nil
			}
			var m *operatorv1.WatchPlaybookRunResponse
			switch ev.Kind {
			case EventStep:
				m = &operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Step{Step: StepProto(ev.Step)}}
			case EventTask:
				m = &operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Task{Task: &operatorv1.StepTask{
					StepId: ev.StepID, Rollback: ev.Rollback, Task: ev.Task}}}
			case EventRun:
				m = &operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Run{Run: RunProto(ev.Run, false)}}
			case EventSnapshot:
				m = &operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Snapshot{Snapshot: RunProto(ev.Run, true)}}
			case EventDone:
				m = &operatorv1.WatchPlaybookRunResponse{Event: &operatorv1.WatchPlaybookRunResponse_Done{Done: RunProto(ev.Run, true)}}
			default:
				continue
			}
			if err := stream.Send(m); err != nil {
				return err
			}
			if ev.Kind == EventDone {
				return nil
			}
		}
	}
}

// ApprovePlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) ApprovePlaybookRun(ctx context.Context, req *operatorv1.ApprovePlaybookRunRequest) (*operatorv1.ApprovePlaybookRunResponse, error) {
	if len(req.GetComment()) > MaxReason {
		return nil, status.Errorf(codes.InvalidArgument, "the comment is longer than %d characters", MaxReason)
	}
	r, err := s.x.Approve(ctx, req.GetPlaybookRunId(), caller(ctx), req.GetComment())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.ApprovePlaybookRunResponse{Run: RunProto(r, true)}, nil
}

// RejectPlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) RejectPlaybookRun(ctx context.Context, req *operatorv1.RejectPlaybookRunRequest) (*operatorv1.RejectPlaybookRunResponse, error) {
	if len(req.GetComment()) > MaxReason {
		return nil, status.Errorf(codes.InvalidArgument, "the comment is longer than %d characters", MaxReason)
	}
	r, err := s.x.Reject(ctx, req.GetPlaybookRunId(), caller(ctx), req.GetComment())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.RejectPlaybookRunResponse{Run: RunProto(r, true)}, nil
}

// CancelPlaybookRun implements operatorv1.PlaybookServiceServer.
func (s *Server) CancelPlaybookRun(ctx context.Context, req *operatorv1.CancelPlaybookRunRequest) (*operatorv1.CancelPlaybookRunResponse, error) {
	if len(req.GetReason()) > MaxReason {
		return nil, status.Errorf(codes.InvalidArgument, "the reason is longer than %d characters", MaxReason)
	}
	r, err := s.x.Cancel(ctx, req.GetPlaybookRunId(), caller(ctx), req.GetReason())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.CancelPlaybookRunResponse{Run: RunProto(r, true)}, nil
}

var runStatuses = map[Status]operatorv1.PlaybookRunStatus{
	StatusAwaitingApproval: operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_AWAITING_APPROVAL,
	StatusRunning:          operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_RUNNING,
	StatusSucceeded:        operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_SUCCEEDED,
	StatusFailed:           operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_FAILED,
	StatusRolledBack:       operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_ROLLED_BACK,
	StatusRollbackFailed:   operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_ROLLBACK_FAILED,
	StatusCancelled:        operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_CANCELLED,
	StatusRejected:         operatorv1.PlaybookRunStatus_PLAYBOOK_RUN_STATUS_REJECTED,
}

var stepStatuses = map[StepStatus]operatorv1.StepStatus{
	StepPending:          operatorv1.StepStatus_STEP_STATUS_PENDING,
	StepSubmitting:       operatorv1.StepStatus_STEP_STATUS_RUNNING,
	StepAwaitingApproval: operatorv1.StepStatus_STEP_STATUS_AWAITING_APPROVAL,
	StepRunning:          operatorv1.StepStatus_STEP_STATUS_RUNNING,
	StepSucceeded:        operatorv1.StepStatus_STEP_STATUS_SUCCEEDED,
	StepFailed:           operatorv1.StepStatus_STEP_STATUS_FAILED,
	StepSkipped:          operatorv1.StepStatus_STEP_STATUS_SKIPPED,
	StepCancelled:        operatorv1.StepStatus_STEP_STATUS_CANCELLED,
}

// RunStatusName is a playbook run status's lower-case name.
func RunStatusName(s operatorv1.PlaybookRunStatus) string {
	return apiview.EnumName(s)
}

// StepStatusName is a step status's lower-case name.
func StepStatusName(s operatorv1.StepStatus) string {
	return apiview.EnumName(s)
}

// RunProto converts a playbook run for the API.
func RunProto(r *Run, withSteps bool) *operatorv1.PlaybookRun {
	inputs, _ := json.Marshal(r.Inputs)
	out := &operatorv1.PlaybookRun{Id: r.ID, Playbook: r.Playbook, Version: uint32(max(r.Version, 0)), CaseId: r.CaseID, Status: runStatuses[r.Status],
		CreatedBy: r.CreatedBy, CreatedAt: apiview.Timestamp(r.CreatedAt), StartedAt: apiview.Timestamp(r.StartedAt), FinishedAt: apiview.Timestamp(r.FinishedAt), InputsJson: inputs,
		Rule: r.Rule, Reason: r.Reason, Error: r.Error, ApprovedBy: r.ApprovedBy}
	if r.Finding != nil {
		out.FindingId = r.Finding.ID
	}
	if withSteps {
		for _, st := range r.Steps {
			out.Steps = append(out.Steps, StepProto(st))
		}
	}
	return out
}

// StepProto converts a step for the API.
func StepProto(st *Step) *operatorv1.PlaybookStep {
	out := &operatorv1.PlaybookStep{Id: st.ID, Phase: cases.PhaseProto(st.Phase), Action: st.Action, Needs: st.Needs, Status: stepStatuses[st.Status],
		RunId: st.RunID, ApprovalRequired: st.ApprovalRequired, OnFailure: string(st.OnFailure), Error: st.Error,
		StartedAt: apiview.Timestamp(st.StartedAt), FinishedAt: apiview.Timestamp(st.FinishedAt), EvidenceIds: st.EvidenceIDs()}
	if rs := st.Resolved; rs != nil {
		out.Selector, out.Accounts, out.Regions = rs.Selector, rs.Accounts, rs.Regions
		out.ParamsJson, _ = rs.ParamsJSON()
		if rs.Action != "" {
			out.Action = rs.Action
		}
	}
	if st.Outputs != nil {
		out.OutputsJson, _ = json.Marshal(st.Outputs)
	}
	if len(st.Targets) > 0 {
		c := &operatorv1.RunCounts{Targets: uint32(len(st.Targets))}
		for _, t := range st.Targets {
			apiview.CountTask(c, agentv1.TaskStatus(agentv1.TaskStatus_value["TASK_STATUS_"+strings.ToUpper(t.Status)]))
		}
		out.Counts = c
	}
	if rb := st.Rollback; rb != nil {
		p := &operatorv1.RollbackRecord{Status: stepStatuses[rb.Status], Action: rb.Action, Error: rb.Error, StartedAt: apiview.Timestamp(rb.StartedAt),
			FinishedAt: apiview.Timestamp(rb.FinishedAt)}
		for _, t := range rb.Targets {
			if t.RunID != "" {
				p.RunIds = append(p.RunIds, t.RunID)
			}
		}
		out.Rollback = p
	}
	return out
}

// runView is the dispatcher's view of a run as the executor follows it
// (nil: none).
func runView(v *dispatch.RunView) *operatorv1.Run {
	if v == nil {
		return nil
	}
	return storeview.RunWithCounts(v.Run, v.Tasks, v.Approvals, v.Counts)
}
