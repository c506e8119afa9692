// Package route routes runs between the controllers of a cluster.
//
// Every run has one owner, the controller whose dispatcher drives it (the
// one it was created through, or the one that adopted it when its owner
// died), and every agent holds its stream on one controller. The Router
// sits between this controller's fleet (the agent streams it holds) and its
// dispatcher (the runs it owns):
//
//   - the dispatcher pushes through it: a message for an agent held here
//     goes onto the agent's stream, one for an agent held by another
//     controller goes to that controller (PeerService.Deliver), batched;
//   - an agent's report on a task goes to the task's owner: this
//     dispatcher, or the owner's (PeerService.Report);
//   - each stream opened or closed here is recorded in the store with the
//     session's epoch and told to the other controllers
//     (PeerService.Presence), so every dispatcher knows which agents it can
//     reach, and where.
//
// Nothing polls on the fast path: a task is pushed to the holder the moment
// the owner dispatches it. A catch-up sweep every few seconds reads the
// sessions and the live controllers from the store, so a lost presence
// message or a controller that died without a word costs at most one
// sweep. With a store that is not shared (SQLite: one controller) the
// router passes everything straight through.
package route

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
)

// Fleet is the agent streams this controller holds (*fleet.Service).
type Fleet interface {
	// Push queues msg on a stream held here and reports whether it could.
	Push(agentID string, msg *agentv1.ConnectResponse) bool
	// Connected reports whether the agent holds a stream here.
	Connected(agentID string) bool
	// Facts returns the live facts of an agent held here, or nil.
	Facts(agentID string) *agentv1.AgentFacts
	// Agents returns every enrolled agent.
	Agents(ctx context.Context) ([]*store.Agent, error)
	// Refresh re-reads agents from the store: ones that connected to
	// another controller since this one last read them.
	Refresh(ctx context.Context, agentIDs []string)
}

// Dispatcher is this controller's run dispatcher (*dispatch.Dispatcher).
type Dispatcher interface {
	AgentConnected(agentID string)
	AgentDisconnected(agentID string)
	TaskEvent(agentID string, ev *agentv1.TaskEvent)
	TaskResult(agentID string, res *agentv1.TaskResult)
}

// Store is what the router keeps in the store.
type Store interface {
	store.Routing
	ListControllers(ctx context.Context, aliveSince time.Time) ([]*store.ControllerInfo, error)
}

