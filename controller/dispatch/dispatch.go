// Package dispatch runs runs: it pushes signed tasks to connected agents the
// moment they can run, applies rate control with SSM semantics (max
// concurrency, max errors), enforces deadlines, records results and streams
// progress to watchers.
//
// All run state is owned by one goroutine (the loop) and changed only by the
// events it receives, so there are no locks around it. The loop hands each
// batch of changes to a persister goroutine, which writes it in one
// transaction and then acknowledges the agents' results, so an agent keeps
// re-sending a result until it is durable.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Pusher delivers messages to connected agents without blocking.
type Pusher interface {
	// Push queues msg on the agent's stream and reports whether it could.
	Push(agentID string, msg *agentv1.ConnectResponse) bool
}

// Disowner is a Pusher that routes agents' reports to the runs' owners
// (route.Router): it is told of the tasks of runs this dispatcher no
// longer owns, so their reports go to the new owner.
type Disowner interface {
	Disown(taskIDs []string)
}

// AuditFunc records a system action in the audit log.
type AuditFunc func(ctx context.Context, actor, action, subject string, detail any)

// Config holds the dispatcher's dependencies.
type Config struct {
	// Store persists runs and tasks.
	Store store.Store
	// Signer signs tasks.
	Signer *tasksign.Signer
	// Pusher reaches connected agents. Leave it nil when the pusher is
	// built after the dispatcher because it needs the dispatcher (the
	// fleet), and give it with SetDeps instead.
	Pusher Pusher
	// Audit records run lifecycle events.
	Audit AuditFunc
	// Logger logs; defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// ResultGrace is how long after a run's deadline the controller waits
	// for a dispatched task's own result before marking it timed out.
	ResultGrace time.Duration
	// Tick is how often deadlines are checked (default 1s).
	Tick time.Duration
	// TaskEvidence returns the evidence items the controller stored for a
	// task. A result's evidence ids are the agent's claim; when the claim
	// is not empty and TaskEvidence is set, the task records the stored
	// items instead, and a claimed id that is not among them is refused
	// and audited. Nil trusts the claim (tests without an evidence store).
	// Like Pusher, it may come later through SetDeps.
	TaskEvidence func(ctx context.Context, taskID string) ([]string, error)
	// Owner is this controller's id. The dispatcher drives the runs it
	// owns: it claims the active runs with no live owner when it loads
	// (Load) and when Adopt is called, and stores task states only for
	// runs it still owns (store.Routing). A run another controller claimed
	// meanwhile is dropped. Empty: a lone dispatcher, which claims the
	// active runs under a name of its own and stores every change it
	// makes.
	Owner string
	// LiveWithin is how recent a controller's registry heartbeat must be
	// for its runs to stay its own (default 5s, cluster.LiveWithin).
	LiveWithin time.Duration
}

// Deps are the dispatcher's dependencies that are built after it, because
// they need the dispatcher themselves: the fleet pushes its tasks and
// reports to it, and the evidence service checks uploads against its runs.
type Deps struct {
	// Pusher reaches connected agents; required.
	Pusher Pusher
	// TaskEvidence is Config.TaskEvidence; nil trusts an agent's claim.
	TaskEvidence func(ctx context.Context, taskID string) ([]string, error)
}

// CheckAndSetDefaults names every missing dependency and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Store == nil {
		missing = append(missing, "Store")
	}
	if c.Signer == nil {
		missing = append(missing, "Signer")
	}
	if len(missing) > 0 {
		return fmt.Errorf("dispatch: missing %s", strings.Join(missing, ", "))
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
	if c.ResultGrace == 0 {
		c.ResultGrace = 30 * time.Second
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.LiveWithin == 0 {
		c.LiveWithin = 5 * time.Second
	}
	return nil
}

// Dispatcher owns every active run.
type Dispatcher struct {
	cfg    Config
	events chan any
	saves  chan *batch
	done   chan struct{}

	// wiring guards wired and started: the dependencies are set once,
	// before the loop starts, and read only by it afterwards.
	wiring  sync.Mutex
	wired   bool
	started bool

	// localOwner is the name a dispatcher without Config.Owner claims
	// runs under.
	localOwner string

	// Owned by the loop.
	runs      map[string]*runState
	tasks     map[string]*taskState
	byAgent   map[string]map[string]*taskState
	connected map[string]bool
	cur       *batch
	loaded    bool

	// approvals is read by metric collection too (see approvals.go).
	approvals approvalBook
	// states counts the tasks not final by state; metric collection reads
	// it too (see taskstates.go).
	states taskStates

	// strays bounds the store reads of ackIfStoredFinal; checking counts
	// them, for Sync.
	strays   chan struct{}
	checking inflight
}

// inflight counts goroutines in flight; wait returns once none is.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n is 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 {
		close(f.idle)
	}
}

// wait returns a channel closed once none is in flight.
func (f *inflight) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return f.idle
}

type runState struct {
	run   *store.Run
	tasks []*taskState
	// ready holds pending tasks whose agent is connected, in the order they
	// go out; a task is in it at most once (see queue).
	ready    []*taskState
	inflight int
	open     int
	// perAccount counts tasks in flight per AWS account.
	perAccount map[string]int
	errors     int
	threshold  int
	stopped    string
	subs       map[*Subscription]struct{}
	approvals  []*store.Approval
	// traceparent and tracestate are the W3C context of the span that
	// created the run; each dispatch continues it and carries its own in
	// the tasks, so the trace spans controller, agent and plugin.
	traceparent, tracestate string
}

type taskState struct {
	t   *store.Task
	run *runState
	// queued is set while the task is in its run's ready queue.
	queued bool
	// counted is the status states counts the task in (see recount).
	counted agentv1.TaskStatus
}

// queue adds a pending task to its run's ready queue unless it is there
// already. A run is made ready from several places (its submission, an
// agent's connection or replaced stream, an approval); queueing once keeps
// one dispatch from signing and pushing the same task twice.
func (rs *runState) queue(ts *taskState) {
	if ts.queued {
		return
	}
	ts.queued = true
	rs.ready = append(rs.ready, ts)
}

// clearReady empties the run's ready queue.
func (rs *runState) clearReady() {
	for _, ts := range rs.ready {
		ts.queued = false
	}
	rs.ready = nil
}

