// Package operator implements the controller's operator API: join tokens,
// operators, agents, runs (with approvals), and the audit log.
package operator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/selector"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Policy is who may call which operator method.
var Policy = map[string]operatorv1.OperatorRole{
	operatorv1.OperatorService_Whoami_FullMethodName:          operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_CreateJoinToken_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_AddOperator_FullMethodName:     operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_ListAgents_FullMethodName:      operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_ListActions_FullMethodName:     operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_CreateRun_FullMethodName:       operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.OperatorService_WatchRun_FullMethodName:        operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_GetRun_FullMethodName:          operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_ListRuns_FullMethodName:        operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_ApproveRun_FullMethodName:      operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
	operatorv1.OperatorService_RejectRun_FullMethodName:       operatorv1.OperatorRole_OPERATOR_ROLE_APPROVER,
	operatorv1.OperatorService_CancelRun_FullMethodName:       operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.OperatorService_ListAudit_FullMethodName:       operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_VerifyAudit_FullMethodName:     operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_GetAuditHead_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_SyncAccounts_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.OperatorService_ListAccounts_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	operatorv1.OperatorService_ListJoinTokens_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_RevokeJoinToken_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_RevokeOperator_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_RotateOperator_FullMethodName:  operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_RevokeAgents_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the service's dependencies.
type Config struct {
	Store      store.Store
	CA         *pki.CA
	Fleet      *fleet.Service
	Dispatcher *dispatch.Dispatcher
	Audit      AuditFunc
	Logger     *slog.Logger
	Clock      func() time.Time
	// ApprovalThreshold: a destructive run over more targets than this
	// waits for a second operator's approval (default 10).
	ApprovalThreshold int
	// OperatorCertTTL is the lifetime of new operator credentials.
	OperatorCertTTL time.Duration
	// Advertise is the controller address written into new credentials.
	Advertise string
	// Actions is the trusted action catalogue: runs take an action's
	// schema, defaults and destructive flag from it, and only agents that
	// report an action with the catalogue's exact description are its
	// targets.
	Actions *actioncatalog.Catalogue
	// Streams holds the open operator streams, which revoking or rotating
	// a credential closes; nil leaves them to end on their own.
	Streams *auth.Streams
	// Watches caps the open WatchRun streams (default: watchcap's
	// defaults); the controller shares one with the playbook service.
	Watches *watchcap.Limiter
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "CA": c.CA != nil, "Fleet": c.Fleet != nil, "Dispatcher": c.Dispatcher != nil,
		"Actions": c.Actions != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("operator: missing %s", strings.Join(missing, ", "))
	}
	if c.Audit == nil {
		c.Audit = func(context.Context, string, string, string, any) {}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.ApprovalThreshold == 0 {
		c.ApprovalThreshold = 10
	}
	if c.OperatorCertTTL == 0 {
		c.OperatorCertTTL = 90 * 24 * time.Hour
	}
	if c.Watches == nil {
		c.Watches = watchcap.New(0, 0)
	}
	return nil
}

// Service implements operatorv1.OperatorServiceServer.
type Service struct {
	operatorv1.UnimplementedOperatorServiceServer
	cfg     Config
	reviews actionReviews
}

// New returns the operator service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg}, nil
}

func caller(ctx context.Context) *store.Operator {
	if o, ok := auth.OperatorFrom(ctx); ok {
		return o
	}
	return &store.Operator{Name: "unknown"}
}

// Whoami implements operatorv1.OperatorServiceServer.
func (s *Service) Whoami(ctx context.Context, _ *operatorv1.WhoamiRequest) (*operatorv1.WhoamiResponse, error) {
	o := caller(ctx)
	return &operatorv1.WhoamiResponse{Name: o.Name, Role: o.Role}, nil
}

// Limits on join tokens.
const (
	maxTokenUses = 100000
	maxTokenTTL  = 30 * 24 * time.Hour
)