// Config configures a Router.
type Config struct {
	// ID is this controller's id (cluster.NewID), the owner of its runs.
	ID string
	// Store keeps sessions and owners; its Shared decides whether the
	// router routes at all.
	Store Store
	// Dial connects to another controller's PeerService at an address
	// from the registry, authenticated as this controller. Required when
	// the store is shared.
	Dial func(address string) (Peer, error)
	// LiveWithin is how recent a controller's heartbeat must be for it to
	// count as live (cluster.LiveWithin).
	LiveWithin time.Duration
	// SweepEvery is the catch-up sweep's interval (default 5s).
	SweepEvery time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.ID == "" || c.Store == nil {
		return errors.New("route: the router needs the controller's ID and a Store")
	}
	if c.Store.Shared() && c.Dial == nil {
		return errors.New("route: a shared store needs Dial to reach the other controllers")
	}
	if c.LiveWithin <= 0 {
		c.LiveWithin = 5 * time.Second
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// location is where an agent's stream is: the holding controller and the
// session's epoch (0 while a session opened here is not stored yet).
type location struct {
	controller string
	epoch      int64
}

// Router routes between this controller's fleet and dispatcher and the
// other controllers. Build it with New, give it the dispatcher with
// SetDispatcher, and start Run.
type Router struct {
	cfg    Config
	shared bool
	// fleet and disp are given by Wire, once, before any agent connects.
	fleet Fleet
	disp  Dispatcher
	// runs answers the operator requests other controllers forward.
	runs RunService

	mu sync.Mutex
	// loc is where each reachable agent's stream is.
	loc map[string]location
	// owners is the owner of each task pushed to an agent held here,
	// until its result is acknowledged.
	owners map[string]string
	// peers are the links to the live controllers, by id.
	peers map[string]*link
	// held are agents' results that could not reach their task's owner
	// (no link to it, the store not answering, a report the peer did not
	// take), by task id; every sweep routes them again.
	held map[string]heldResult
	// heldBytes and heldBy bound what is held: in all, and per agent, so
	// that an agent sending results for made-up tasks while the store is
	// down cannot fill the controller's memory.
	heldBytes int
	heldBy    map[string]int

	changes chan sessionChange
}

type sessionChange struct {
	agentID string
	open    bool
	// factsChanged marks, on a stream still open, a change of the agent's
	// stored record: the others re-read it (open is ignored).
	factsChanged bool
}

// New returns a router; call Wire, then Run.
func New(cfg Config) (*Router, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Router{cfg: cfg, shared: cfg.Store.Shared(), loc: map[string]location{}, owners: map[string]string{},
		peers: map[string]*link{}, held: map[string]heldResult{}, heldBy: map[string]int{}, changes: make(chan sessionChange, 1<<16)}, nil
}

// Wire gives the router the fleet and the dispatcher, which are built
// after it because each holds the router (the fleet reports to it, the
// dispatcher pushes through it). Call it once, before the controller
// serves.
func (r *Router) Wire(f Fleet, d Dispatcher) {
	r.fleet, r.disp = f, d
}

// Shared reports whether the router routes between controllers.
func (r *Router) Shared() bool { return r.shared }

// Run writes sessions, tells the other controllers, and sweeps, until ctx
// ends. It returns at once with a store that is not shared.
func (r *Router) Run(ctx context.Context) error {
	if r.disp == nil || r.fleet == nil {
		return errors.New("route: Run before Wire")
	}
	if !r.shared {
		return nil
	}
	r.sweep(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.writeSessions(ctx)
	}()
	t := time.NewTicker(r.cfg.SweepEvery)
	defer t.Stop()
	defer wg.Wait()
	defer r.closePeers()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.sweep(ctx)
		}
	}
}

// AgentConnected implements fleet.Dispatcher: an agent opened a stream
// here.
func (r *Router) AgentConnected(agentID string) {
	if r.shared {
		r.mu.Lock()
		r.loc[agentID] = location{controller: r.cfg.ID}
		r.mu.Unlock()
		r.queueChange(sessionChange{agentID: agentID, open: true})
	}
	r.disp.AgentConnected(agentID)
}

// AgentDisconnected implements fleet.Dispatcher: an agent's stream here
// ended.
func (r *Router) AgentDisconnected(agentID string) {
	if !r.shared {
		r.disp.AgentDisconnected(agentID)
		return
	}
	r.mu.Lock()
	here := r.loc[agentID].controller == r.cfg.ID
	if here {
		delete(r.loc, agentID)
	}
	r.mu.Unlock()
	r.queueChange(sessionChange{agentID: agentID})
	if here {
		r.disp.AgentDisconnected(agentID)
	}
}

// AgentFactsChanged implements fleet.FactsNotifier: an agent's stored
// record changed here (its reported isolation, or a revocation); the
// other controllers re-read it.
func (r *Router) AgentFactsChanged(agentID string) {
	if r.shared {
		r.queueChange(sessionChange{agentID: agentID, factsChanged: true})
	}
}

func (r *Router) queueChange(c sessionChange) {
	select {
	case r.changes <- c:
	default:
		// The sweep of the other controllers finds the session anyway.
		r.cfg.Logger.Warn("the session queue is full; other controllers learn of this agent's stream at their next sweep", "agent", c.agentID)
	}
}

// TaskEvent implements fleet.Dispatcher: a report of an agent held here
// goes to the task's owner.
func (r *Router) TaskEvent(agentID string, ev *agentv1.TaskEvent) {
	switch l, local := r.route(ev.GetTaskId()); {
	case local:
		r.disp.TaskEvent(agentID, ev)
	case l != nil:
		l.report(agentID, ev, nil)
	}
}

