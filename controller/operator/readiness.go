package operator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/readiness"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/version"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// auditScanLimit bounds how much of the audit log a review reads for the
// operators' last actions.
const auditScanLimit = 200000

// evidenceProbeTimeout bounds the probe of the evidence store.
const evidenceProbeTimeout = 30 * time.Second

// Readiness implements operatorv1.OperatorServiceServer.
func (s *Service) Readiness(ctx context.Context, req *operatorv1.ReadinessRequest) (*operatorv1.ReadinessResponse, error) {
	r, err := s.ReviewReadiness(ctx, actor(ctx), req)
	if err != nil {
		return nil, err
	}
	return &operatorv1.ReadinessResponse{Report: ReadinessProto(r)}, nil
}

// ReviewReadiness runs a readiness review as who: the aws-readiness run
// over the selected accounts and regions (when accounts are known), then
// the controller's own checks. The report is stored when req.Save. The
// scheduled review (--readiness-every) calls it with the controller as
// the actor.
func (s *Service) ReviewReadiness(ctx context.Context, who runs.Actor, req *operatorv1.ReadinessRequest) (*readiness.Report, error) {
	accountsExpr := req.GetAccounts()
	if accountsExpr == "" {
		accountsExpr = "all"
	}
	known, err := s.cfg.Store.ListAccounts(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the accounts")
	}
	in := readiness.Inputs{Now: s.cfg.Clock(), ControllerVersion: version.Version, Actions: s.cfg.Actions}
	if len(known) > 0 {
		selected, err := runs.SelectAccounts(known, accountsExpr)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		in.Accounts = selected
		if in.Targets, in.RunID, err = s.readinessRun(ctx, who, req, accountsExpr); err != nil {
			return nil, err
		}
	}
	if err := s.controllerState(ctx, &in); err != nil {
		return nil, err
	}
	report := readiness.Build(in)
	if req.GetSave() {
		report.ID = ids.New("rdy")
		report.CreatedBy = who.Name
		if report.CreatedBy != readinessActor {
			report.CreatedBy = "operator:" + who.Name
		}
		b, err := report.JSON()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encoding the report: %v", err)
		}
		if err := s.cfg.Store.SaveReadinessReport(ctx, &store.ReadinessReport{ID: report.ID, GeneratedAt: report.GeneratedAt, Score: report.Score,
			CreatedBy: report.CreatedBy, ReportJSON: b}); err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the report")
		}
	}
	counts := report.Count()
	s.cfg.Audit(ctx, auditActor(who), "readiness.review", accountsExpr, map[string]any{"score": report.Score, "run": report.RunID, "report": report.ID,
		"fail": counts[readiness.StatusFail], "warn": counts[readiness.StatusWarn], "unknown": counts[readiness.StatusUnknown]})
	return report, nil
}

// readinessActor is the scheduled review's actor.
const readinessActor = "controller:readiness"

// ReadinessActor is the actor of the scheduled review: a system actor,
// acting as a responder for a read-only action.
var ReadinessActor = runs.Actor{Name: readinessActor, Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER}

func auditActor(who runs.Actor) string {
	if who.Name == readinessActor {
		return readinessActor
	}
	return "operator:" + who.Name
}

// readinessRun runs aws-readiness over the accounts and regions and
// returns each task's outcome.
func (s *Service) readinessRun(ctx context.Context, who runs.Actor, req *operatorv1.ReadinessRequest, accounts string) ([]readiness.Target, string, error) {
	sel := req.GetSelector()
	if sel == "" {
		sel = "role=worker"
	}
	deadline := 5 * time.Minute
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsDuration()
	}
	perAccount := int(req.GetMaxPerAccount())
	if perAccount == 0 {
		perAccount = 2
	}
	params := map[string]string{}
	if q := s.cfg.FindingsQueueURL; q != "" {
		params["findings_queue_url"] = q
	}
	if s.cfg.FindingsHTTPS {
		params["findings_https"] = "true"
	}
	if b := req.GetEvidenceBucket(); b != "" {
		params["evidence_bucket"], params["evidence_account"] = b, req.GetEvidenceAccount()
	}
	plan, err := s.cfg.Planner.Create(ctx, who, runs.Spec{Action: readiness.ReadinessAction, Selector: sel, Params: params, Deadline: deadline,
		Reason: "readiness review", Accounts: accounts, Regions: req.GetRegions(), MaxPerAccount: perAccount, MaxErrors: "100%"})
	if err != nil {
		return nil, "", s.planErrorStatus(ctx, err)
	}
	run, err := s.waitRun(ctx, plan.Run.ID)
	if err != nil {
		return nil, "", err
	}
	var out []readiness.Target
	for _, t := range run.GetTasks() {
		tg := readiness.Target{Account: t.GetAccount(), Region: t.GetRegion(), Error: t.GetError(), Output: t.GetOutputJson()}
		tg.Reached = t.GetStatus() == agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
		if !tg.Reached && tg.Error == "" {
			tg.Error = fmt.Sprintf("the task ended %s", t.GetStatus())
		}
		out = append(out, tg)
	}
	return out, run.GetId(), nil
}