// batch is what one loop iteration changed.
type batch struct {
	tasks map[string]*store.Task
	runs  map[string]*store.Run
	acks  []ack
	done  []chan struct{}
}

type ack struct {
	agentID, taskID, runID string
}

func newBatch() *batch {
	return &batch{tasks: map[string]*store.Task{}, runs: map[string]*store.Run{}}
}

// merge adds a later batch to b. Rows are whole copies, so a later row of
// a task or run replaces the earlier one.
func (b *batch) merge(later *batch) {
	for id, t := range later.tasks {
		b.tasks[id] = t
	}
	for id, r := range later.runs {
		b.runs[id] = r
	}
	b.acks = append(b.acks, later.acks...)
	b.done = append(b.done, later.done...)
}

// New returns a dispatcher; call Run to start it. When cfg has no Pusher,
// call SetDeps once before Run.
func New(cfg Config) (*Dispatcher, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Dispatcher{
		cfg:        cfg,
		localOwner: ids.New("local"),
		wired:      cfg.Pusher != nil,
		events:     make(chan any, 65536),
		strays:     make(chan struct{}, maxStrayChecks),
		saves:      make(chan *batch, 64),
		done:       make(chan struct{}),
		runs:       map[string]*runState{},
		tasks:      map[string]*taskState{},
		byAgent:    map[string]map[string]*taskState{},
		connected:  map[string]bool{},
		cur:        newBatch(),
	}, nil
}

// Events the loop handles.
type (
	evSubmit struct {
		run         *store.Run
		tasks       []*store.Task
		traceparent string
		tracestate  string
	}
	evConnect    struct{ agentID string }
	evDisconnect struct{ agentID string }
	evTaskEvent  struct {
		agentID string
		ev      *agentv1.TaskEvent
	}
	evResult struct {
		agentID string
		res     *agentv1.TaskResult
	}
	evDecide struct {
		runID    string
		operator string
		approve  bool
		comment  string
		reply    chan decideReply
		// link is the approver's request span.
		link trace.SpanContext
	}
	evCancel struct {
		runID    string
		operator string
		reason   string
		reply    chan decideReply
	}
	evWatch struct {
		runID string
		reply chan watchReply
	}
	evUnwatch struct{ sub *Subscription }
	evAdopt   struct{ c claimed }
	evLost    struct{ runIDs []string }
	evResync  struct {
		sub   *Subscription
		reply chan *RunView
	}
	evSnapshot struct {
		runID string
		reply chan *RunView
	}
)

type decideReply struct {
	run *RunView
	err error
}

type watchReply struct {
	snap *RunView
	sub  *Subscription
}

// Errors returned to operators.
var (
	ErrRunNotFound   = errors.New("run not found")
	ErrNotAwaiting   = errors.New("the run is not awaiting approval")
	ErrSelfApproval  = errors.New("a run must be approved by an operator other than its creator (or the operator whose playbook created it)")
	ErrRunNotRunning = errors.New("the run has already ended")
)

// Load claims the active runs that have no live owner (store.Routing's
// ClaimRuns) and holds them. Call it once, before Run and before any
// Submit, so a resumed run is never added twice. Runs that other live
// controllers drive stay theirs.
func (d *Dispatcher) Load(ctx context.Context) error {
	c, err := d.claim(ctx)
	if err != nil {
		return fmt.Errorf("loading active runs: %w", err)
	}
	d.adopt(c)
	if len(c.runs) > 0 {
		d.cfg.Logger.Info("resumed active runs", "runs", len(c.runs))
	}
	d.loaded = true
	return nil
}

// claimed is what one ClaimRuns returned.
type claimed struct {
	runs      []*store.Run
	tasks     map[string][]*store.Task
	approvals map[string][]*store.Approval
}

func (d *Dispatcher) claim(ctx context.Context) (claimed, error) {
	owner := d.cfg.Owner
	if owner == "" {
		// A lone dispatcher claims under a name of its own, so that the
		// next one on the same store claims its runs again.
		owner = d.localOwner
	}
	runs, tasks, aps, err := d.cfg.Store.ClaimRuns(ctx, owner, d.cfg.Clock().Add(-d.cfg.LiveWithin))
	return claimed{runs: runs, tasks: tasks, approvals: aps}, err
}

// adopt holds claimed runs; in the loop, or before it starts.
func (d *Dispatcher) adopt(c claimed) {
	for _, r := range c.runs {
		if d.runs[r.ID] != nil {
			continue
		}
		rs := d.addRun(r, c.tasks[r.ID])
		rs.approvals = c.approvals[r.ID]
		if r.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING {
			// What the last owner dispatched goes again to the agents that
			// are connected: each agent's journal runs a task once and
			// answers a repeat with its result.
			for _, ts := range rs.tasks {
				if (ts.t.Status == agentv1.TaskStatus_TASK_STATUS_DISPATCHED || ts.t.Status == agentv1.TaskStatus_TASK_STATUS_RUNNING) && d.connected[ts.t.AgentID] {
					d.redeliver(ts)
				}
			}
			d.dispatchMore(rs)
		}
		// A run whose last result was stored just before a crash ends now.
		d.maybeFinish(rs)
	}
}

// Adopt claims the active runs whose owner is no longer live and drives
// them from here: the cluster's run resumption after a controller died
// (controller/cluster runs it as a leased singleton). It returns how many
// runs it adopted.
func (d *Dispatcher) Adopt(ctx context.Context) (int, error) {
	c, err := d.claim(ctx)
	if err != nil || len(c.runs) == 0 {
		return 0, err
	}
	d.cfg.Logger.Info("adopted the active runs of a controller that stopped", "runs", len(c.runs))
	d.send(evAdopt{c: c})
	return len(c.runs), nil
}

// Errors of wiring the dispatcher.
var (
	// ErrNotWired is returned by Run when the dispatcher has no pusher:
	// neither Config.Pusher nor SetDeps gave one.
	ErrNotWired = errors.New("dispatch: the dispatcher has no pusher to reach agents: give Config.Pusher or call SetDeps before Run")
	// ErrWiredTwice is returned by SetDeps when the dependencies are
	// already set, by Config or by an earlier SetDeps.
	ErrWiredTwice = errors.New("dispatch: the dispatcher's dependencies are already set (by Config or an earlier SetDeps)")
)