// CreateJoinToken implements operatorv1.OperatorServiceServer.
func (s *Service) CreateJoinToken(ctx context.Context, req *operatorv1.CreateJoinTokenRequest) (*operatorv1.CreateJoinTokenResponse, error) {
	if req.GetRole() == agentv1.AgentRole_AGENT_ROLE_UNSPECIFIED {
		return nil, status.Error(codes.InvalidArgument, "the token needs a role: host or worker")
	}
	uses := int(req.GetUses())
	if uses == 0 {
		uses = 1
	}
	if uses > maxTokenUses {
		return nil, status.Errorf(codes.InvalidArgument, "--uses %d is more than the limit of %d", uses, maxTokenUses)
	}
	ttl := time.Hour
	if req.GetTtl() != nil {
		ttl = req.GetTtl().AsDuration()
	}
	if ttl <= 0 || ttl > maxTokenTTL {
		return nil, status.Errorf(codes.InvalidArgument, "--ttl %s must be positive and at most %s", ttl, maxTokenTTL)
	}
	if err := fleet.CheckLabels(req.GetLabels()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "token labels: %v", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, status.Errorf(codes.Internal, "making a token: %v", err)
	}
	token := "fbj_" + base64.RawURLEncoding.EncodeToString(raw)
	now := s.cfg.Clock()
	role := apiview.AgentRoleName(req.GetRole())
	if err := s.cfg.Store.CreateJoinToken(ctx, &store.JoinToken{Hash: fleet.HashToken(token), Role: role, Uses: uses, UsesLeft: uses,
		ExpiresAt: now.Add(ttl), Labels: req.GetLabels(), CreatedBy: caller(ctx).Name, CreatedAt: now}); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the token")
	}
	// The token itself never reaches the audit log or the logs.
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "token.create", fleet.HashToken(token)[:16],
		map[string]any{"role": role, "uses": uses, "ttl": ttl.String(), "labels": req.GetLabels()})
	return &operatorv1.CreateJoinTokenResponse{Token: token, ExpiresAt: timestamppb.New(now.Add(ttl)), Uses: uint32(uses)}, nil
}

var operatorNameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// AddOperator implements operatorv1.OperatorServiceServer.
func (s *Service) AddOperator(ctx context.Context, req *operatorv1.AddOperatorRequest) (*operatorv1.AddOperatorResponse, error) {
	if !operatorNameRE.MatchString(req.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "operator name %q is not valid: lower-case letters, digits, . _ -, starting with a letter", req.GetName())
	}
	role := req.GetRole()
	if role == operatorv1.OperatorRole_OPERATOR_ROLE_UNSPECIFIED {
		// The least role unless the admin asks for more.
		role = operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER
	}
	if _, err := s.cfg.Store.GetOperator(ctx, req.GetName()); err == nil {
		return nil, status.Errorf(codes.AlreadyExists, "operator %q already exists: replace its credential with `firebreak operator rotate %s`", req.GetName(), req.GetName())
	}
	creds, serial, err := IssueCreds(s.cfg.CA, req.GetName(), role, s.cfg.OperatorCertTTL, s.cfg.Advertise)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "issuing the credential: %v", err)
	}
	if err := s.cfg.Store.PutOperator(ctx, &store.Operator{Name: req.GetName(), Role: role, CertSerial: serial,
		CreatedBy: caller(ctx).Name, CreatedAt: s.cfg.Clock()}); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the operator")
	}
	s.cfg.Audit(ctx, "operator:"+caller(ctx).Name, "operator.add", req.GetName(), map[string]string{"role": auth.RoleName(role), "cert_serial": serial})
	b, _ := json.MarshalIndent(creds, "", "  ")
	return &operatorv1.AddOperatorResponse{CredsJson: b}, nil
}

// IssueCreds makes an operator credential: a fresh key and a client
// certificate for it. It returns the credential and the certificate serial.
func IssueCreds(ca *pki.CA, name string, role operatorv1.OperatorRole, ttl time.Duration, controller string) (*pki.Creds, string, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, "", err
	}
	cert, err := ca.IssueClientForKey(key.Public(), pki.Identity{Kind: pki.KindOperator, Name: name}, ttl)
	if err != nil {
		return nil, "", err
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return nil, "", err
	}
	return &pki.Creds{Name: name, Role: auth.RoleName(role), Controller: controller, CAPEM: string(pki.EncodeCertPEM(ca.Cert.Raw)),
		CertPEM: string(pki.EncodeCertPEM(cert.Raw)), KeyPEM: string(keyPEM)}, cert.SerialNumber.Text(16), nil
}

