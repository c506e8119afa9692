// Package runs is the run planner: the one way a run comes to exist. The
// operator API, playbooks (and later the console) describe the run they
// want as a Spec, say who asks as an Actor, and call Planner.Create, which
// matches the selector against the fleet, resolves the parameters against
// the trusted action catalogue, fans an account-targeted run out per
// account and region, decides whether it waits for approval, stores it,
// records it in the audit log and hands it to the dispatcher.
//
// A refusal is an *Error whose kind (ErrNoTargets, ErrUnknownAction,
// ErrInvalidParams, ErrInvalidSelector, ErrInvalidSpec, ErrPermission)
// each entry point maps to its own wire form once; its message is the
// precise text the requester sees.
package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/selector"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/actionschema"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Limits on runs.
const (
	// DefaultDeadline is the deadline of a run whose requester names none.
	DefaultDeadline = time.Hour
	// MaxDeadline is the longest deadline a run may have.
	MaxDeadline = 7 * 24 * time.Hour
	// MaxReason is the longest reason a run may carry, in bytes.
	MaxReason = 1024
	// MaxIdempotencyKey is the longest idempotency key, in bytes.
	MaxIdempotencyKey = 256
	// DefaultApprovalThreshold is the target count above which a
	// destructive run waits for approval, unless Config says otherwise.
	DefaultApprovalThreshold = 10
)

// Store is what the planner needs of the store; store.Store satisfies it.
type Store interface {
	// CreateRun stores a run with its tasks; see store.Store.
	CreateRun(ctx context.Context, r *store.Run, tasks []*store.Task) error
	// RunByIdempotencyKey returns the run created with a key, or
	// store.ErrNotFound.
	RunByIdempotencyKey(ctx context.Context, key string) (*store.Run, []*store.Task, error)
	// ListAccounts returns the known AWS accounts.
	ListAccounts(ctx context.Context) ([]*store.Account, error)
}

// Fleet is the planner's view of the agents; *fleet.Service satisfies it.
type Fleet interface {
	// Agents returns every enrolled agent, revoked ones included.
	Agents(ctx context.Context) ([]*store.Agent, error)
	// Connected reports whether the agent holds a stream now.
	Connected(agentID string) bool
	// Facts returns the agent's live facts, or nil.
	Facts(agentID string) *agentv1.AgentFacts
}

// Dispatcher takes stored runs to their agents; *dispatch.Dispatcher
// satisfies it.
type Dispatcher interface {
	// Submit hands a stored run and its tasks over; the dispatcher owns
	// them from then on.
	Submit(r *store.Run, tasks []*store.Task, traceparent, tracestate string)
}

// AuditFunc records an action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the planner's dependencies.
type Config struct {
	// Store keeps runs and knows the accounts.
	Store Store
	// Fleet lists the agents and their live state.
	Fleet Fleet
	// Actions is the trusted action catalogue: a run takes its action's
	// schema, defaults, domain and destructive flag from it, and only
	// agents that report an action with the catalogue's exact description
	// are its targets.
	Actions *actioncatalog.Catalogue
	// Dispatcher is handed every stored run.
	Dispatcher Dispatcher
	// Audit records each created run (default: nothing).
	Audit AuditFunc
	// Logger logs each created run (default: slog.Default()).
	Logger *slog.Logger
	// Clock is the time source (default: time.Now).
	Clock func() time.Time
	// ApprovalThreshold: a destructive run over more targets than this
	// waits for a second operator's approval (default 10).
	ApprovalThreshold int
	// Owner is the id of this controller, the owner of the runs it creates
	// (store.Run.Owner); it must be the dispatcher's Owner. Empty: runs
	// with no owner, for a lone dispatcher.
	Owner string
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	for name, ok := range map[string]bool{"Store": c.Store != nil, "Fleet": c.Fleet != nil, "Actions": c.Actions != nil,
		"Dispatcher": c.Dispatcher != nil} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("runs: missing %s", strings.Join(missing, ", "))
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
		c.ApprovalThreshold = DefaultApprovalThreshold
	}
	return nil
}

// Planner plans and creates runs. It is safe for concurrent use.
type Planner struct {
	cfg     Config
	reviews actionReviews
}

// New returns a planner.
func New(cfg Config) (*Planner, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Planner{cfg: cfg}, nil
}