// SetDeps gives the dispatcher the dependencies built after it. It is
// called once, before Run, and only when Config had no Pusher; a second
// call, a call after Run started, or a Deps without a Pusher is an error.
func (d *Dispatcher) SetDeps(deps Deps) error {
	if deps.Pusher == nil {
		return errors.New("dispatch: SetDeps needs a Pusher")
	}
	d.wiring.Lock()
	defer d.wiring.Unlock()
	if d.wired {
		return ErrWiredTwice
	}
	if d.started {
		return errors.New("dispatch: SetDeps after Run started")
	}
	if deps.TaskEvidence != nil && d.cfg.TaskEvidence != nil {
		return errors.New("dispatch: TaskEvidence is given both in Config and to SetDeps")
	}
	d.cfg.Pusher = deps.Pusher
	if deps.TaskEvidence != nil {
		d.cfg.TaskEvidence = deps.TaskEvidence
	}
	d.wired = true
	return nil
}

// Run runs the loop until ctx ends, loading the active runs first if Load
// was not called. It refuses to start (ErrNotWired) when the dispatcher
// has no pusher, and to start twice.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.wiring.Lock()
	wired, started := d.wired, d.started
	d.started = wired && !started
	d.wiring.Unlock()
	if !wired {
		return ErrNotWired
	}
	if started {
		return errors.New("dispatch: Run called twice")
	}
	if !d.loaded {
		if err := d.Load(ctx); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.persist()
	}()
	defer func() {
		close(d.saves)
		wg.Wait()
		close(d.done)
	}()
	tick := time.NewTicker(d.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			d.flush()
			return nil
		case ev := <-d.events:
			d.handle(ev)
			// Drain what is queued so a burst is persisted in one batch.
		drain:
			for i := 0; i < 8192; i++ {
				select {
				case ev := <-d.events:
					d.handle(ev)
				default:
					break drain
				}
			}
			d.flush()
		case <-tick.C:
			d.checkDeadlines()
			d.flush()
		}
	}
}

func (d *Dispatcher) send(ev any) { d.events <- ev }

// Submit hands a stored run to the loop. traceparent and tracestate are the W3C context of
// the creating span, or empty.
func (d *Dispatcher) Submit(r *store.Run, tasks []*store.Task, traceparent, tracestate string) {
	d.send(evSubmit{run: r, tasks: tasks, traceparent: traceparent, tracestate: tracestate})
}

// AgentConnected tells the loop an agent holds a stream now.
func (d *Dispatcher) AgentConnected(agentID string) { d.send(evConnect{agentID: agentID}) }

// AgentDisconnected tells the loop an agent's stream ended.
func (d *Dispatcher) AgentDisconnected(agentID string) { d.send(evDisconnect{agentID: agentID}) }

// TaskEvent records a running task's progress.
func (d *Dispatcher) TaskEvent(agentID string, ev *agentv1.TaskEvent) {
	d.send(evTaskEvent{agentID: agentID, ev: ev})
}

// TaskResult records a task's outcome; the agent is acknowledged once the
// result is stored.
func (d *Dispatcher) TaskResult(agentID string, res *agentv1.TaskResult) {
	d.send(evResult{agentID: agentID, res: res})
}