// agentView is an agent with its live state.
type agentView struct {
	a         *store.Agent
	facts     *agentv1.AgentFacts
	connected bool
	// actions are the actions the agent reported with the catalogue's
	// exact description: the only ones it is a target for.
	actions map[string]bool
	// refused are the actions it reported that it is not sent.
	refused []actioncatalog.Refusal
}

func (s *Service) agents(ctx context.Context) ([]agentView, error) {
	all, err := s.cfg.Fleet.Agents(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "listing agents")
	}
	out := make([]agentView, 0, len(all))
	for _, a := range all {
		if a.Revoked {
			continue
		}
		v := agentView{a: a, facts: a.Facts, connected: s.cfg.Fleet.Connected(a.ID)}
		v.actions, v.refused = s.reviews.review(s.cfg.Actions, a.ID, a.Role, a.Plugins)
		if f := s.cfg.Fleet.Facts(a.ID); f != nil {
			v.facts = f
		}
		out = append(out, v)
	}
	return out, nil
}

func target(v agentView) selector.Target {
	return selector.Target{ID: v.a.ID, Role: v.a.Role, Hostname: v.a.Hostname, Account: v.facts.GetAccount(), Region: v.facts.GetRegion(),
		InstanceID: v.facts.GetInstanceId(), Labels: v.facts.GetLabels(), Connected: v.connected, Isolated: v.facts.GetIsolated(),
		Simulated: v.facts.GetSimulated()}
}

