package cases

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Policy is who may call which CaseService method.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.CaseService_ListCases_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.CaseService_GetCase_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.CaseService_GetReport_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.CaseService_CreateCase_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.CaseService_AddNote_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.CaseService_SetPhase_FullMethodName:   operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.CaseService_CloseCase_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.CaseService_SendEvent_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
}

// EventSender ingests a finding event the way the events endpoint does;
// the intake implements it.
type EventSender interface {
	// SendEvent ingests one EventBridge event on behalf of actor.
	SendEvent(ctx context.Context, actor string, event []byte) (*operatorv1.SendEventResponse, error)
}

// Server implements operatorv1.CaseServiceServer.
type Server struct {
	operatorv1.UnimplementedCaseServiceServer
	cases  *Service
	events EventSender
}

// NewServer returns the CaseService; events may be set later with
// SetEventSender.
func NewServer(s *Service, events EventSender) *Server {
	return &Server{cases: s, events: events}
}

// SetEventSender sets what SendEvent delegates to.
func (s *Server) SetEventSender(e EventSender) { s.events = e }

func caller(ctx context.Context) string {
	if o, ok := auth.OperatorFrom(ctx); ok {
		return o.Name
	}
	return "unknown"
}

// rpcError maps service errors to status errors: the case errors here,
// the rest through rpcerr (a store failure is Internal, its cause logged).
func (s *Server) rpcError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrClosed), errors.Is(err, ErrActiveWork):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return rpcerr.Error(ctx, s.cases.cfg.Logger, err, "")
}

// ListCases implements operatorv1.CaseServiceServer.
func (s *Server) ListCases(ctx context.Context, req *operatorv1.ListCasesRequest) (*operatorv1.ListCasesResponse, error) {
	cs, err := s.cases.List(ctx, ListOptions{IncludeClosed: req.GetIncludeClosed(), Limit: int(min(req.GetLimit(), 1000))})
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	resp := &operatorv1.ListCasesResponse{}
	for _, c := range cs {
		resp.Cases = append(resp.Cases, CaseProto(c))
	}
	return resp, nil
}

// GetCase implements operatorv1.CaseServiceServer.
func (s *Server) GetCase(ctx context.Context, req *operatorv1.GetCaseRequest) (*operatorv1.GetCaseResponse, error) {
	c, err := s.cases.Get(ctx, req.GetCaseId())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	fs, err := s.cases.Findings(ctx, c.ID)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	tl, err := s.cases.Timeline(ctx, c.ID)
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	resp := &operatorv1.GetCaseResponse{Case: CaseProto(c)}
	for _, f := range fs {
		resp.Findings = append(resp.Findings, FindingProto(f))
	}
	for _, e := range tl {
		resp.Timeline = append(resp.Timeline, EntryProto(e))
	}
	return resp, nil
}