// Decide approves or rejects a run awaiting approval.
func (d *Dispatcher) Decide(ctx context.Context, runID, operator string, approve bool, comment string) (*RunView, error) {
	reply := make(chan decideReply, 1)
	d.send(evDecide{runID: runID, operator: operator, approve: approve, comment: comment, reply: reply, link: trace.SpanContextFromContext(ctx)})
	select {
	case r := <-reply:
		return r.run, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Cancel cancels a run's tasks that have not started and asks agents to
// stop the running ones.
func (d *Dispatcher) Cancel(ctx context.Context, runID, operator, reason string) (*RunView, error) {
	reply := make(chan decideReply, 1)
	d.send(evCancel{runID: runID, operator: operator, reason: reason, reply: reply})
	select {
	case r := <-reply:
		return r.run, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Snapshot returns an active run with its tasks, or nil when the run is not
// active (read it from the store then).
func (d *Dispatcher) Snapshot(ctx context.Context, runID string) (*RunView, error) {
	reply := make(chan *RunView, 1)
	d.send(evSnapshot{runID: runID, reply: reply})
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (d *Dispatcher) handle(ev any) {
	switch e := ev.(type) {
	case evSync:
		d.cur.done = append(d.cur.done, e.done)
	case evAdopt:
		d.adopt(e.c)
	case evLost:
		d.onLost(e.runIDs)
	case evSubmit:
		if d.runs[e.run.ID] != nil {
			return
		}
		rs := d.addRun(e.run, e.tasks)
		rs.traceparent, rs.tracestate = e.traceparent, e.tracestate
		if rs.run.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING {
			d.dispatchMore(rs)
			d.maybeFinish(rs)
		}
	case evConnect:
		d.connected[e.agentID] = true
		d.onConnect(e.agentID)
	case evDisconnect:
		delete(d.connected, e.agentID)
	case evRevoked:
		d.onRevoked(e)
	case evTaskEvent:
		d.onTaskEvent(e.agentID, e.ev)
	case evResult:
		d.onResult(e.agentID, e.res)
	case evDecide:
		r, err := d.onDecide(e)
		e.reply <- decideReply{run: r, err: err}
	case evCancel:
		r, err := d.onCancel(e.runID, e.operator, e.reason)
		e.reply <- decideReply{run: r, err: err}
	case evWatch:
		e.reply <- d.onWatch(e.runID)
	case evUnwatch:
		d.onUnwatch(e.sub)
	case evResync:
		e.reply <- d.onResync(e.sub)
	case evSnapshot:
		if rs := d.runs[e.runID]; rs != nil {
			e.reply <- d.view(rs, true)
		} else {
			e.reply <- nil
		}
	}
}

func (d *Dispatcher) addRun(r *store.Run, tasks []*store.Task) *runState {
	rs := &runState{run: r, threshold: Threshold(r.MaxErrors, len(tasks)), perAccount: map[string]int{}}
	d.runs[r.ID] = rs
	for _, t := range tasks {
		ts := &taskState{t: t, run: rs}
		rs.tasks = append(rs.tasks, ts)
		d.recount(ts)
		if isFinal(t.Status) {
			if isError(t.Status) {
				rs.errors++
			}
			continue
		}
		rs.open++
		d.tasks[t.ID] = ts
		m := d.byAgent[t.AgentID]
		if m == nil {
			m = map[string]*taskState{}
			d.byAgent[t.AgentID] = m
		}
		m[t.ID] = ts
		switch t.Status {
		case agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
			rs.inflight++
			rs.perAccount[t.Account]++
		case agentv1.TaskStatus_TASK_STATUS_PENDING:
			// A run awaiting approval is made ready when it is approved.
			if d.connected[t.AgentID] && r.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING {
				rs.queue(ts)
			}
		}
	}
	d.noteAwaiting(rs)
	return rs
}

// Threshold converts a max-errors setting ("", "N" or "N%") to the number of
// failed targets tolerated; -1 means no limit. More failures than this
// cancel the tasks not yet started.
func Threshold(maxErrors string, targets int) int {
	s := strings.TrimSpace(maxErrors)
	if s == "" {
		return -1
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return -1
		}
		return n * targets / 100
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func isFinal(s agentv1.TaskStatus) bool {
	switch s {
	case agentv1.TaskStatus_TASK_STATUS_PENDING, agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
		return false
	}
	return true
}

func isError(s agentv1.TaskStatus) bool {
	switch s {
	case agentv1.TaskStatus_TASK_STATUS_FAILED, agentv1.TaskStatus_TASK_STATUS_TIMED_OUT,
		agentv1.TaskStatus_TASK_STATUS_REFUSED, agentv1.TaskStatus_TASK_STATUS_UNREACHABLE:
		return true
	}
	return false
}

func (d *Dispatcher) onConnect(agentID string) {
	for _, ts := range d.byAgent[agentID] {
		rs := ts.run
		switch ts.t.Status {
		case agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
			// The agent may have run it while we were apart; its journal
			// answers with the stored result or runs it once.
			d.redeliver(ts)
		case agentv1.TaskStatus_TASK_STATUS_PENDING:
			if rs.run.Status == operatorv1.RunStatus_RUN_STATUS_RUNNING && rs.stopped == "" {
				rs.queue(ts)
			}
		}
	}
	seen := map[*runState]bool{}
	for _, ts := range d.byAgent[agentID] {
		if !seen[ts.run] {
			seen[ts.run] = true
			d.dispatchMore(ts.run)
		}
	}
}

// redeliver pushes a dispatched task's stored signed task again.
func (d *Dispatcher) redeliver(ts *taskState) {
	if st, err := store.DecodeSignedTask(ts.t.SignedTask); err == nil && len(ts.t.SignedTask) > 0 {
		d.cfg.Pusher.Push(ts.t.AgentID, &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Task{Task: st}})
	}
}

// dispatchMore pushes ready tasks while the run has free slots.
func (d *Dispatcher) dispatchMore(rs *runState) {
	if rs.run.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING || rs.stopped != "" {
		return
	}
	var out, deferred []*taskState
	chosen := map[string]int{}
	for len(rs.ready) > 0 && (rs.run.MaxConcurrency <= 0 || rs.inflight+len(out) < rs.run.MaxConcurrency) {
		ts := rs.ready[0]
		rs.ready = rs.ready[1:]
		ts.queued = false
		if ts.t.Status != agentv1.TaskStatus_TASK_STATUS_PENDING || !d.connected[ts.t.AgentID] {
			continue
		}
		if acct := ts.t.Account; rs.run.MaxPerAccount > 0 && acct != "" && rs.perAccount[acct]+chosen[acct] >= rs.run.MaxPerAccount {
			// This account is at its limit; the task keeps its place.
			deferred = append(deferred, ts)
			continue
		}
		chosen[ts.t.Account]++
		out = append(out, ts)
	}
	if len(deferred) > 0 {
		for _, ts := range deferred {
			ts.queued = true
		}
		rs.ready = append(deferred, rs.ready...)
	}
	if len(out) == 0 {
		return
	}
	now := d.cfg.Clock()
	ctx, span := telemetry.Tracer().Start(telemetry.ExtractTraceContext(context.Background(), rs.traceparent, rs.tracestate), "run.dispatch",
		trace.WithAttributes(telemetry.AttrRunID.String(rs.run.ID), telemetry.AttrAction.String(rs.run.Action), attribute.Int("firebreak.dispatch.tasks", len(out))))
	defer span.End()
	tp, tstate := telemetry.InjectTraceContext(ctx)
	_, sign := telemetry.Tracer().Start(ctx, "tasks.sign")
	signed := d.signAll(rs, out, now, tp, tstate)
	sign.End()
	pushed := 0
	defer func() {
		span.SetAttributes(attribute.Int("firebreak.dispatch.pushed", pushed))
		telemetry.TaskDispatched(rs.run.Action, pushed)
	}()
	for i, ts := range out {
		st := signed[i]
		if st == nil {
			continue
		}
		if !d.cfg.Pusher.Push(ts.t.AgentID, &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Task{Task: st}}) {
			// The stream went away between the connect event and now; the
			// task waits for the agent's return.
			continue
		}
		ts.t.Status = agentv1.TaskStatus_TASK_STATUS_DISPATCHED
		ts.t.DispatchedAt = now
		ts.t.SignedTask, _ = store.EncodeSignedTask(st)
		pushed++
		rs.inflight++
		rs.perAccount[ts.t.Account]++
		d.changed(ts)
	}
}

// signAll signs tasks in parallel: a fleet-wide run signs thousands at once.
func (d *Dispatcher) signAll(rs *runState, out []*taskState, now time.Time, traceparent, tracestate string) []*agentv1.SignedTask {
	signed := make([]*agentv1.SignedTask, len(out))
	workers := runtime.GOMAXPROCS(0)
	if len(out) < 64 {
		workers = 1
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(out); i += workers {
				ts := out[i]
				spec := &agentv1.TaskSpec{
					TaskId:      ts.t.ID,
					RunId:       rs.run.ID,
					AgentId:     ts.t.AgentID,
					Action:      rs.run.Action,
					ParamsJson:  rs.run.ParamsJSON,
					IssuedAt:    timestamppb.New(now),
					ExpiresAt:   timestamppb.New(rs.run.Deadline),
					CaseId:      rs.run.CaseID,
					Operator:    rs.run.CreatedBy,
					Account:     ts.t.Account,
					Region:      ts.t.Region,
					Traceparent: traceparent,
					Tracestate:  tracestate,

					UploadBytesPerSecond: uint64(max(rs.run.UploadBPS, 0)),
				}
				st, err := d.cfg.Signer.Sign(spec)
				if err != nil {
					d.cfg.Logger.Error("signing a task failed", "task", ts.t.ID, "error", err)
					continue
				}
				signed[i] = st
			}
		}(w)
	}
	wg.Wait()
	return signed
}

func (d *Dispatcher) onTaskEvent(agentID string, ev *agentv1.TaskEvent) {
	ts := d.tasks[ev.GetTaskId()]
	// Security-critical: an agent may only report on its own tasks.
	if ts == nil || ts.t.AgentID != agentID {
		return
	}
	switch e := ev.GetEvent().(type) {
	case *agentv1.TaskEvent_Started:
		if ts.t.Status == agentv1.TaskStatus_TASK_STATUS_DISPATCHED {
			ts.t.Status = agentv1.TaskStatus_TASK_STATUS_RUNNING
			ts.t.StartedAt = e.Started.AsTime()
		}
	case *agentv1.TaskEvent_Progress:
		ts.t.LastMessage = clip(fmt.Sprintf("%d%% %s", e.Progress.GetPercent(), e.Progress.GetMessage()))
		if e.Progress.GetPercent() < 0 {
			ts.t.LastMessage = clip(e.Progress.GetMessage())
		}
	case *agentv1.TaskEvent_Log:
		ts.t.LastMessage = clip(e.Log.GetLevel() + ": " + e.Log.GetMessage())
	default:
		return
	}
	d.changed(ts)
}

func clip(s string) string {
	if len(s) > 512 {
		return s[:512]
	}
	return s
}

// maxOutputBytes caps the stored output of one task.
const maxOutputBytes = 1 << 20

func (d *Dispatcher) onResult(agentID string, res *agentv1.TaskResult) {
	ts := d.tasks[res.GetTaskId()]
	if ts == nil || ts.t.AgentID != agentID {
		if res.GetStatus() == agentv1.TaskStatus_TASK_STATUS_REFUSED {
			d.cfg.Audit(context.Background(), "agent:"+agentID, "task.refused", res.GetTaskId(), map[string]string{"reason": res.GetError()})
		}
		if ts == nil {
			// Not held here: a re-sent result of a task that ended, or a
			// result that reached this controller before its run did (the
			// store named it the owner of a run it is adopting, and the
			// run is not in the loop yet). Only the store tells them apart.
			d.ackIfStoredFinal(agentID, res.GetTaskId())
			return
		}
		// Not this agent's: acknowledge so it stops re-sending, and keep
		// the record unchanged.
		d.cur.acks = append(d.cur.acks, ack{agentID: agentID, taskID: res.GetTaskId()})
		return
	}
	status := res.GetStatus()
	if !isFinal(status) {
		status = agentv1.TaskStatus_TASK_STATUS_FAILED
	}
	rs := ts.run
	t := ts.t
	wasInflight := t.Status == agentv1.TaskStatus_TASK_STATUS_DISPATCHED || t.Status == agentv1.TaskStatus_TASK_STATUS_RUNNING
	t.Status = status
	t.Error = clipError(res.GetError())
	t.OutputJSON = res.GetOutputJson()
	if len(t.OutputJSON) > maxOutputBytes || (len(t.OutputJSON) > 0 && !json.Valid(t.OutputJSON)) {
		t.OutputJSON = nil
		if t.Error == "" {
			t.Error = "the action's output was too large or not JSON and was dropped"
		}
	}
	if res.GetStartedAt() != nil && t.StartedAt.IsZero() {
		t.StartedAt = res.GetStartedAt().AsTime()
	}
	t.FinishedAt = d.cfg.Clock()
	if res.GetFinishedAt() != nil {
		t.FinishedAt = res.GetFinishedAt().AsTime()
	}
	t.EvidenceIDs = d.checkEvidence(agentID, t, res.GetEvidenceIds())
	if status == agentv1.TaskStatus_TASK_STATUS_REFUSED {
		d.cfg.Audit(context.Background(), "agent:"+agentID, "task.refused", t.ID, map[string]string{"run": rs.run.ID, "reason": t.Error})
	}
	if wasInflight {
		rs.inflight--
		rs.perAccount[t.Account]--
	}
	d.traceResult(rs, t, agentID)
	if isError(status) {
		rs.errors++
	}
	d.finishTask(ts)
	d.cur.acks = append(d.cur.acks, ack{agentID: agentID, taskID: t.ID, runID: rs.run.ID})
	if rs.threshold >= 0 && rs.errors > rs.threshold && rs.stopped == "" {
		rs.stopped = fmt.Sprintf("cancelled: %d targets failed, more than max-errors %s", rs.errors, rs.run.MaxErrors)
		d.cancelPending(rs, rs.stopped)
	}
	d.dispatchMore(rs)
	d.maybeFinish(rs)
}

// maxStrayChecks bounds the store reads of ackIfStoredFinal in flight; a
// result beyond it is not acknowledged, and the agent sends it again.
const maxStrayChecks = 16

// ackIfStoredFinal acknowledges, off the loop, a result for a task the loop
// does not hold, when the store has that task ended (or has no such task,
// or has it as another agent's): then nothing of it is to be stored, and
// the agent stops re-sending it. A task still open in the store is not
// acknowledged. Security-critical for the record: an acknowledged result is
// never sent again, and the agent refuses the task as a replay from then
// on, so acknowledging one that is not stored would lose it.
func (d *Dispatcher) ackIfStoredFinal(agentID, taskID string) {
	select {
	case d.strays <- struct{}{}:
	default:
		return
	}
	d.checking.add()
	go func() {
		defer d.checking.done()
		defer func() { <-d.strays }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		t, err := d.cfg.Store.TaskOwnerOf(ctx, taskID)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			d.cfg.Logger.Warn("reading a task whose result reached no run here failed; the agent sends it again", "task", taskID, "error", err)
			return
		case t.AgentID == agentID && !isFinal(t.Status):
			d.cfg.Logger.Debug("a result for an open task of a run not held here is not acknowledged; the agent sends it again", "task", taskID,
				"run", t.RunID)
			return
		}
		d.cfg.Pusher.Push(agentID, &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_ResultAck{ResultAck: &agentv1.ResultAck{TaskId: taskID}}})
	}()
}

// traceResult records a result taken in: a span in the run's trace and
// the dispatch-to-result latency.
func (d *Dispatcher) traceResult(rs *runState, t *store.Task, agentID string) {
	status := apiview.EnumName(t.Status)
	var since time.Duration
	if !t.DispatchedAt.IsZero() {
		since = d.cfg.Clock().Sub(t.DispatchedAt)
	}
	telemetry.TaskFinished(rs.run.Action, status, since)
	ctx := telemetry.ExtractTraceContext(context.Background(), rs.traceparent, rs.tracestate)
	_, span := telemetry.Tracer().Start(ctx, "task.result", trace.WithAttributes(telemetry.NonEmpty(telemetry.AttrRunID.String(rs.run.ID),
		telemetry.AttrTaskID.String(t.ID), telemetry.AttrAgentID.String(agentID), telemetry.AttrAction.String(rs.run.Action),
		telemetry.AttrStatus.String(status), telemetry.AttrAccount.String(t.Account), telemetry.AttrRegion.String(t.Region))...))
	span.End()
}

// checkEvidence returns the evidence ids a task records: those the
// controller itself stored for the task, not those the agent claims.
// Security-critical: an agent cannot attach another host's evidence to its
// result, so reports and cases link each item to the task that uploaded it.
func (d *Dispatcher) checkEvidence(agentID string, t *store.Task, claimed []string) []string {
	if d.cfg.TaskEvidence == nil || len(claimed) == 0 {
		// A result that claims nothing costs the loop no query; what a
		// task stored is listed by `evidence list --run` in any case.
		return claimed
	}
	stored, err := d.cfg.TaskEvidence(context.Background(), t.ID)
	if err != nil {
		// Without the store's answer no claim can be confirmed.
		d.cfg.Logger.Error("reading a task's evidence failed; its result lists none", "task", t.ID, "error", err)
		return nil
	}
	var refused []string
	for _, id := range claimed {
		if !slices.Contains(stored, id) {
			refused = append(refused, id)
		}
	}
	if len(refused) > 0 {
		d.cfg.Logger.Warn("an agent claimed evidence its task did not store", "agent", agentID, "task", t.ID, "refused", refused)
		d.cfg.Audit(context.Background(), "agent:"+agentID, "task.evidence_refused", t.ID, map[string]any{"run": t.RunID,
			"claimed": claimed, "refused": refused, "stored": stored})
	}
	return stored
}

func clipError(s string) string {
	if len(s) > 4096 {
		return s[:4096] + "…"
	}
	return s
}

// finishTask records a final task and forgets it in the open-task indexes.
func (d *Dispatcher) finishTask(ts *taskState) {
	if _, open := d.tasks[ts.t.ID]; open {
		ts.run.open--
	}
	delete(d.tasks, ts.t.ID)
	if m := d.byAgent[ts.t.AgentID]; m != nil {
		delete(m, ts.t.ID)
		if len(m) == 0 {
			delete(d.byAgent, ts.t.AgentID)
		}
	}
	d.changed(ts)
}

func (d *Dispatcher) cancelPending(rs *runState, reason string) {
	for _, ts := range rs.tasks {
		if ts.t.Status == agentv1.TaskStatus_TASK_STATUS_PENDING {
			ts.t.Status = agentv1.TaskStatus_TASK_STATUS_CANCELLED
			ts.t.Error = reason
			ts.t.FinishedAt = d.cfg.Clock()
			d.finishTask(ts)
		}
	}
	rs.clearReady()
}

func (d *Dispatcher) maybeFinish(rs *runState) {
	if rs.run.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING || rs.open > 0 {
		return
	}
	status := operatorv1.RunStatus_RUN_STATUS_SUCCEEDED
	for _, ts := range rs.tasks {
		if ts.t.Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
			status = operatorv1.RunStatus_RUN_STATUS_FAILED
		}
	}
	if rs.stopped != "" && strings.HasPrefix(rs.stopped, "cancelled by") {
		status = operatorv1.RunStatus_RUN_STATUS_CANCELLED
	}
	d.endRun(rs, status)
}