// ListAgents implements operatorv1.OperatorServiceServer.
func (s *Service) ListAgents(ctx context.Context, req *operatorv1.ListAgentsRequest) (*operatorv1.ListAgentsResponse, error) {
	var sel *selector.Selector
	if req.GetSelector() != "" {
		var err error
		if sel, err = selector.Parse(req.GetSelector()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	views, err := s.agents(ctx)
	if err != nil {
		return nil, err
	}
	resp := &operatorv1.ListAgentsResponse{}
	for _, v := range views {
		if sel != nil && !sel.Match(target(v)) {
			continue
		}
		a := apiview.Agent(v.a, v.facts, v.connected)
		a.RefusedActions = refusalProtos(v.refused)
		resp.Agents = append(resp.Agents, a)
	}
	return resp, nil
}

func refusalProtos(rs []actioncatalog.Refusal) []*operatorv1.RefusedAction {
	var out []*operatorv1.RefusedAction
	for _, r := range rs {
		out = append(out, &operatorv1.RefusedAction{Action: r.Action, Reason: r.Reason, Differences: r.Differences})
	}
	return out
}

// ListActions implements operatorv1.OperatorServiceServer. It lists the
// catalogue's trusted descriptions, each with the number of agents that
// report it exactly; what an agent says about an action is never shown as
// the action's description.
func (s *Service) ListActions(ctx context.Context, _ *operatorv1.ListActionsRequest) (*operatorv1.ListActionsResponse, error) {
	views, err := s.agents(ctx)
	if err != nil {
		return nil, err
	}
	resp := &operatorv1.ListActionsResponse{}
	for _, e := range s.cfg.Actions.Entries() {
		sum := &operatorv1.ActionSummary{Description: e.Description, Digest: e.Digest, Source: e.Source}
		for _, v := range views {
			if v.actions[e.Description.GetName()] {
				sum.Agents++
			}
		}
		resp.Actions = append(resp.Actions, sum)
	}
	return resp, nil
}

// Limits on runs.
const (
	defaultDeadline = time.Hour
	maxDeadline     = 7 * 24 * time.Hour
	maxReason       = 1024
)

// CreateRun implements operatorv1.OperatorServiceServer.
func (s *Service) CreateRun(ctx context.Context, req *operatorv1.CreateRunRequest) (*operatorv1.CreateRunResponse, error) {
	ctx, span := telemetry.Tracer().Start(ctx, "run.create")
	defer span.End()
	op := caller(ctx)
	plan, err := s.Plan(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.GetDryRun() {
		return &operatorv1.CreateRunResponse{Run: apiview.Run(plan.Run, plan.Tasks, nil)}, nil
	}
	if err := s.cfg.Store.CreateRun(ctx, plan.Run, plan.Tasks); err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "storing the run")
	}
	s.cfg.Audit(ctx, "operator:"+op.Name, "run.create", plan.Run.ID, map[string]any{
		"action": plan.Run.Action, "selector": plan.Run.Selector, "params": json.RawMessage(plan.Run.ParamsJSON),
		"targets": len(plan.Tasks), "reason": plan.Run.Reason, "case": plan.Run.CaseID,
		"status": apiview.EnumUpper(plan.Run.Status),
	})
	span.SetAttributes(telemetry.NonEmpty(telemetry.AttrRunID.String(plan.Run.ID), telemetry.AttrAction.String(plan.Run.Action),
		telemetry.AttrCaseID.String(plan.Run.CaseID), telemetry.AttrOperator.String(op.Name), telemetry.AttrTargets.Int(len(plan.Tasks)))...)
	traceparent, tracestate := telemetry.InjectTraceContext(ctx)
	// The answer is made before the dispatcher owns the run and its tasks.
	resp := &operatorv1.CreateRunResponse{Run: apiview.Run(plan.Run, plan.Tasks, nil)}
	s.cfg.Dispatcher.Submit(plan.Run, plan.Tasks, traceparent, tracestate)
	s.cfg.Logger.InfoContext(ctx, "run created", "run", resp.GetRun().GetId(), "action", resp.GetRun().GetAction(), "targets", len(resp.GetRun().GetTasks()),
		"operator", op.Name, "status", resp.GetRun().GetStatus().String())
	return resp, nil
}

// RunPlan is a resolved, not yet stored, run.
type RunPlan struct {
	Run   *store.Run
	Tasks []*store.Task
}

// Plan resolves a run request: targets, parameters, approval. It changes
// nothing, so it serves dry runs too.
func (s *Service) Plan(ctx context.Context, req *operatorv1.CreateRunRequest) (*RunPlan, error) {
	op := caller(ctx)
	if req.GetAction() == "" {
		return nil, status.Error(codes.InvalidArgument, "no action given")
	}
	selText := req.GetSelector()
	accountRun := strings.TrimSpace(req.GetAccounts()) != ""
	if accountRun && strings.TrimSpace(selText) == "" {
		// Account-targeted runs go to workers unless told otherwise.
		selText = "role=worker"
	}
	sel, err := selector.Parse(selText)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := dispatch.ParseMaxErrors(req.GetMaxErrors()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(req.GetReason()) > maxReason {
		return nil, status.Errorf(codes.InvalidArgument, "the reason is longer than %d characters", maxReason)
	}
	deadline := defaultDeadline
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsDuration()
	}
	if deadline <= 0 || deadline > maxDeadline {
		return nil, status.Errorf(codes.InvalidArgument, "--deadline %s must be positive and at most %s", deadline, maxDeadline)
	}
	var typed map[string]any
	if len(req.GetParamsJson()) > 0 {
		if err := json.Unmarshal(req.GetParamsJson(), &typed); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "params_json is not a JSON object: %v", err)
		}
	}

	withAction, desc, err := s.matchAgents(ctx, sel, req.GetAction())
	if err != nil {
		return nil, err
	}
	params, err := sdk.ResolveParams(desc, req.GetParams(), typed)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	paramsJSON, _ := json.Marshal(params)

	now := s.cfg.Clock()
	r := &store.Run{
		ID: ids.New("run"), Action: req.GetAction(), Selector: sel.String(), ParamsJSON: paramsJSON, CreatedBy: op.Name, OnBehalfOf: op.ActsFor,
		CreatedAt: now, DeadlineAfter: deadline, MaxConcurrency: int(req.GetMaxConcurrency()), MaxErrors: strings.TrimSpace(req.GetMaxErrors()),
		Reason: req.GetReason(), CaseID: req.GetCaseId(), Destructive: desc.GetDestructive(),
		UploadBPS: int64(min(req.GetUploadBytesPerSecond(), 1<<62)), MaxPerAccount: int(req.GetMaxPerAccount()),
		Accounts: strings.TrimSpace(req.GetAccounts()), Regions: strings.TrimSpace(req.GetRegions()),
	}
	var tasks []*store.Task
	if accountRun {
		if desc.GetDomain() != pluginv1.Domain_DOMAIN_SERVICE {
			return nil, status.Errorf(codes.InvalidArgument, "action %q acts inside hosts; only service actions can target accounts", req.GetAction())
		}
		if tasks, err = s.accountTasks(ctx, r, withAction); err != nil {
			return nil, err
		}
	} else {
		if req.GetRegions() != "" || req.GetMaxPerAccount() != 0 {
			return nil, status.Error(codes.InvalidArgument, "--regions and --max-per-account apply to account-targeted runs: add --accounts")
		}
		for i, v := range withAction {
			tasks = append(tasks, &store.Task{ID: ids.New("tsk"), RunID: r.ID, Seq: i, AgentID: v.a.ID, Hostname: v.a.Hostname,
				Status: agentv1.TaskStatus_TASK_STATUS_PENDING})
		}
	}
	if req.GetRequireApproval() || (r.Destructive && len(tasks) > s.cfg.ApprovalThreshold) {
		r.Status = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
	} else {
		r.Status = operatorv1.RunStatus_RUN_STATUS_RUNNING
		r.StartedAt = now
		r.Deadline = now.Add(deadline)
	}
	return &RunPlan{Run: r, Tasks: tasks}, nil
}

