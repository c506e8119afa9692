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
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/rpcerr"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/selector"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/watchcap"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
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
	operatorv1.OperatorService_ForgetAgents_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_RevokeAgents_FullMethodName:    operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_ListControllers_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	// A review starts an aws-readiness run, so it is a responder's.
	operatorv1.OperatorService_Readiness_FullMethodName:            operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	operatorv1.OperatorService_ListReadinessReports_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
	// A drill record feeds the readiness score, so it is a responder's.
	operatorv1.OperatorService_RecordDrill_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER,
	// The attestation policy decides who enrols without a token.
	operatorv1.OperatorService_SetAttestPolicy_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN,
	operatorv1.OperatorService_GetAttestPolicy_FullMethodName: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER,
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
	// Planner plans and creates runs: CreateRun and SyncAccounts decode
	// their requests and call it.
	Planner *runs.Planner
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
	// ControllersLiveWithin is how recent a controller's registry
	// heartbeat must be for ListControllers to show it (default 15s).
	ControllersLiveWithin time.Duration
	// Owners reaches the owners of runs this controller does not hold, in
	// a cluster; nil: every run is this controller's.
	Owners RunOwners
	// Attest is this controller's attestation verifier, which a policy
	// set through it enforces at once; nil: only the stored version
	// changes.
	Attest *attest.Verifier
	// FindingsQueueURL is the SQS queue the controller's intake polls (its
	// --sqs-queue), and FindingsHTTPS is true when its HTTPS events
	// endpoint listens: a readiness review checks that GuardDuty findings
	// are exported to one of them.
	FindingsQueueURL string
	FindingsHTTPS    bool
	// Evidence is the evidence store a readiness review probes; nil reports
	// it unknown.
	Evidence evidence.Prober
	// Playbooks is the playbook library (built-in and custom) a readiness
	// review checks against the fleet's actions; nil skips that check.
	Playbooks PlaybookLibrary
}

// PlaybookLibrary lists the controller's playbooks; *playbookrun.Library
// satisfies it.
type PlaybookLibrary interface {
	// List returns every playbook, built-in and from the playbook
	// directory, parsed or with the reason it does not parse.
	List() ([]*playbookrun.Entry, error)
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "CA": c.CA != nil, "Fleet": c.Fleet != nil, "Dispatcher": c.Dispatcher != nil,
		"Actions": c.Actions != nil, "Planner": c.Planner != nil} {
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
	if c.OperatorCertTTL == 0 {
		c.OperatorCertTTL = 90 * 24 * time.Hour
	}
	if c.Watches == nil {
		c.Watches = watchcap.New(0, 0)
	}
	if c.ControllersLiveWithin == 0 {
		c.ControllersLiveWithin = 5 * time.Second
	}
	return nil
}