// TaskResult implements fleet.Dispatcher: a result of an agent held here
// goes to the task's owner. One that cannot reach it now (the owner died
// and its runs are not adopted yet, this controller has no link to it, or
// the store did not answer) is held and routed again at every sweep: the
// agent, whose stream here stays up, would not send it again by itself
// before the owner delivers the task again, and a live owner has no reason
// to.
func (r *Router) TaskResult(agentID string, res *agentv1.TaskResult) {
	if !r.routeResult(agentID, res, false) {
		r.hold([]heldResult{{agentID: agentID, res: res, since: r.cfg.Clock(), size: proto.Size(res)}})
	}
}

// routeResult hands a result to its owner and reports whether it could;
// fresh asks the store for the owner rather than the cache.
func (r *Router) routeResult(agentID string, res *agentv1.TaskResult, fresh bool) bool {
	if fresh {
		r.mu.Lock()
		delete(r.owners, res.GetTaskId())
		r.mu.Unlock()
	}
	switch l, local := r.route(res.GetTaskId()); {
	case local:
		r.disp.TaskResult(agentID, res)
		return true
	case l != nil:
		return l.report(agentID, nil, res)
	}
	return false
}

// heldResult is a result waiting for a route to its owner.
type heldResult struct {
	agentID string
	res     *agentv1.TaskResult
	since   time.Time
	size    int
}

// Held results are bounded in number, bytes, number per agent and age:
// past any of them the agent's own re-sending (of a result still
// unacknowledged) is what remains.
const (
	maxHeld         = 1 << 16
	maxHeldBytes    = 256 << 20
	maxHeldPerAgent = 1 << 10
	heldTTL         = 10 * time.Minute
)

func (r *Router) hold(hs []heldResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := 0
	for _, h := range hs {
		id := h.res.GetTaskId()
		if old, ok := r.held[id]; ok {
			r.unhold(old)
			delete(r.held, id)
		}
		if len(r.held) >= maxHeld || r.heldBytes+h.size > maxHeldBytes || r.heldBy[h.agentID] >= maxHeldPerAgent {
			dropped++
			continue
		}
		r.held[id] = h
		r.heldBytes += h.size
		r.heldBy[h.agentID]++
	}
	if dropped > 0 {
		r.cfg.Logger.Warn("too many results wait for their owner; these are left to the agents to send again", "dropped", dropped,
			"held", len(r.held), "held_bytes", r.heldBytes)
	}
}

// unhold takes a held result out of the bounds' counts; r.mu is held.
func (r *Router) unhold(h heldResult) {
	r.heldBytes -= h.size
	if r.heldBy[h.agentID]--; r.heldBy[h.agentID] <= 0 {
		delete(r.heldBy, h.agentID)
	}
}

// holdReports takes back the results of reports a link did not send.
func (r *Router) holdReports(reps []*clusterv1.AgentReport) {
	now := r.cfg.Clock()
	var hs []heldResult
	for _, rep := range reps {
		if res := rep.GetResult(); res != nil {
			hs = append(hs, heldResult{agentID: rep.GetAgentId(), res: res, since: now, size: proto.Size(res)})
		}
	}
	if len(hs) > 0 {
		r.hold(hs)
	}
}

// routeHeld routes the held results again, each to the owner the store
// names now; those that still cannot go stay held until heldTTL.
func (r *Router) routeHeld() {
	r.mu.Lock()
	if len(r.held) == 0 {
		r.mu.Unlock()
		return
	}
	hs := make([]heldResult, 0, len(r.held))
	for _, h := range r.held {
		hs = append(hs, h)
	}
	r.held, r.heldBytes, r.heldBy = map[string]heldResult{}, 0, map[string]int{}
	r.mu.Unlock()
	now := r.cfg.Clock()
	var again []heldResult
	routed, expired := 0, 0
	for _, h := range hs {
		switch {
		case r.routeResult(h.agentID, h.res, true):
			routed++
		case now.Sub(h.since) > heldTTL:
			expired++
		default:
			again = append(again, h)
		}
	}
	r.hold(again)
	if routed > 0 || expired > 0 {
		r.cfg.Logger.Info("results that waited for their owner were routed again", "routed", routed, "expired", expired, "waiting", len(again))
	}
}