// matchAgents returns the agents the selector matches that offer the
// action, and the action's trusted description from the catalogue.
func (s *Service) matchAgents(ctx context.Context, sel *selector.Selector, action string) ([]agentView, *pluginv1.ActionDescription, error) {
	// Security-critical: the action's schema, defaults and destructive
	// flag come from the controller's catalogue, never from an agent.
	desc, ok := s.cfg.Actions.Lookup(action)
	if !ok {
		return nil, nil, status.Errorf(codes.InvalidArgument, "unknown action %q: it is not in the controller's action catalogue (see `firebreak actions list`)", action)
	}
	views, err := s.agents(ctx)
	if err != nil {
		return nil, nil, err
	}
	var matched, withAction []agentView
	offered := map[string]bool{}
	refused := 0
	for _, v := range views {
		if !sel.Match(target(v)) {
			continue
		}
		matched = append(matched, v)
		for n := range v.actions {
			offered[n] = true
		}
		// Security-critical: an agent that describes the action otherwise
		// than the catalogue (or twice) is not a target for it.
		if v.actions[action] {
			withAction = append(withAction, v)
		} else if slices.ContainsFunc(v.refused, func(r actioncatalog.Refusal) bool { return r.Action == action }) {
			refused++
		}
	}
	if len(matched) == 0 {
		if revoked := s.revokedMatches(ctx, sel); len(revoked) > 0 {
			// Security-critical: a revoked agent is never sent a task; say so
			// rather than let it look merely offline.
			return nil, nil, status.Errorf(codes.FailedPrecondition, "selector %q matches only revoked agents (%s): revoked agents are never sent tasks",
				sel.String(), strings.Join(revoked, ", "))
		}
		return nil, nil, status.Errorf(codes.FailedPrecondition, "selector %q matches no enrolled agent: check `firebreak agents list`", sel.String())
	}
	if len(withAction) == 0 {
		names := make([]string, 0, len(offered))
		for n := range offered {
			names = append(names, n)
		}
		sort.Strings(names)
		extra := ""
		if refused > 0 {
			extra = fmt.Sprintf("; %d of them report it with a description that differs from the catalogue's (see `firebreak agents list`)", refused)
		}
		return nil, nil, status.Errorf(codes.InvalidArgument, "unknown action %q: none of the %d matching agents offers it (they offer: %s)%s",
			action, len(matched), strings.Join(names, ", "), extra)
	}
	return withAction, desc, nil
}

var accountIDRE = regexp.MustCompile(`^\d{12}$`)