// Service implements operatorv1.OperatorServiceServer.
type Service struct {
	operatorv1.UnimplementedOperatorServiceServer
	cfg Config
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

// ListAgents implements operatorv1.OperatorServiceServer.
func (s *Service) ListAgents(ctx context.Context, req *operatorv1.ListAgentsRequest) (*operatorv1.ListAgentsResponse, error) {
	var sel *selector.Selector
	if req.GetSelector() != "" {
		var err error
		if sel, err = selector.Parse(req.GetSelector()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	views, err := s.cfg.Planner.Agents(ctx)
	if err != nil {
		return nil, s.planErrorStatus(ctx, err)
	}
	attested, err := s.cfg.Store.ListAttestations(ctx)
	if err != nil {
		return nil, rpcerr.Error(ctx, s.cfg.Logger, err, "listing the agents' attestations")
	}
	resp := &operatorv1.ListAgentsResponse{}
	for _, v := range views {
		if sel != nil && !sel.Match(v.Target()) {
			continue
		}
		a := storeview.Agent(v.Agent, v.Facts, v.Connected)
		a.RefusedActions = refusalProtos(v.Refused)
		a.Attestation = store.AttestToken
		if att := attested[v.Agent.ID]; att != nil {
			a.Attestation = att.Method
		}
		resp.Agents = append(resp.Agents, a)
	}
	if req.GetIncludeRevoked() {
		revoked, err := s.cfg.Planner.RevokedAgents(ctx)
		if err != nil {
			return nil, s.planErrorStatus(ctx, err)
		}
		for _, v := range revoked {
			if sel == nil || sel.Match(v.Target()) {
				resp.Agents = append(resp.Agents, storeview.Agent(v.Agent, v.Facts, false))
			}
		}
		sort.SliceStable(resp.Agents, func(i, j int) bool {
			a, b := resp.Agents[i], resp.Agents[j]
			if a.GetFacts().GetHostname() != b.GetFacts().GetHostname() {
				return a.GetFacts().GetHostname() < b.GetFacts().GetHostname()
			}
			return a.GetId() < b.GetId()
		})
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
	views, err := s.cfg.Planner.Agents(ctx)
	if err != nil {
		return nil, s.planErrorStatus(ctx, err)
	}
	resp := &operatorv1.ListActionsResponse{}
	for _, e := range s.cfg.Actions.Entries() {
		sum := &operatorv1.ActionSummary{Description: e.Description, Digest: e.Digest, Source: e.Source}
		for _, v := range views {
			if v.Actions[e.Description.GetName()] && !v.Terminated() {
				sum.Agents++
			}
		}
		resp.Actions = append(resp.Actions, sum)
	}
	return resp, nil
}

// CreateRun implements operatorv1.OperatorServiceServer: it decodes the
// request, has the planner create the run and answers with it.
func (s *Service) CreateRun(ctx context.Context, req *operatorv1.CreateRunRequest) (*operatorv1.CreateRunResponse, error) {
	plan, err := s.cfg.Planner.Create(ctx, actor(ctx), runSpec(req))
	if err != nil {
		return nil, s.planErrorStatus(ctx, err)
	}
	return &operatorv1.CreateRunResponse{Run: storeview.Run(plan.Run, plan.Tasks, nil)}, nil
}

// actor is the operator in ctx as the planner's actor: an operator acts
// for no one else.
func actor(ctx context.Context) runs.Actor {
	o := caller(ctx)
	return runs.Actor{Name: o.Name, Role: o.Role}
}

// runSpec decodes a run request.
func runSpec(req *operatorv1.CreateRunRequest) runs.Spec {
	deadline := runs.DefaultDeadline
	if req.GetDeadline() != nil {
		deadline = req.GetDeadline().AsDuration()
	}
	return runs.Spec{Action: req.GetAction(), Selector: req.GetSelector(), Params: req.GetParams(), ParamsJSON: req.GetParamsJson(),
		Reason: req.GetReason(), CaseID: req.GetCaseId(), Deadline: deadline, MaxConcurrency: int(req.GetMaxConcurrency()),
		MaxErrors: req.GetMaxErrors(), RequireApproval: req.GetRequireApproval(), DryRun: req.GetDryRun(),
		UploadBytesPerSecond: req.GetUploadBytesPerSecond(), Accounts: req.GetAccounts(), Regions: req.GetRegions(),
		MaxPerAccount: int(req.GetMaxPerAccount())}
}

// planErrorStatus is the planner's error as a gRPC status: each kind of
// refusal has its code and keeps its precise message; anything else is a
// failure of the store or the fleet behind the planner, mapped by rpcerr
// (Internal with the cause logged and a trace id to quote).
func (s *Service) planErrorStatus(ctx context.Context, err error) error {
	var refusal *runs.Error
	if !errors.As(err, &refusal) {
		return rpcerr.Error(ctx, s.cfg.Logger, err, "")
	}
	code := codes.InvalidArgument
	switch {
	case errors.Is(refusal, runs.ErrNoTargets):
		code = codes.FailedPrecondition
	case errors.Is(refusal, runs.ErrPermission):
		code = codes.PermissionDenied
	}
	return status.Error(code, refusal.Msg)
}

// storeSyncWait bounds how long storedRun waits for the dispatcher to
// store what it has handled.
const storeSyncWait = 5 * time.Second

// storedRun reads a run the dispatcher does not hold from the store.
func (s *Service) storedRun(ctx context.Context, id string) (*operatorv1.Run, error) {
	// A run the dispatcher no longer holds may have ended a moment ago,
	// with its end not yet stored: wait (briefly) until what the dispatcher
	// has handled is stored, so a watcher never gets a finished run as
	// still running.
	syncCtx, cancel := context.WithTimeout(ctx, storeSyncWait)
	err := s.cfg.Dispatcher.Sync(syncCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("the dispatcher did not confirm its stored state in time; reading the run as stored", "run", id, "error", err)
	}
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
	return storeview.Run(r, tasks, aps), nil
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
		p := storeview.Run(r, nil, nil)
		if snap, err := s.cfg.Dispatcher.Snapshot(ctx, r.ID); err == nil && snap != nil {
			p = storeview.RunWithCounts(snap.Run, nil, snap.Approvals, snap.Counts)
		} else if _, tasks, err := s.cfg.Store.GetRun(ctx, r.ID); err == nil {
			p = storeview.RunWithCounts(r, nil, nil, store.CountTasks(tasks))
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
	r, err := s.decide(ctx, req.GetRunId(), true, req.GetComment())
	if err != nil {
		return nil, err
	}
	return &operatorv1.ApproveRunResponse{Run: r}, nil
}

// RejectRun implements operatorv1.OperatorServiceServer.
func (s *Service) RejectRun(ctx context.Context, req *operatorv1.RejectRunRequest) (*operatorv1.RejectRunResponse, error) {
	r, err := s.decide(ctx, req.GetRunId(), false, req.GetComment())
	if err != nil {
		return nil, err
	}
	return &operatorv1.RejectRunResponse{Run: r}, nil
}

// CancelRun implements operatorv1.OperatorServiceServer.
func (s *Service) CancelRun(ctx context.Context, req *operatorv1.CancelRunRequest) (*operatorv1.CancelRunResponse, error) {
	r, err := s.cfg.Dispatcher.Cancel(ctx, req.GetRunId(), caller(ctx).Name, req.GetReason())
	if err != nil && forwardable(err) && s.cfg.Owners != nil {
		if fr, handled, ferr := s.cfg.Owners.Cancel(ctx, req.GetRunId(), caller(ctx).Name, req.GetReason()); handled {
			if ferr != nil {
				return nil, ferr
			}
			return &operatorv1.CancelRunResponse{Run: fr}, nil
		}
	}
	if err != nil {
		return nil, s.decisionError(ctx, err, req.GetRunId())
	}
	return &operatorv1.CancelRunResponse{Run: runView(r)}, nil
}

// decide approves or rejects a run: through this controller's dispatcher,
// or through the run's owner when another controller of the cluster holds
// it.
func (s *Service) decide(ctx context.Context, runID string, approve bool, comment string) (*operatorv1.Run, error) {
	r, err := s.cfg.Dispatcher.Decide(ctx, runID, caller(ctx).Name, approve, comment)
	if err != nil && forwardable(err) && s.cfg.Owners != nil {
		if fr, handled, ferr := s.cfg.Owners.Decide(ctx, runID, caller(ctx).Name, approve, comment); handled {
			return fr, ferr
		}
	}
	if err != nil {
		return nil, s.decisionError(ctx, err, runID)
	}
	return runView(r), nil
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