// controllerState reads what the controller-side checks look at.
func (s *Service) controllerState(ctx context.Context, in *readiness.Inputs) error {
	var err error
	if in.Agents, err = s.cfg.Store.ListAgents(ctx); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the agents")
	}
	if in.Operators, err = s.cfg.Store.ListOperators(ctx); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the operators")
	}
	if in.Tokens, err = s.cfg.Store.ListJoinTokens(ctx); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the join tokens")
	}
	if in.Audit, err = s.cfg.Store.VerifyAudit(ctx); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "verifying the audit chain")
	}
	if s.cfg.CA != nil && s.cfg.CA.Cert != nil {
		in.CANotAfter = s.cfg.CA.Cert.NotAfter
	}
	if s.cfg.Playbooks != nil {
		entries, err := s.cfg.Playbooks.List()
		if err != nil {
			in.PlaybooksErr = err.Error()
		}
		for _, e := range entries {
			in.Playbooks = append(in.Playbooks, readiness.Playbook{Name: e.Name, Source: e.Source, Playbook: e.Playbook, ParseErr: e.ParseErr})
		}
	}
	if in.IsolationProven, err = s.isolationsDone(ctx); err != nil {
		return err
	}
	if in.Drills, err = s.cfg.Store.ListDrillResults(ctx, in.Now.Add(-readiness.DrillLookback), drillScanLimit); err != nil {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the recorded drills")
	}
	if in.Drills == nil {
		in.Drills = []*store.DrillResult{}
	}
	if s.cfg.Evidence != nil {
		pctx, cancel := context.WithTimeout(ctx, evidenceProbeTimeout)
		p := s.cfg.Evidence.Probe(pctx)
		cancel()
		in.Evidence = &p
	}
	in.LastActive = map[string]time.Time{}
	var after int64
	for read := 0; read < auditScanLimit; {
		recs, err := s.cfg.Store.ListAudit(ctx, after, 1000)
		if err != nil {
			return rpcerr.Error(ctx, s.cfg.Logger, err, "reading the audit log")
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if name, ok := strings.CutPrefix(r.Actor, "operator:"); ok && r.At.After(in.LastActive[name]) {
				in.LastActive[name] = r.At
			}
			after = r.Seq
		}
		read += len(recs)
	}
	return nil
}

// isolationScanRuns bounds how many of the newest runs a review reads for
// host isolations the controller sent.
const isolationScanRuns = 1000

// isolationsDone maps each agent to the latest host-isolate task the
// controller sent it and stored as succeeded, among the newest runs: the
// proof host.capability takes over an agent's claim that it can isolate.
func (s *Service) isolationsDone(ctx context.Context) (map[string]time.Time, error) {
	runs, err := s.cfg.Store.ListRuns(ctx, isolationScanRuns)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the runs")
	}
	out := map[string]time.Time{}
	for _, r := range runs {
		if r.Action != readiness.HostIsolateAction {
			continue
		}
		_, tasks, err := s.cfg.Store.GetRun(ctx, r.ID)
		if err != nil {
			return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading run "+r.ID)
		}
		for _, t := range tasks {
			if t.Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				continue
			}
			at := t.FinishedAt
			if at.IsZero() {
				at = r.CreatedAt
			}
			if at.After(out[t.AgentID]) {
				out[t.AgentID] = at
			}
		}
	}
	return out, nil
}