func (d *Dispatcher) endRun(rs *runState, status operatorv1.RunStatus) {
	telemetry.RunFinished(rs.run.Action, apiview.EnumName(status))
	rs.run.Status = status
	rs.run.FinishedAt = d.cfg.Clock()
	d.cur.runs[rs.run.ID] = rs.run
	c := counts(rs)
	d.cfg.Audit(context.Background(), "system", "run.end", rs.run.ID, map[string]any{
		"status": apiview.EnumUpper(status), "succeeded": c.Succeeded, "failed": c.Failed,
		"cancelled": c.Cancelled, "offline": c.Offline,
	})
	d.endWatches(rs)
	d.approvals.remove(rs.run.ID)
	delete(d.runs, rs.run.ID)
}

func (d *Dispatcher) onDecide(e evDecide) (*RunView, error) {
	rs := d.runs[e.runID]
	if rs == nil {
		return nil, ErrRunNotFound
	}
	if rs.run.Status != operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
		return nil, ErrNotAwaiting
	}
	// Security-critical: two-person rule. The creator cannot approve their
	// own destructive run (they may withdraw it by rejecting), nor can the
	// operator a playbook created it for: the one who started the playbook
	// run or, for a run a rule proposed, the one who approved it.
	if e.approve && e.operator == rs.run.CreatedBy {
		return nil, fmt.Errorf("%w: %s created it", ErrSelfApproval, e.operator)
	}
	if e.approve && e.operator == rs.run.OnBehalfOf {
		return nil, fmt.Errorf("%w: %s created it on behalf of %s, who started or approved its playbook run",
			ErrSelfApproval, rs.run.CreatedBy, e.operator)
	}
	now := d.cfg.Clock()
	ap := &store.Approval{RunID: rs.run.ID, Operator: e.operator, Approved: e.approve, At: now, Comment: e.comment}
	if err := d.cfg.Store.AddApproval(context.Background(), ap); err != nil {
		return nil, fmt.Errorf("recording the decision: %w", err)
	}
	rs.approvals = append(rs.approvals, ap)
	d.traceApprovalWait(rs, e, now)
	if e.approve {
		d.cfg.Audit(context.Background(), "operator:"+e.operator, "run.approve", rs.run.ID, map[string]string{"comment": e.comment})
		d.startRun(rs, now)
	} else {
		d.cfg.Audit(context.Background(), "operator:"+e.operator, "run.reject", rs.run.ID, map[string]string{"comment": e.comment})
		reason := fmt.Sprintf("rejected by %s", e.operator)
		for _, ts := range rs.tasks {
			ts.t.Status = agentv1.TaskStatus_TASK_STATUS_CANCELLED
			ts.t.Error = reason
			ts.t.FinishedAt = now
			d.finishTask(ts)
		}
		d.endRun(rs, operatorv1.RunStatus_RUN_STATUS_REJECTED)
		return d.view(rs, false), nil
	}
	return d.view(rs, false), nil
}