// Actor is who asks for a run.
type Actor struct {
	// Name is the operator's name, or the system actor's ("playbook:NAME").
	Name string
	// Role is the operator's role; a system actor acts as a responder.
	Role operatorv1.OperatorRole
	// OnBehalfOf is, for a system actor, the operator or rule it acts for
	// (the one who started or approved the playbook). The run records it,
	// and that operator cannot approve the run.
	OnBehalfOf string
}

// Spec is the run asked for.
type Spec struct {
	// Action is the action's name in the catalogue.
	Action string
	// Selector chooses the target agents (selector syntax). Empty with
	// Accounts set means role=worker.
	Selector string
	// Params are text parameters, parsed by the action's schema.
	Params map[string]string
	// ParamsJSON is a JSON object of typed parameters (empty: none).
	ParamsJSON []byte
	// Reason is the requester's text, kept with the run.
	Reason string
	// CaseID is the case the run works for (empty: none).
	CaseID string
	// Deadline is how long the run may take once it starts: positive and
	// at most MaxDeadline; DefaultDeadline when the requester names none.
	Deadline time.Duration
	// MaxConcurrency caps tasks in flight (0: no cap).
	MaxConcurrency int
	// MaxErrors stops the run after that many (or that percentage of)
	// failed targets, SSM style (empty: never).
	MaxErrors string
	// RequireApproval makes the run wait for a second operator's approval
	// whatever its size.
	RequireApproval bool
	// DryRun plans the run and changes nothing.
	DryRun bool
	// UploadBytesPerSecond caps each agent's evidence upload (0: no cap).
	UploadBytesPerSecond uint64
	// Accounts targets AWS accounts: "all", "ID,ID" or "ou=NAME".
	Accounts string
	// Regions are the regions of an account-targeted run: "all" or a list
	// (empty: each worker's own).
	Regions string
	// MaxPerAccount caps tasks in flight per account (0: no cap).
	MaxPerAccount int
	// IdempotencyKey, when set, names this request: creating a run with a
	// key an earlier run of the same actor has returns that run instead.
	IdempotencyKey string
}

// Plan is a resolved run: the run and one task per target.
type Plan struct {
	// Run is the run; Create returns it stored (or, for a dry run, not).
	Run *store.Run
	// Tasks are its tasks, in order.
	Tasks []*store.Task
	// Existing is true when the spec's idempotency key named a run
	// created earlier: Run is that run, and nothing new was stored.
	Existing bool
}

// Create plans a run, stores it, records it in the audit log and hands it
// to the dispatcher; with Spec.DryRun it only plans. When the spec's
// idempotency key names a run already created, even by a caller racing
// this one, it returns that run. The returned plan is the caller's: the
// dispatcher works on its own copy.
func (p *Planner) Create(ctx context.Context, actor Actor, spec Spec) (*Plan, error) {
	ctx, span := telemetry.Tracer().Start(ctx, "run.create")
	defer span.End()
	if spec.IdempotencyKey != "" && !spec.DryRun {
		if existing, err := p.existing(ctx, actor, spec.IdempotencyKey); existing != nil || err != nil {
			return existing, err
		}
	}
	plan, err := p.Plan(ctx, actor, spec)
	if err != nil || spec.DryRun {
		return plan, err
	}
	plan.Run.IdempotencyKey = spec.IdempotencyKey
	if err := p.cfg.Store.CreateRun(ctx, plan.Run, plan.Tasks); err != nil {
		if errors.Is(err, store.ErrIdempotencyKeyUsed) {
			// Another caller with the same key stored its run first.
			if existing, xerr := p.existing(ctx, actor, spec.IdempotencyKey); existing != nil || xerr != nil {
				return existing, xerr
			}
		}
		return nil, fmt.Errorf("storing the run: %w", err)
	}
	r := plan.Run
	p.cfg.Audit(ctx, "operator:"+actor.Name, "run.create", r.ID, map[string]any{
		"action": r.Action, "selector": r.Selector, "params": json.RawMessage(r.ParamsJSON),
		"targets": len(plan.Tasks), "reason": r.Reason, "case": r.CaseID, "status": apiview.EnumUpper(r.Status),
	})
	span.SetAttributes(telemetry.NonEmpty(telemetry.AttrRunID.String(r.ID), telemetry.AttrAction.String(r.Action),
		telemetry.AttrCaseID.String(r.CaseID), telemetry.AttrOperator.String(actor.Name), telemetry.AttrTargets.Int(len(plan.Tasks)))...)
	traceparent, tracestate := telemetry.InjectTraceContext(ctx)
	// The caller's copy is made before the dispatcher owns the run and its
	// tasks.
	out := &Plan{Run: cloneRun(r), Tasks: cloneTasks(plan.Tasks)}
	p.cfg.Dispatcher.Submit(r, plan.Tasks, traceparent, tracestate)
	p.cfg.Logger.InfoContext(ctx, "run created", "run", out.Run.ID, "action", out.Run.Action, "targets", len(out.Tasks),
		"operator", actor.Name, "status", out.Run.Status.String())
	return out, nil
}