// checkDrillRecord refuses a drill record that names an unknown scenario,
// another playbook than the scenario's, or an impossible score.
func checkDrillRecord(req *operatorv1.RecordDrillRequest) error {
	want, ok := readiness.DrillScenarios[req.GetScenario()]
	switch {
	case !ok:
		names := make([]string, 0, len(readiness.DrillScenarios))
		for n := range readiness.DrillScenarios {
			names = append(names, n)
		}
		slices.Sort(names)
		return status.Errorf(codes.InvalidArgument, "unknown drill scenario %q (scenarios: %s)", truncate(req.GetScenario(), 64), strings.Join(names, ", "))
	case req.GetPlaybook() != want:
		return status.Errorf(codes.InvalidArgument, "scenario %s rehearses playbook %s, not %q", req.GetScenario(), want, truncate(req.GetPlaybook(), 64))
	case req.GetScore() < 0 || req.GetScore() > 100:
		return status.Errorf(codes.InvalidArgument, "score %d is outside 0..100", req.GetScore())
	case !req.GetContained() && req.GetScore() != 0:
		return status.Errorf(codes.InvalidArgument, "a drill that did not contain scores 0, not %d", req.GetScore())
	case req.GetTimeToContainMs() < 0:
		return status.Error(codes.InvalidArgument, "time_to_contain_ms is negative")
	case len(req.GetResultJson()) > maxDrillResult:
		return status.Errorf(codes.InvalidArgument, "the drill result is %d bytes; at most %d", len(req.GetResultJson()), maxDrillResult)
	case req.GetResultJson() != "" && !json.Valid([]byte(req.GetResultJson())):
		return status.Error(codes.InvalidArgument, "the drill result is not valid JSON")
	}
	return nil
}

// drillScanLimit bounds how many recorded drills a review reads.
const drillScanLimit = 5000

// maxDrillResult bounds a recorded drill's result JSON.
const maxDrillResult = 256 << 10

// RecordDrill implements operatorv1.OperatorServiceServer: it stores a
// drill's outcome at the controller's own time, as the calling operator's
// record, and audits it. The scenario must be one of the lab's, and the
// playbook the one that scenario rehearses.
func (s *Service) RecordDrill(ctx context.Context, req *operatorv1.RecordDrillRequest) (*operatorv1.RecordDrillResponse, error) {
	if err := checkDrillRecord(req); err != nil {
		return nil, err
	}
	who := actor(ctx)
	d := &store.DrillResult{ID: ids.New("drl"), Scenario: req.GetScenario(), Playbook: req.GetPlaybook(), Contained: req.GetContained(),
		Score: int(req.GetScore()), SimulatedHosts: req.GetSimulatedHosts(), TimeToContainMS: req.GetTimeToContainMs(),
		RecordedAt: s.cfg.Clock().UTC(), RecordedBy: "operator:" + who.Name, ResultJSON: []byte(req.GetResultJson())}
	if err := s.cfg.Store.SaveDrillResult(ctx, d); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the drill")
	}
	s.cfg.Audit(ctx, "operator:"+who.Name, "drill.record", d.ID, map[string]any{"scenario": d.Scenario, "playbook": d.Playbook,
		"contained": d.Contained, "score": d.Score, "simulated_hosts": d.SimulatedHosts})
	return &operatorv1.RecordDrillResponse{Id: d.ID, RecordedAt: timestamppb.New(d.RecordedAt)}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ListReadinessReports implements operatorv1.OperatorServiceServer.
func (s *Service) ListReadinessReports(ctx context.Context, req *operatorv1.ListReadinessReportsRequest) (*operatorv1.ListReadinessReportsResponse, error) {
	limit := int(req.GetLimit())
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	rs, err := s.cfg.Store.ListReadinessReports(ctx, limit)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the readiness reports")
	}
	resp := &operatorv1.ListReadinessReportsResponse{}
	for _, r := range rs {
		resp.Reports = append(resp.Reports, &operatorv1.ReadinessReport{Id: r.ID, Score: int32(r.Score), GeneratedAt: timestamppb.New(r.GeneratedAt), CreatedBy: r.CreatedBy})
	}
	return resp, nil
}

// ReadinessProto is the wire form of a report.
func ReadinessProto(r *readiness.Report) *operatorv1.ReadinessReport {
	out := &operatorv1.ReadinessReport{Id: r.ID, Score: int32(r.Score), Accounts: r.Accounts, Regions: r.Regions, GeneratedAt: timestamppb.New(r.GeneratedAt),
		RunId: r.RunID, CreatedBy: r.CreatedBy}
	for _, c := range r.Checks {
		out.Checks = append(out.Checks, &operatorv1.ReadinessCheck{Id: c.ID, Account: c.Account, Region: c.Region, Status: string(c.Status),
			Evidence: c.Evidence, Remediation: c.Remediation})
	}
	return out
}