// startRun moves an approved run to running; its deadline counts from now.
func (d *Dispatcher) startRun(rs *runState, now time.Time) {
	rs.run.Status = operatorv1.RunStatus_RUN_STATUS_RUNNING
	rs.run.StartedAt = now
	rs.run.Deadline = now.Add(rs.run.DeadlineAfter)
	d.cur.runs[rs.run.ID] = rs.run
	for _, ts := range rs.tasks {
		if ts.t.Status == agentv1.TaskStatus_TASK_STATUS_PENDING && d.connected[ts.t.AgentID] {
			rs.queue(ts)
		}
	}
	hdr := d.view(rs, false)
	for sub := range rs.subs {
		d.deliver(sub, Event{Kind: EventRun, Run: hdr})
	}
	d.dispatchMore(rs)
	d.maybeFinish(rs)
}

func (d *Dispatcher) onCancel(runID, operator, reason string) (*RunView, error) {
	rs := d.runs[runID]
	if rs == nil {
		return nil, ErrRunNotRunning
	}
	rs.stopped = "cancelled by " + operator
	if reason != "" {
		rs.stopped += ": " + reason
	}
	d.cfg.Audit(context.Background(), "operator:"+operator, "run.cancel", rs.run.ID, map[string]string{"reason": reason})
	d.cancelPending(rs, rs.stopped)
	for _, ts := range rs.tasks {
		if ts.t.Status == agentv1.TaskStatus_TASK_STATUS_DISPATCHED || ts.t.Status == agentv1.TaskStatus_TASK_STATUS_RUNNING {
			d.cfg.Pusher.Push(ts.t.AgentID, &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Cancel{
				Cancel: &agentv1.CancelTask{TaskId: ts.t.ID, Reason: rs.stopped}}})
		}
	}
	if rs.run.Status == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL {
		d.endRun(rs, operatorv1.RunStatus_RUN_STATUS_CANCELLED)
		return d.view(rs, false), nil
	}
	out := d.view(rs, false)
	d.maybeFinish(rs)
	return out, nil
}