// existing returns the run created with key, or nil when there is none.
func (p *Planner) existing(ctx context.Context, actor Actor, key string) (*Plan, error) {
	r, tasks, err := p.cfg.Store.RunByIdempotencyKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up the run of idempotency key %q: %w", key, err)
	}
	// Security-critical: a key names one actor's request; another actor
	// neither sees that run through it nor is taken to have created it.
	if r.CreatedBy != actor.Name {
		return nil, refuse(ErrPermission, "idempotency key %q belongs to a run %s created; choose another key", key, r.CreatedBy)
	}
	return &Plan{Run: r, Tasks: tasks, Existing: true}, nil
}

// Plan resolves a run: targets, parameters, approval. It changes nothing,
// so it serves dry runs too.
func (p *Planner) Plan(ctx context.Context, actor Actor, spec Spec) (*Plan, error) {
	// Security-critical: only a responder (or a higher role, or a system
	// actor acting as one) creates runs, whichever entry point asks.
	if actor.Role < operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER {
		return nil, refuse(ErrPermission, "operator %q is a %s; creating a run needs responder", actor.Name, auth.RoleName(actor.Role))
	}
	if spec.Action == "" {
		return nil, refuse(ErrInvalidSpec, "no action given")
	}
	selText := spec.Selector
	accountRun := strings.TrimSpace(spec.Accounts) != ""
	if accountRun && strings.TrimSpace(selText) == "" {
		// Account-targeted runs go to workers unless told otherwise.
		selText = "role=worker"
	}
	sel, err := selector.Parse(selText)
	if err != nil {
		return nil, refuseErr(ErrInvalidSelector, err)
	}
	if err := apiview.ParseMaxErrors(spec.MaxErrors); err != nil {
		return nil, refuseErr(ErrInvalidSpec, err)
	}
	if len(spec.Reason) > MaxReason {
		return nil, refuse(ErrInvalidSpec, "the reason is longer than %d characters", MaxReason)
	}
	if len(spec.IdempotencyKey) > MaxIdempotencyKey {
		return nil, refuse(ErrInvalidSpec, "the idempotency key is longer than %d characters", MaxIdempotencyKey)
	}
	if spec.Deadline <= 0 || spec.Deadline > MaxDeadline {
		return nil, refuse(ErrInvalidSpec, "--deadline %s must be positive and at most %s", spec.Deadline, MaxDeadline)
	}
	var typed map[string]any
	if len(spec.ParamsJSON) > 0 {
		if err := json.Unmarshal(spec.ParamsJSON, &typed); err != nil {
			return nil, &Error{Kind: ErrInvalidParams, Msg: fmt.Sprintf("params_json is not a JSON object: %v", err), Cause: err}
		}
	}

	withAction, desc, err := p.matchAgents(ctx, sel, spec.Action)
	if err != nil {
		return nil, err
	}
	params, err := actionschema.ResolveParams(desc, spec.Params, typed)
	if err != nil {
		return nil, refuseErr(ErrInvalidParams, err)
	}
	paramsJSON, _ := json.Marshal(params)

	now := p.cfg.Clock()
	r := &store.Run{
		ID: ids.New("run"), Action: spec.Action, Selector: sel.String(), ParamsJSON: paramsJSON, CreatedBy: actor.Name, OnBehalfOf: actor.OnBehalfOf,
		CreatedAt: now, DeadlineAfter: spec.Deadline, MaxConcurrency: spec.MaxConcurrency, MaxErrors: strings.TrimSpace(spec.MaxErrors),
		Reason: spec.Reason, CaseID: spec.CaseID, Destructive: desc.GetDestructive(),
		UploadBPS: int64(min(spec.UploadBytesPerSecond, 1<<62)), MaxPerAccount: spec.MaxPerAccount,
		Accounts: strings.TrimSpace(spec.Accounts), Regions: strings.TrimSpace(spec.Regions), Owner: p.cfg.Owner,
	}
	var tasks []*store.Task
	if accountRun {
		if desc.GetDomain() != pluginv1.Domain_DOMAIN_SERVICE {
			return nil, refuse(ErrInvalidSpec, "action %q acts inside hosts; only service actions can target accounts", spec.Action)
		}
		workers, err := serving(withAction, spec.Action)
		if err != nil {
			return nil, err
		}
		if tasks, err = p.accountTasks(ctx, r, workers); err != nil {
			return nil, err
		}
	} else {
		if spec.Regions != "" || spec.MaxPerAccount != 0 {
			return nil, refuse(ErrInvalidSpec, "--regions and --max-per-account apply to account-targeted runs: add --accounts")
		}
		for i, v := range withAction {
			tasks = append(tasks, &store.Task{ID: ids.New("tsk"), RunID: r.ID, Seq: i, AgentID: v.ID, Hostname: v.Hostname,
				Status: agentv1.TaskStatus_TASK_STATUS_PENDING})
		}
	}
	if NeedsApproval(spec.RequireApproval, r.Destructive, len(tasks), p.cfg.ApprovalThreshold) {
		r.Status = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
	} else {
		r.Status = operatorv1.RunStatus_RUN_STATUS_RUNNING
		r.StartedAt = now
		r.Deadline = now.Add(spec.Deadline)
	}
	return &Plan{Run: r, Tasks: tasks}, nil
}