// accountTasks makes one task per (account, region) of an account-targeted
// run and gives each to a worker that can reach it: a worker living in the
// account if there is one, else the central workers in turn.
func (s *Service) accountTasks(ctx context.Context, r *store.Run, workers []agentView) ([]*store.Task, error) {
	known, err := s.cfg.Store.ListAccounts(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the accounts")
	}
	if len(known) == 0 {
		return nil, status.Error(codes.FailedPrecondition, "no accounts are known: run `firebreak accounts sync --management-account ID` first")
	}
	accounts, err := SelectAccounts(known, r.Accounts)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	sort.Slice(workers, func(i, j int) bool { return workers[i].a.ID < workers[j].a.ID })
	inAccount := map[string][]agentView{}
	for _, w := range workers {
		if acct := w.facts.GetAccount(); acct != "" {
			inAccount[acct] = append(inAccount[acct], w)
		}
	}
	var tasks []*store.Task
	next := 0
	for _, a := range accounts {
		regions, err := selectRegions(a, r.Regions)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		for _, region := range regions {
			pool := inAccount[a.ID]
			if len(pool) == 0 {
				pool = workers
			}
			w := pool[next%len(pool)]
			next++
			tasks = append(tasks, &store.Task{ID: ids.New("tsk"), RunID: r.ID, Seq: len(tasks), AgentID: w.a.ID, Hostname: w.a.Hostname,
				Status: agentv1.TaskStatus_TASK_STATUS_PENDING, Account: a.ID, Region: region})
		}
	}
	if len(tasks) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "accounts %q and regions %q select nothing", r.Accounts, r.Regions)
	}
	return tasks, nil
}

// SelectAccounts applies an accounts expression: "all", "ID,ID" or
// "ou=NAME-OR-ID" (an OU anywhere on the account's path).
func SelectAccounts(known []*store.Account, expr string) ([]*store.Account, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "all":
		return known, nil
	case strings.HasPrefix(expr, "ou="):
		ou := strings.TrimPrefix(expr, "ou=")
		if ou == "" {
			return nil, fmt.Errorf("--accounts ou= needs an OU name or id")
		}
		var out []*store.Account
		for _, a := range known {
			for _, part := range strings.Split(a.OUPath, "/") {
				if part == ou {
					out = append(out, a)
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no known account is in OU %q", ou)
		}
		return out, nil
	}
	byID := map[string]*store.Account{}
	for _, a := range known {
		byID[a.ID] = a
	}
	var out []*store.Account
	var unknown []string
	seen := map[string]bool{}
	for _, id := range strings.Split(expr, ",") {
		id = strings.TrimSpace(id)
		if !accountIDRE.MatchString(id) {
			return nil, fmt.Errorf("--accounts %q: %q is not a 12-digit account id (or use all, or ou=NAME)", expr, id)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if a := byID[id]; a != nil {
			out = append(out, a)
		} else {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("accounts %s are not active members of the organisation (as of the last `firebreak accounts sync`)", strings.Join(unknown, ", "))
	}
	return out, nil
}

var regionNameRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)

func selectRegions(a *store.Account, expr string) ([]string, error) {
	switch expr = strings.TrimSpace(expr); expr {
	case "":
		// The worker's own region.
		return []string{""}, nil
	case "all":
		if len(a.Regions) == 0 {
			return nil, fmt.Errorf("account %s has no known enabled regions", a.ID)
		}
		return a.Regions, nil
	}
	var out []string
	for _, r := range strings.Split(expr, ",") {
		r = strings.TrimSpace(r)
		if !regionNameRE.MatchString(r) {
			return nil, fmt.Errorf("--regions %q: %q is not a region name", expr, r)
		}
		// A region the account has not enabled cannot be acted in.
		if len(a.Regions) == 0 || slices.Contains(a.Regions, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *Service) storedRun(ctx context.Context, id string) (*operatorv1.Run, error) {
	r, tasks, err := s.cfg.Store.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "run %q not found", id)
	}
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the run")
	}
	aps, err := s.cfg.Store.ListApprovals(ctx, id)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading approvals")
	}
	return apiview.Run(r, tasks, aps), nil
}

// GetRun implements operatorv1.OperatorServiceServer.
func (s *Service) GetRun(ctx context.Context, req *operatorv1.GetRunRequest) (*operatorv1.GetRunResponse, error) {
	v, err := s.cfg.Dispatcher.Snapshot(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	r := runView(v)
	if r == nil {
		if r, err = s.storedRun(ctx, req.GetRunId()); err != nil {
			return nil, err
		}
	}
	return &operatorv1.GetRunResponse{Run: r}, nil
}

// ListRuns implements operatorv1.OperatorServiceServer.
func (s *Service) ListRuns(ctx context.Context, req *operatorv1.ListRunsRequest) (*operatorv1.ListRunsResponse, error) {
	runs, err := s.cfg.Store.ListRuns(ctx, int(min(req.GetLimit(), 1000)))
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "listing runs")
	}
	resp := &operatorv1.ListRunsResponse{}
	for _, r := range runs {
		p := apiview.Run(r, nil, nil)
		if snap, err := s.cfg.Dispatcher.Snapshot(ctx, r.ID); err == nil && snap != nil {
			p = apiview.RunWithCounts(snap.Run, nil, snap.Approvals, snap.Counts)
		} else if _, tasks, err := s.cfg.Store.GetRun(ctx, r.ID); err == nil {
			p = apiview.RunWithCounts(r, nil, nil, store.CountTasks(tasks))
		}
		resp.Runs = append(resp.Runs, p)
	}
	return resp, nil
}