// checkDeadlines ends tasks that can no longer run: pending ones whose
// agent stayed away become offline; dispatched ones with no result by the
// deadline plus a grace period time out.
func (d *Dispatcher) checkDeadlines() {
	now := d.cfg.Clock()
	for _, rs := range d.runs {
		if rs.run.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING || now.Before(rs.run.Deadline) {
			continue
		}
		changed := false
		for _, ts := range rs.tasks {
			switch ts.t.Status {
			case agentv1.TaskStatus_TASK_STATUS_PENDING:
				ts.t.Status = agentv1.TaskStatus_TASK_STATUS_OFFLINE
				ts.t.Error = fmt.Sprintf("the agent did not connect before the run's deadline (%s)", rs.run.Deadline.UTC().Format(time.RFC3339))
				ts.t.FinishedAt = now
				d.finishTask(ts)
				changed = true
			case agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
				if now.Before(rs.run.Deadline.Add(d.cfg.ResultGrace)) {
					continue
				}
				ts.t.Status = agentv1.TaskStatus_TASK_STATUS_TIMED_OUT
				ts.t.Error = "no result from the agent by the run's deadline; it may have run: check the host"
				ts.t.FinishedAt = now
				rs.inflight--
				rs.perAccount[ts.t.Account]--
				rs.errors++
				d.finishTask(ts)
				changed = true
			}
		}
		if changed {
			rs.clearReady()
			d.maybeFinish(rs)
		}
	}
}

// changed marks a task for the next persisted batch and tells watchers.
func (d *Dispatcher) changed(ts *taskState) {
	d.recount(ts)
	d.cur.tasks[ts.t.ID] = ts.t
	if len(ts.run.subs) == 0 {
		return
	}
	t := *ts.t
	msg := Event{Kind: EventTask, Task: &t}
	for sub := range ts.run.subs {
		d.deliver(sub, msg)
	}
}

// flush hands the iteration's changes to the persister.
func (d *Dispatcher) flush() {
	b := d.cur
	if len(b.tasks) == 0 && len(b.runs) == 0 && len(b.acks) == 0 && len(b.done) == 0 {
		return
	}
	d.cur = newBatch()
	// Copy the rows: the loop keeps mutating its own.
	for id, t := range b.tasks {
		c := *t
		b.tasks[id] = &c
	}
	for id, r := range b.runs {
		c := *r
		b.runs[id] = &c
	}
	d.saves <- b
}