// route decides where an agent's report on a task goes: to this
// controller's dispatcher (local), to the owner's link, or nowhere for now
// (neither: the owner is not reachable).
func (r *Router) route(taskID string) (l *link, local bool) {
	if !r.shared {
		return nil, true
	}
	r.mu.Lock()
	owner, ok := r.owners[taskID]
	r.mu.Unlock()
	if !ok {
		// A task pushed by a controller that restarted since, or a result
		// re-sent after a reconnection: the store knows its run's owner.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, o, err := r.cfg.Store.TaskRunOwner(ctx, taskID)
		cancel()
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Not a task of this cluster: the dispatcher refuses it.
			return nil, true
		case err != nil:
			r.cfg.Logger.Warn("looking up a task's owner failed; the agent re-sends its report", "task", taskID, "error", err)
			return nil, false
		}
		owner = o
		r.mu.Lock()
		r.owners[taskID] = owner
		r.mu.Unlock()
	}
	if owner == r.cfg.ID {
		return nil, true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[owner], false
}

// Push implements dispatch.Pusher: msg goes onto the agent's stream here
// or to the controller that holds it.
func (r *Router) Push(agentID string, msg *agentv1.ConnectResponse) bool {
	if !r.shared {
		return r.fleet.Push(agentID, msg)
	}
	r.mu.Lock()
	loc, ok := r.loc[agentID]
	var l *link
	if ok && loc.controller != r.cfg.ID {
		l = r.peers[loc.controller]
	}
	if ack := msg.GetResultAck(); ack != nil {
		delete(r.owners, ack.GetTaskId())
	} else if t := msg.GetTask(); t != nil && (!ok || loc.controller == r.cfg.ID) {
		if id := taskID(t); id != "" {
			r.owners[id] = r.cfg.ID
		}
	}
	r.mu.Unlock()
	if !ok || loc.controller == r.cfg.ID {
		return r.fleet.Push(agentID, msg)
	}
	if l == nil {
		return false
	}
	return l.deliver(agentID, msg)
}

// Disown implements dispatch.Disowner: this controller no longer owns the
// tasks' runs, so the agents' reports on them go to the store's owner.
func (r *Router) Disown(taskIDs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range taskIDs {
		delete(r.owners, id)
	}
}

// Connected reports whether an agent holds a stream on any live controller
// of the cluster (runs.Fleet).
func (r *Router) Connected(agentID string) bool {
	if !r.shared {
		return r.fleet.Connected(agentID)
	}
	r.mu.Lock()
	_, ok := r.loc[agentID]
	r.mu.Unlock()
	return ok || r.fleet.Connected(agentID)
}

// Facts returns the live facts of an agent held here; the planner reads
// those of an agent held elsewhere from the store (runs.Fleet).
func (r *Router) Facts(agentID string) *agentv1.AgentFacts { return r.fleet.Facts(agentID) }

// Agents returns every enrolled agent (runs.Fleet).
func (r *Router) Agents(ctx context.Context) ([]*store.Agent, error) { return r.fleet.Agents(ctx) }

// Location returns the controller holding an agent's stream, or "".
func (r *Router) Location(agentID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loc[agentID].controller
}

// taskID reads the task id of a signed task without verifying it: the
// router only uses it to route the agent's report back to the owner, and
// the agent verifies the signature itself.
func taskID(st *agentv1.SignedTask) string {
	var spec agentv1.TaskSpec
	if err := proto.Unmarshal(st.GetSpec(), &spec); err != nil {
		return ""
	}
	return spec.GetTaskId()
}