// CreateCase implements operatorv1.CaseServiceServer.
func (s *Server) CreateCase(ctx context.Context, req *operatorv1.CreateCaseRequest) (*operatorv1.CreateCaseResponse, error) {
	c, err := s.cases.Create(ctx, NewCase{Title: req.GetTitle(), Note: req.GetNote(), CreatedBy: caller(ctx)})
	if err != nil {
		if strings.Contains(err.Error(), "title") || strings.Contains(err.Error(), "note") {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.CreateCaseResponse{Case: CaseProto(c)}, nil
}

// AddNote implements operatorv1.CaseServiceServer.
func (s *Server) AddNote(ctx context.Context, req *operatorv1.AddNoteRequest) (*operatorv1.AddNoteResponse, error) {
	if t := strings.TrimSpace(req.GetText()); t == "" || len(t) > MaxNote {
		return nil, status.Errorf(codes.InvalidArgument, "a note must have text, at most %d bytes", MaxNote)
	}
	e, err := s.cases.AddNote(ctx, req.GetCaseId(), caller(ctx), req.GetText())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.AddNoteResponse{Entry: EntryProto(e)}, nil
}

// SetPhase implements operatorv1.CaseServiceServer.
func (s *Server) SetPhase(ctx context.Context, req *operatorv1.SetPhaseRequest) (*operatorv1.SetPhaseResponse, error) {
	phase := PhaseFromProto(req.GetPhase())
	if phase == "" {
		return nil, status.Errorf(codes.InvalidArgument, "name a phase: %s", phaseList())
	}
	if len(req.GetReason()) > MaxNote {
		return nil, status.Errorf(codes.InvalidArgument, "the reason is longer than %d bytes", MaxNote)
	}
	c, err := s.cases.SetPhase(ctx, req.GetCaseId(), phase, caller(ctx), req.GetReason())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.SetPhaseResponse{Case: CaseProto(c)}, nil
}

// CloseCase implements operatorv1.CaseServiceServer.
func (s *Server) CloseCase(ctx context.Context, req *operatorv1.CloseCaseRequest) (*operatorv1.CloseCaseResponse, error) {
	if len(req.GetReason()) > MaxNote {
		return nil, status.Errorf(codes.InvalidArgument, "the reason is longer than %d bytes", MaxNote)
	}
	c, err := s.cases.Close(ctx, req.GetCaseId(), caller(ctx), req.GetReason())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	return &operatorv1.CloseCaseResponse{Case: CaseProto(c)}, nil
}

// GetReport implements operatorv1.CaseServiceServer.
func (s *Server) GetReport(ctx context.Context, req *operatorv1.GetReportRequest) (*operatorv1.GetReportResponse, error) {
	f := FormatMarkdown
	switch req.GetFormat() {
	case operatorv1.ReportFormat_REPORT_FORMAT_HTML:
		f = FormatHTML
	case operatorv1.ReportFormat_REPORT_FORMAT_JSON:
		f = FormatJSON
	}
	r, err := s.cases.Report(ctx, req.GetCaseId())
	if err != nil {
		return nil, s.rpcError(ctx, err)
	}
	var b bytes.Buffer
	if err := r.Render(&b, f); err != nil {
		return nil, status.Errorf(codes.Internal, "rendering the report: %v", err)
	}
	return &operatorv1.GetReportResponse{Content: b.Bytes(), ContentType: f.ContentType()}, nil
}

// SendEvent implements operatorv1.CaseServiceServer.
func (s *Server) SendEvent(ctx context.Context, req *operatorv1.SendEventRequest) (*operatorv1.SendEventResponse, error) {
	if s.events == nil {
		return nil, status.Error(codes.Unavailable, "this controller does not take findings")
	}
	return s.events.SendEvent(ctx, "operator:"+caller(ctx), req.GetEventJson())
}

// PhaseProto converts a phase for the API.
func PhaseProto(p playbook.Phase) operatorv1.IncidentPhase {
	switch p {
	case playbook.PhaseDetect:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_DETECT
	case playbook.PhaseAnalyze:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_ANALYZE
	case playbook.PhaseContain:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_CONTAIN
	case playbook.PhaseEradicate:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_ERADICATE
	case playbook.PhaseRecover:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_RECOVER
	case playbook.PhasePostIncident:
		return operatorv1.IncidentPhase_INCIDENT_PHASE_POST_INCIDENT
	}
	return operatorv1.IncidentPhase_INCIDENT_PHASE_UNSPECIFIED
}

// PhaseFromProto converts an API phase; "" for unspecified.
func PhaseFromProto(p operatorv1.IncidentPhase) playbook.Phase {
	for _, ph := range playbook.Phases {
		if PhaseProto(ph) == p {
			return ph
		}
	}
	return ""
}

// PhaseName is the phase's lower-case name, as the CLI shows it.
func PhaseName(p operatorv1.IncidentPhase) string {
	return string(PhaseFromProto(p))
}

// CaseProto converts a case for the API.
func CaseProto(c *Case) *operatorv1.Case {
	out := &operatorv1.Case{Id: c.ID, Title: c.Title, Phase: PhaseProto(c.Phase), Severity: c.Severity, SeverityLabel: c.SeverityLabel(),
		Resource: c.Resource, CreatedBy: c.CreatedBy, CreatedAt: apiview.Timestamp(c.CreatedAt), ClosedBy: c.ClosedBy, ClosedAt: apiview.Timestamp(c.ClosedAt),
		Findings: uint32(c.Findings), Contained: c.Contained(), Status: operatorv1.CaseStatus_CASE_STATUS_OPEN}
	if c.Status == StatusClosed {
		out.Status = operatorv1.CaseStatus_CASE_STATUS_CLOSED
	}
	t := c.Timings
	pt := &operatorv1.CaseTimings{FirstSeen: apiview.Timestamp(t.FirstSeen), DetectedAt: apiview.Timestamp(t.DetectedAt), ContainedAt: apiview.Timestamp(t.ContainedAt),
		EradicatedAt: apiview.Timestamp(t.EradicatedAt), RecoveredAt: apiview.Timestamp(t.RecoveredAt)}
	if d, ok := t.TimeToDetect(); ok {
		pt.TimeToDetect = durationpb.New(d)
	}
	if d, ok := t.TimeToContain(); ok {
		pt.TimeToContain = durationpb.New(d)
	}
	if d, ok := t.TimeToEradicate(); ok {
		pt.TimeToEradicate = durationpb.New(d)
	}
	if d, ok := t.TimeToRecover(); ok {
		pt.TimeToRecover = durationpb.New(d)
	}
	out.Timings = pt
	return out
}

// FindingProto converts a recorded finding for the API.
func FindingProto(f *FindingRecord) *operatorv1.CaseFinding {
	ff := f.Finding
	fj, _ := json.Marshal(ff)
	return &operatorv1.CaseFinding{Id: ff.ID, Source: string(ff.Source), Type: ff.Type, Title: ff.Title, Severity: ff.Severity,
		SeverityLabel: ff.SeverityLabel, Account: ff.Account, Region: ff.Region, Resource: f.Resource, FirstSeen: apiview.Timestamp(ff.FirstSeen),
		UpdatedAt: apiview.Timestamp(ff.UpdatedAt), ReceivedAt: apiview.Timestamp(f.ReceivedAt), Rule: f.Rule, PlaybookRunId: f.PlaybookRunID, FindingJson: fj}
}

var kinds = map[Kind]operatorv1.TimelineKind{
	KindCase: operatorv1.TimelineKind_TIMELINE_KIND_CASE, KindFinding: operatorv1.TimelineKind_TIMELINE_KIND_FINDING,
	KindPhase: operatorv1.TimelineKind_TIMELINE_KIND_PHASE, KindPlaybook: operatorv1.TimelineKind_TIMELINE_KIND_PLAYBOOK,
	KindStep: operatorv1.TimelineKind_TIMELINE_KIND_STEP, KindRollback: operatorv1.TimelineKind_TIMELINE_KIND_ROLLBACK,
	KindApproval: operatorv1.TimelineKind_TIMELINE_KIND_APPROVAL, KindEvidence: operatorv1.TimelineKind_TIMELINE_KIND_EVIDENCE,
	KindNote: operatorv1.TimelineKind_TIMELINE_KIND_NOTE, KindRun: operatorv1.TimelineKind_TIMELINE_KIND_RUN,
}

// KindName is a timeline kind's lower-case name, as the CLI shows it.
func KindName(k operatorv1.TimelineKind) string {
	for name, v := range kinds {
		if v == k {
			return string(name)
		}
	}
	return "unknown"
}

// EntryProto converts a timeline entry for the API.
func EntryProto(e *Entry) *operatorv1.TimelineEntry {
	return &operatorv1.TimelineEntry{Seq: uint64(max(e.Seq, 0)), At: apiview.Timestamp(e.At), Kind: kinds[e.Kind], Phase: PhaseProto(e.Phase), Status: e.Status,
		Actor: e.Actor, Summary: e.Summary, PlaybookRunId: e.PlaybookRunID, StepId: e.StepID, RunId: e.RunID, FindingId: e.FindingID,
		EvidenceIds: e.EvidenceIDs, DetailJson: e.Detail}
}