func (s *Service) decisionError(ctx context.Context, err error, runID string) error {
	switch {
	case errors.Is(err, dispatch.ErrRunNotFound):
		return status.Errorf(codes.NotFound, "run %q is not awaiting approval (it does not exist or has ended)", runID)
	case errors.Is(err, dispatch.ErrNotAwaiting):
		return status.Errorf(codes.FailedPrecondition, "run %q is not awaiting approval", runID)
	case errors.Is(err, dispatch.ErrSelfApproval):
		return status.Errorf(codes.PermissionDenied, "run %q: %v", runID, err)
	case errors.Is(err, dispatch.ErrRunNotRunning):
		return status.Errorf(codes.FailedPrecondition, "run %q has already ended", runID)
	}
	return rpcerr.Error(ctx, s.cfg.Logger, err, fmt.Sprintf("deciding on run %q", runID))
}

// ApproveRun implements operatorv1.OperatorServiceServer.
func (s *Service) ApproveRun(ctx context.Context, req *operatorv1.ApproveRunRequest) (*operatorv1.ApproveRunResponse, error) {
	r, err := s.cfg.Dispatcher.Decide(ctx, req.GetRunId(), caller(ctx).Name, true, req.GetComment())
	if err != nil {
		return nil, s.decisionError(ctx, err, req.GetRunId())
	}
	return &operatorv1.ApproveRunResponse{Run: runView(r)}, nil
}

// RejectRun implements operatorv1.OperatorServiceServer.
func (s *Service) RejectRun(ctx context.Context, req *operatorv1.RejectRunRequest) (*operatorv1.RejectRunResponse, error) {
	r, err := s.cfg.Dispatcher.Decide(ctx, req.GetRunId(), caller(ctx).Name, false, req.GetComment())
	if err != nil {
		return nil, s.decisionError(ctx, err, req.GetRunId())
	}
	return &operatorv1.RejectRunResponse{Run: runView(r)}, nil
}

// CancelRun implements operatorv1.OperatorServiceServer.
func (s *Service) CancelRun(ctx context.Context, req *operatorv1.CancelRunRequest) (*operatorv1.CancelRunResponse, error) {
	r, err := s.cfg.Dispatcher.Cancel(ctx, req.GetRunId(), caller(ctx).Name, req.GetReason())
	if err != nil {
		return nil, s.decisionError(ctx, err, req.GetRunId())
	}
	return &operatorv1.CancelRunResponse{Run: runView(r)}, nil
}

// ListAudit implements operatorv1.OperatorServiceServer.
func (s *Service) ListAudit(ctx context.Context, req *operatorv1.ListAuditRequest) (*operatorv1.ListAuditResponse, error) {
	recs, err := s.cfg.Store.ListAudit(ctx, int64(req.GetAfterSeq()), int(min(req.GetLimit(), 10000)))
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "reading the audit log")
	}
	resp := &operatorv1.ListAuditResponse{}
	for _, r := range recs {
		resp.Records = append(resp.Records, &operatorv1.AuditRecord{Seq: uint64(r.Seq), At: timestamppb.New(r.At), Actor: r.Actor,
			Action: r.Action, Subject: r.Subject, DetailJson: r.Detail, PrevHash: r.PrevHash, Hash: r.Hash})
	}
	return resp, nil
}

// VerifyAudit implements operatorv1.OperatorServiceServer (see audit.go).
func (s *Service) VerifyAudit(ctx context.Context, req *operatorv1.VerifyAuditRequest) (*operatorv1.VerifyAuditResponse, error) {
	return s.verifyAudit(ctx, req)
}