// NeedsApproval is the approval decision: a run waits for a second
// operator when its requester asks, or when it is destructive and has more
// targets than the threshold.
func NeedsApproval(requested, destructive bool, targets, threshold int) bool {
	return requested || (destructive && targets > threshold)
}

// matchAgents returns the agents the selector matches that offer the
// action, and the action's trusted description from the catalogue.
func (p *Planner) matchAgents(ctx context.Context, sel *selector.Selector, action string) ([]Agent, *pluginv1.ActionDescription, error) {
	// Security-critical: the action's schema, defaults and destructive
	// flag come from the controller's catalogue, never from an agent.
	desc, ok := p.cfg.Actions.Lookup(action)
	if !ok {
		return nil, nil, refuse(ErrUnknownAction, "unknown action %q: it is not in the controller's action catalogue (see `firebreak actions list`)", action)
	}
	views, err := p.Agents(ctx)
	if err != nil {
		return nil, nil, err
	}
	var matched, withAction []Agent
	var terminated []string
	offered := map[string]bool{}
	refused := 0
	for _, v := range views {
		if !sel.Match(v.Target()) {
			continue
		}
		// AWS reports the agent's instance terminated: no task would ever
		// reach it, and its certificate is refused.
		if v.Terminated() {
			terminated = append(terminated, v.ID)
			continue
		}
		matched = append(matched, v)
		for n := range v.Actions {
			offered[n] = true
		}
		// Security-critical: an agent that describes the action otherwise
		// than the catalogue (or twice) is not a target for it.
		if v.Actions[action] {
			withAction = append(withAction, v)
		} else if slices.ContainsFunc(v.Refused, func(r actioncatalog.Refusal) bool { return r.Action == action }) {
			refused++
		}
	}
	if len(matched) == 0 {
		if revoked := p.RevokedMatches(ctx, sel); len(revoked) > 0 {
			// Security-critical: a revoked agent is never sent a task; say so
			// rather than let it look merely offline.
			return nil, nil, refuse(ErrNoTargets, "selector %q matches only revoked agents (%s): revoked agents are never sent tasks",
				sel.String(), strings.Join(revoked, ", "))
		}
		if len(terminated) > 0 {
			return nil, nil, refuse(ErrNoTargets, "selector %q matches only agents whose instance AWS reports terminated (%s): they are never sent tasks",
				sel.String(), strings.Join(terminated, ", "))
		}
		return nil, nil, refuse(ErrNoTargets, "selector %q matches no enrolled agent: check `firebreak agents list`", sel.String())
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
		return nil, nil, refuse(ErrUnknownAction, "unknown action %q: none of the %d matching agents offers it (they offer: %s)%s",
			action, len(matched), strings.Join(names, ", "), extra)
	}
	return withAction, desc, nil
}

func cloneRun(r *store.Run) *store.Run {
	c := *r
	c.ParamsJSON = slices.Clone(r.ParamsJSON)
	return &c
}

func cloneTasks(tasks []*store.Task) []*store.Task {
	out := make([]*store.Task, len(tasks))
	for i, t := range tasks {
		c := *t
		c.OutputJSON, c.SignedTask, c.EvidenceIDs = slices.Clone(t.OutputJSON), slices.Clone(t.SignedTask), slices.Clone(t.EvidenceIDs)
		out[i] = &c
	}
	return out
}