// writeSessions records the sessions opened and closed here, in batches,
// and tells the other controllers.
func (r *Router) writeSessions(ctx context.Context) {
	epochs := map[string]int64{}
	// retry holds the changes of a batch the store refused: they are
	// written again, with the changes since, after a backoff (a store
	// restarting, a transaction that kept conflicting), rather than lost
	// until the agents reconnect.
	var retry []sessionChange
	backoff := time.Duration(0)
	for {
		batch := retry
		retry = nil
		if len(batch) == 0 {
			backoff = 0
			select {
			case <-ctx.Done():
				r.closeAll(epochs)
				return
			case c := <-r.changes:
				batch = append(batch, c)
			}
		} else {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				r.closeAll(epochs)
				return
			case <-t.C:
			}
		}
	drain:
		for len(batch) < 4096 {
			select {
			case c := <-r.changes:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		last := map[string]bool{}
		var order []string
		changed := map[string]bool{}
		for _, c := range batch {
			if c.factsChanged {
				changed[c.agentID] = true
				continue
			}
			if _, seen := last[c.agentID]; !seen {
				order = append(order, c.agentID)
			}
			last[c.agentID] = c.open
		}
		var opens []string
		closes := map[string]int64{}
		for _, id := range order {
			if last[id] {
				opens = append(opens, id)
			} else if e, ok := epochs[id]; ok {
				closes[id] = e
			}
		}
		if err := r.cfg.Store.CloseAgentSessions(ctx, r.cfg.ID, closes); err != nil {
			if ctx.Err() != nil {
				continue
			}
			r.cfg.Logger.Warn("recording closed agent sessions failed; trying again", "agents", len(closes), "error", err)
			retry = batch
			continue
		}
		for id := range closes {
			delete(epochs, id)
		}
		opened, err := r.cfg.Store.OpenAgentSessions(ctx, r.cfg.ID, opens)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			// The closes are written; what is tried again is the opens
			// (and the facts changes, which go out with them).
			r.cfg.Logger.Warn("recording agent sessions failed; trying again", "agents", len(opens), "error", err)
			for _, c := range batch {
				if c.factsChanged || last[c.agentID] {
					retry = append(retry, c)
				}
			}
			continue
		}
		var sessions []session
		for id, e := range closes {
			sessions = append(sessions, session{agentID: id, epoch: e})
		}
		r.mu.Lock()
		for _, id := range opens {
			e := opened[id]
			epochs[id] = e
			if l, ok := r.loc[id]; ok && l.controller == r.cfg.ID && l.epoch == 0 {
				r.loc[id] = location{controller: r.cfg.ID, epoch: e}
			}
			sessions = append(sessions, session{agentID: id, epoch: e, open: true})
			delete(changed, id) // an open makes the others read the agent anyway
		}
		// A change of an agent this controller does not hold (revoked
		// here while its stream is on another) goes out too: the holder
		// re-reads the agent, and closes the stream of a revoked one.
		for id := range changed {
			sessions = append(sessions, session{agentID: id, epoch: epochs[id], open: true, factsChanged: true})
		}
		peers := make([]*link, 0, len(r.peers))
		for _, l := range r.peers {
			peers = append(peers, l)
		}
		r.mu.Unlock()
		for _, l := range peers {
			l.presence(sessions)
		}
	}
}

// closeAll records every session opened here as closed, at shutdown.
func (r *Router) closeAll(epochs map[string]int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.cfg.Store.CloseAgentSessions(ctx, r.cfg.ID, epochs); err != nil {
		r.cfg.Logger.Warn("recording the agent sessions closed at shutdown failed; the others drop them when this controller's heartbeat ages", "error", err)
	}
}

// session is one session change, as PeerService.Presence carries it.
type session struct {
	agentID string
	epoch   int64
	open    bool
	// factsChanged: the agent's stored record changed on this open
	// session; the receiver re-reads it.
	factsChanged bool
}

// applyPresence applies session changes that controller from reported,
// and tells the dispatcher which agents it can reach now or no longer.
// It returns how many changed a location.
func (r *Router) applyPresence(from string, sessions []session) int {
	var up, down, reread []string
	r.mu.Lock()
	for _, s := range sessions {
		cur, ok := r.loc[s.agentID]
		if s.factsChanged {
			reread = append(reread, s.agentID)
			continue
		}
		if s.open {
			if ok && (cur.epoch >= s.epoch || (cur.controller == r.cfg.ID && cur.epoch == 0)) {
				// What this controller knows is as new or newer: a
				// session opened here and not stored yet is the newest.
				continue
			}
			r.loc[s.agentID] = location{controller: from, epoch: s.epoch}
			up = append(up, s.agentID)
			// The agent said hello there: its stored record (facts,
			// plugins, isolation) may be new to this controller.
			reread = append(reread, s.agentID)
			continue
		}
		if ok && cur.controller == from && cur.epoch == s.epoch {
			delete(r.loc, s.agentID)
			down = append(down, s.agentID)
		}
	}
	r.mu.Unlock()
	if len(reread) > 0 {
		// An agent that connected to another controller, or whose record
		// changed there, is read from the store again before runs target
		// it: it may be newly enrolled, or report other facts, plugins or
		// isolation than this controller's mirror holds.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r.fleet.Refresh(ctx, reread)
		cancel()
	}
	for _, id := range up {
		r.disp.AgentConnected(id)
	}
	for _, id := range down {
		r.disp.AgentDisconnected(id)
	}
	return len(up) + len(down)
}