// persist writes the loop's batches in order. A batch the store refuses
// (the database restarting, a failover, a network blip) is kept and
// tried again, with every batch queued meanwhile merged into it, until it
// is written: a result the loop has taken in is never dropped, because an
// agent whose stream stays up does not send it again, and the loop, which
// holds the task as final already, would not store it a second time. The
// acknowledgements and Sync waiters of a batch are released only once it
// is written. After the loop stops, a batch still refused is given up
// after shutdownAttempts: its results stay unacknowledged, so the agents
// send them again to whichever controller they reach next.
func (d *Dispatcher) persist() {
	saves := d.saves
	var pending *batch
	failures := 0
	for {
		if pending == nil {
			if saves == nil {
				return
			}
			b, ok := <-saves
			if !ok {
				return
			}
			pending = b
		}
		// Whatever queued while the last write ran goes in the same one.
		for saves != nil {
			select {
			case b, ok := <-saves:
				if !ok {
					saves = nil
					continue
				}
				pending.merge(b)
				continue
			default:
			}
			break
		}
		lost, err := d.save(pending)
		if err != nil {
			failures++
			if failures == 1 || failures%persistLogEvery == 0 {
				d.cfg.Logger.Error("persisting task changes failed; trying again, and results stay unacknowledged until stored",
					"tasks", len(pending.tasks), "runs", len(pending.runs), "attempts", failures, "error", err)
			}
			if saves == nil && failures >= shutdownAttempts {
				d.cfg.Logger.Error("the dispatcher stopped with task changes the store refused; the agents send their results again on their next connection",
					"tasks", len(pending.tasks), "runs", len(pending.runs))
				return
			}
			saves = d.waitRetry(saves, pending, failures)
			continue
		}
		if failures > 0 {
			d.cfg.Logger.Info("task changes persisted again", "tasks", len(pending.tasks), "runs", len(pending.runs), "failed_attempts", failures)
		}
		failures = 0
		d.release(pending, lost)
		pending = nil
	}
}

// Retrying a refused batch: the wait grows with each failure up to
// persistMaxWait; the log says so on the first failure and every
// persistLogEvery-th after it.
const (
	persistMaxWait   = 2 * time.Second
	persistLogEvery  = 20
	shutdownAttempts = 5
)

// waitRetry waits before the next attempt on pending, merging into it the
// batches that arrive meanwhile, so the loop never blocks on a full queue
// while the store is down. It returns saves, or nil once it is closed.
func (d *Dispatcher) waitRetry(saves chan *batch, pending *batch, failures int) chan *batch {
	timer := time.NewTimer(min(time.Duration(failures)*100*time.Millisecond, persistMaxWait))
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return saves
		case b, ok := <-saves:
			if !ok {
				return nil
			}
			pending.merge(b)
		}
	}
}

// save writes one batch's rows; lost are the runs another controller
// claimed, of which nothing was written.
func (d *Dispatcher) save(b *batch) (lost []string, err error) {
	if len(b.tasks) == 0 && len(b.runs) == 0 {
		return nil, nil
	}
	tasks := make([]*store.Task, 0, len(b.tasks))
	for _, t := range b.tasks {
		tasks = append(tasks, t)
	}
	runs := make([]*store.Run, 0, len(b.runs))
	for _, r := range b.runs {
		runs = append(runs, r)
	}
	return d.cfg.Store.SaveOwnedTasks(context.Background(), d.cfg.Owner, tasks, runs)
}

// release acts on a written batch: it hands the lost runs back to the
// loop, acknowledges the stored results and wakes the Sync waiters.
func (d *Dispatcher) release(b *batch, lost []string) {
	if len(lost) > 0 {
		// Another controller claimed these runs while this one could
		// not reach the store (a pause, a partition): it drives them
		// now, and nothing of them was written here.
		d.cfg.Logger.Warn("runs claimed by another controller were dropped; their changes here were not stored", "runs", lost)
		d.send(evLost{runIDs: lost})
	}
	for _, a := range b.acks {
		if a.runID != "" && slices.Contains(lost, a.runID) {
			// Not stored: the agent re-sends it to the run's owner.
			continue
		}
		d.cfg.Pusher.Push(a.agentID, &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_ResultAck{ResultAck: &agentv1.ResultAck{TaskId: a.taskID}}})
	}
	for _, c := range b.done {
		close(c)
	}
}

// onLost forgets runs that another controller owns now, ending their
// watches here: a watcher reads the run from the store, or watches it
// through its owner.
func (d *Dispatcher) onLost(runIDs []string) {
	var disowned []string
	defer func() {
		if do, ok := d.cfg.Pusher.(Disowner); ok && len(disowned) > 0 {
			do.Disown(disowned)
		}
	}()
	for _, id := range runIDs {
		rs := d.runs[id]
		if rs == nil {
			continue
		}
		for _, ts := range rs.tasks {
			if _, open := d.tasks[ts.t.ID]; open {
				disowned = append(disowned, ts.t.ID)
				delete(d.tasks, ts.t.ID)
				if m := d.byAgent[ts.t.AgentID]; m != nil {
					delete(m, ts.t.ID)
					if len(m) == 0 {
						delete(d.byAgent, ts.t.AgentID)
					}
				}
			}
			if c := d.states.of(ts.counted); c != nil {
				c.Add(-1)
			}
			ts.counted = agentv1.TaskStatus_TASK_STATUS_UNSPECIFIED
		}
		d.endWatches(rs)
		d.approvals.remove(id)
		delete(d.runs, id)
	}
}

// Sync waits until everything handled so far is persisted, and the
// results of tasks not held here are checked against the store (tests,
// shutdown).
func (d *Dispatcher) Sync(ctx context.Context) error {
	done := make(chan struct{})
	d.send(evSync{done: done})
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-d.checking.wait():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type evSync struct{ done chan struct{} }

func counts(rs *runState) store.RunCounts {
	c := store.RunCounts{Targets: len(rs.tasks)}
	for _, ts := range rs.tasks {
		c.Add(ts.t.Status)
	}
	return c
}

// RunView is a run as the loop held it at one moment: copies the loop no
// longer changes, so a reader needs no lock. Adapters turn it into their
// wire format (apiview.RunWithCounts).
type RunView struct {
	// Run is the run's header.
	Run *store.Run
	// Tasks are the run's tasks in order, or nil in a header-only view.
	Tasks []*store.Task
	// Approvals are the decisions taken on the run, in order.
	Approvals []*store.Approval
	// Counts tally every task of the run, whether or not Tasks holds them.
	Counts store.RunCounts
}

// view copies a run's state for readers outside the loop; withTasks adds
// its tasks.
func (d *Dispatcher) view(rs *runState, withTasks bool) *RunView {
	r := *rs.run
	v := &RunView{Run: &r, Approvals: slices.Clone(rs.approvals), Counts: counts(rs)}
	if withTasks {
		v.Tasks = make([]*store.Task, len(rs.tasks))
		for i, ts := range rs.tasks {
			t := *ts.t
			v.Tasks[i] = &t
		}
	}
	return v
}