// sweep reconciles with the store: the live controllers (links to new
// ones, none to dead ones) and the open sessions (a lost presence message,
// an agent of a controller that died).
func (r *Router) sweep(ctx context.Context) {
	telemetry.RouteSwept()
	since := r.cfg.Clock().Add(-r.cfg.LiveWithin)
	ctrls, err := r.cfg.Store.ListControllers(ctx, since)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("routing sweep: listing the controllers failed", "error", err)
		}
		return
	}
	sessions, err := r.cfg.Store.ListAgentSessions(ctx, since)
	if err != nil {
		if ctx.Err() == nil {
			r.cfg.Logger.Warn("routing sweep: listing agent sessions failed", "error", err)
		}
		return
	}
	live := map[string]string{}
	for _, c := range ctrls {
		if c.ID != r.cfg.ID && c.Address != "" {
			live[c.ID] = c.Address
		}
	}
	r.syncPeers(live)

	byCtrl := map[string][]session{}
	current := map[string]location{}
	for _, s := range sessions {
		current[s.AgentID] = location{controller: s.ControllerID, epoch: s.Epoch}
		if s.ControllerID != r.cfg.ID {
			if _, ok := live[s.ControllerID]; ok {
				byCtrl[s.ControllerID] = append(byCtrl[s.ControllerID], session{agentID: s.AgentID, epoch: s.Epoch, open: true})
			}
		}
	}
	// Locations elsewhere that the store no longer has: closed sessions
	// whose message was lost, and the agents of dead controllers.
	r.mu.Lock()
	for id, l := range r.loc {
		if l.controller == r.cfg.ID {
			continue
		}
		if cur, ok := current[id]; !ok || cur != l {
			byCtrl[l.controller] = append(byCtrl[l.controller], session{agentID: id, epoch: l.epoch})
		}
	}
	r.mu.Unlock()
	n := 0
	for from, ss := range byCtrl {
		n += r.applyPresence(from, ss)
	}
	telemetry.RouteCorrected("location", n)
	if n > 0 {
		r.cfg.Logger.Info("routing sweep corrected agent locations", "changes", n)
	}
	r.routeHeld()
}

// syncPeers keeps one link per live controller. The agents of a
// controller newly linked are made ready again: a task the dispatcher
// could not push to them while it had no link waits for that.
func (r *Router) syncPeers(live map[string]string) {
	var ready []string
	// The reports of closed links are held once r.mu is released.
	var unsent []*clusterv1.AgentReport
	defer func() {
		if len(unsent) > 0 {
			r.holdReports(unsent)
		}
		for _, id := range ready {
			r.disp.AgentConnected(id)
		}
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	linked := map[string]bool{}
	defer func() {
		if len(linked) == 0 {
			return
		}
		for agent, l := range r.loc {
			if linked[l.controller] {
				ready = append(ready, agent)
			}
		}
	}()
	for id, l := range r.peers {
		if addr, ok := live[id]; !ok || addr != l.addr {
			unsent = append(unsent, l.close()...)
			delete(r.peers, id)
		}
	}
	for id, addr := range live {
		if r.peers[id] != nil {
			continue
		}
		p, err := r.cfg.Dial(addr)
		if err != nil {
			r.cfg.Logger.Warn("connecting to another controller failed; retried at the next sweep", "controller_id", id, "address", addr, "error", err)
			continue
		}
		r.peers[id] = newLink(id, addr, p, r.cfg.Logger, r.holdReports)
		linked[id] = true
	}
}

func (r *Router) closePeers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, l := range r.peers {
		l.close()
		delete(r.peers, id)
	}
}

// Peers returns the ids of the controllers the router has links to.
func (r *Router) Peers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.peers))
	for id := range r.peers {
		out = append(out, id)
	}
	return out
}
