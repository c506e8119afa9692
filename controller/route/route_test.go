package route

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// sharedStore is a shared store for the router's unit tests: it knows
// task owners and nothing else. (The store's own tests cover the real
// thing on both backends.)
type sharedStore struct {
	store.Routing
	owners map[string]string
}

func (s *sharedStore) Shared() bool { return true }
func (s *sharedStore) TaskRunOwner(_ context.Context, taskID string) (string, string, error) {
	o, ok := s.owners[taskID]
	if !ok {
		return "", "", store.ErrNotFound
	}
	return "run", o, nil
}
func (s *sharedStore) ListControllers(context.Context, time.Time) ([]*store.ControllerInfo, error) {
	return nil, nil
}

// recorder is the dispatcher and the fleet, recording what reaches them.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}
func (r *recorder) AgentConnected(id string)    { r.add("connected " + id) }
func (r *recorder) AgentDisconnected(id string) { r.add("disconnected " + id) }
func (r *recorder) TaskEvent(id string, ev *agentv1.TaskEvent) {
	r.add("event " + id + " " + ev.GetTaskId())
}
func (r *recorder) TaskResult(id string, res *agentv1.TaskResult) {
	r.add("result " + id + " " + res.GetTaskId())
}
func (r *recorder) Push(id string, msg *agentv1.ConnectResponse) bool {
	r.add("push " + id)
	return true
}
func (r *recorder) Connected(string) bool                          { return false }
func (r *recorder) Facts(string) *agentv1.AgentFacts               { return nil }
func (r *recorder) Agents(context.Context) ([]*store.Agent, error) { return nil, nil }
func (r *recorder) Refresh(_ context.Context, ids []string)        { r.add("refresh " + ids[0]) }
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

// peerRecorder is another controller's PeerService client.
type peerRecorder struct {
	// The run methods are not used here (nil: a call panics).
	clusterv1.PeerServiceClient
	mu      sync.Mutex
	reports []string
	sent    chan struct{}
	// refuse is how many Report calls fail before one is taken.
	refuse int
}

func (p *peerRecorder) Deliver(_ context.Context, in *clusterv1.DeliverRequest, _ ...grpc.CallOption) (*clusterv1.DeliverResponse, error) {
	return &clusterv1.DeliverResponse{Pushed: make([]bool, len(in.GetDeliveries()))}, nil
}
func (p *peerRecorder) Report(_ context.Context, in *clusterv1.ReportRequest, _ ...grpc.CallOption) (*clusterv1.ReportResponse, error) {
	p.mu.Lock()
	if p.refuse > 0 {
		p.refuse--
		p.mu.Unlock()
		p.sent <- struct{}{}
		return nil, errors.New("connection reset")
	}
	for _, r := range in.GetReports() {
		p.reports = append(p.reports, r.GetAgentId()+" "+r.GetResult().GetTaskId())
	}
	p.mu.Unlock()
	p.sent <- struct{}{}
	return &clusterv1.ReportResponse{}, nil
}
func (p *peerRecorder) Presence(context.Context, *clusterv1.PresenceRequest, ...grpc.CallOption) (*clusterv1.PresenceResponse, error) {
	return &clusterv1.PresenceResponse{}, nil
}
func (p *peerRecorder) Close() error { return nil }

func newTestRouter(t *testing.T, owners map[string]string) (*Router, *recorder) {
	t.Helper()
	rt, err := New(Config{ID: "ctl-a", Store: &sharedStore{owners: owners}, Dial: func(string) (Peer, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rt.Wire(rec, rec)
	return rt, rec
}

// TestPresenceKeepsTheNewestSession applies presence messages in orders a
// network can deliver them: the newest epoch of an agent's session wins
// wherever it comes from, a session opened here and not stored yet beats
// any remote one, and a close only ends the session it names.
func TestPresenceKeepsTheNewestSession(t *testing.T) {
	type step struct {
		from     string
		sessions []session
		local    string // an agent connecting here first
	}
	tests := []struct {
		name      string
		steps     []step
		wantLoc   string
		wantCalls []string
	}{
		{
			name:      "an agent opens on B",
			steps:     []step{{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true}}}},
			wantLoc:   "ctl-b",
			wantCalls: []string{"refresh x", "connected x"},
		},
		{
			name: "it moves to C; B's late close of the old session changes nothing",
			steps: []step{
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true}}},
				{from: "ctl-c", sessions: []session{{agentID: "x", epoch: 2, open: true}}},
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1}}},
			},
			// The move re-reads the agent: its hello on C may have changed
			// its facts (an isolated host failing over).
			wantLoc:   "ctl-c",
			wantCalls: []string{"refresh x", "connected x", "refresh x", "connected x"},
		},
		{
			name: "its record changes on B while its stream stays: re-read, nothing else",
			steps: []step{
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true}}},
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true, factsChanged: true}}},
			},
			wantLoc:   "ctl-b",
			wantCalls: []string{"refresh x", "connected x", "refresh x"},
		},
		{
			name: "C's open arrives before B's: the older one is ignored",
			steps: []step{
				{from: "ctl-c", sessions: []session{{agentID: "x", epoch: 2, open: true}}},
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true}}},
			},
			wantLoc:   "ctl-c",
			wantCalls: []string{"refresh x", "connected x"},
		},
		{
			name: "its session on B closes",
			steps: []step{
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1, open: true}}},
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 1}}},
			},
			wantLoc:   "",
			wantCalls: []string{"refresh x", "connected x", "disconnected x"},
		},
		{
			name: "an agent that just connected here is not taken by an older remote session",
			steps: []step{
				{local: "x"},
				{from: "ctl-b", sessions: []session{{agentID: "x", epoch: 5, open: true}}},
			},
			wantLoc:   "ctl-a",
			wantCalls: []string{"connected x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, rec := newTestRouter(t, nil)
			for _, s := range tt.steps {
				if s.local != "" {
					rt.AgentConnected(s.local)
					continue
				}
				rt.applyPresence(s.from, s.sessions)
			}
			if got := rt.Location("x"); got != tt.wantLoc {
				t.Errorf("location %q, want %q", got, tt.wantLoc)
			}
			if got := rec.take(); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// TestReportsGoToTheTasksOwner routes agents' results: a task this
// controller pushed stays here, a task another controller delivered goes
// back to it, an unknown one is looked up in the store, and one whose
// owner cannot be reached goes nowhere (the agent keeps it unacknowledged).
func TestReportsGoToTheTasksOwner(t *testing.T) {
	rt, rec := newTestRouter(t, map[string]string{"t-store-b": "ctl-b", "t-store-a": "ctl-a", "t-dead": "ctl-dead"})
	peer := &peerRecorder{sent: make(chan struct{}, 8)}
	rt.peers["ctl-b"] = newLink("ctl-b", "b:1", peer, rt.cfg.Logger, nil)
	defer rt.closePeers()

	// A task this controller pushed to an agent it holds.
	rt.AgentConnected("here")
	rec.take()
	rt.Push("here", &agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Task{Task: signed(t, "t-local")}})
	// A task ctl-b delivered through this controller.
	rt.mu.Lock()
	rt.owners[taskID(signed(t, "t-from-b"))] = "ctl-b"
	rt.mu.Unlock()

	for _, id := range []string{"t-local", "t-from-b", "t-store-b", "t-store-a", "t-dead", "t-unknown"} {
		rt.TaskResult("here", &agentv1.TaskResult{TaskId: id})
	}
	got := rec.take()
	want := []string{"push here", "result here t-local", "result here t-store-a", "result here t-unknown"}
	if !slices.Equal(got, want) {
		t.Errorf("local dispatcher got %q, want %q", got, want)
	}
	deadline := time.After(10 * time.Second)
	for {
		peer.mu.Lock()
		n := len(peer.reports)
		peer.mu.Unlock()
		if n >= 2 {
			break
		}
		select {
		case <-peer.sent:
		case <-deadline:
			t.Fatalf("ctl-b got %d reports, want 2", n)
		}
	}
	peer.mu.Lock()
	defer peer.mu.Unlock()
	if want := []string{"here t-from-b", "here t-store-b"}; !slices.Equal(peer.reports, want) {
		t.Errorf("ctl-b got %q, want %q", peer.reports, want)
	}
}

func signed(t *testing.T, taskID string) *agentv1.SignedTask {
	t.Helper()
	b, err := proto.Marshal(&agentv1.TaskSpec{TaskId: taskID})
	if err != nil {
		t.Fatal(err)
	}
	return &agentv1.SignedTask{Spec: b}
}

// TestANewLinkMakesItsAgentsReadyAgain: presence can come from a
// controller this one has no link to yet, and a task pushed then has
// nowhere to go; when the link is made, the dispatcher is told the
// controller's agents are connected again, so it pushes what waits.
func TestANewLinkMakesItsAgentsReadyAgain(t *testing.T) {
	rt, rec := newTestRouter(t, nil)
	rt.cfg.Dial = func(string) (Peer, error) { return &peerRecorder{sent: make(chan struct{}, 8)}, nil }
	defer rt.closePeers()
	rt.applyPresence("ctl-b", []session{{agentID: "x", epoch: 1, open: true}, {agentID: "y", epoch: 1, open: true}})
	rt.applyPresence("ctl-c", []session{{agentID: "z", epoch: 1, open: true}})
	if rt.Push("x", &agentv1.ConnectResponse{}) {
		t.Fatal("a push to an agent of a controller with no link reported success")
	}
	rec.take()
	rt.syncPeers(map[string]string{"ctl-b": "b:7443"})
	got := rec.take()
	slices.Sort(got)
	if want := []string{"connected x", "connected y"}; !slices.Equal(got, want) {
		t.Fatalf("after linking ctl-b the dispatcher got %q, want %q", got, want)
	}
	rt.syncPeers(map[string]string{"ctl-b": "b:7443"})
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("a sweep that links nothing new told the dispatcher %q", got)
	}
}

// TestResultsWaitForTheirOwner: a result whose owner cannot be reached
// (no link to it yet, or a Report the peer did not take) is held, not
// lost, and the next sweep routes it to the owner the store names.
func TestResultsWaitForTheirOwner(t *testing.T) {
	rt, rec := newTestRouter(t, map[string]string{"t-nolink": "ctl-b", "t-refused": "ctl-b"})
	defer rt.closePeers()

	rt.TaskResult("x", &agentv1.TaskResult{TaskId: "t-nolink"})
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("the local dispatcher got %q", got)
	}
	rt.mu.Lock()
	n := len(rt.held)
	rt.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d results held, want the one with no route", n)
	}
	// The link to ctl-b comes up, but its first Report fails: that result
	// goes back to the held ones too.
	peer := &peerRecorder{sent: make(chan struct{}, 8), refuse: 1}
	rt.mu.Lock()
	rt.peers["ctl-b"] = newLink("ctl-b", "b:1", peer, rt.cfg.Logger, rt.holdReports)
	rt.mu.Unlock()
	rt.routeHeld()
	rt.TaskResult("y", &agentv1.TaskResult{TaskId: "t-refused"})
	// Sweeps later, every result reaches ctl-b once the peer takes them:
	// the refused batch went back to the held ones (link.unsent).
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for len(got) < 2 && time.Now().Before(deadline) {
		rt.routeHeld()
		select {
		case <-peer.sent:
		case <-time.After(50 * time.Millisecond):
		}
		peer.mu.Lock()
		got = slices.Clone(peer.reports)
		peer.mu.Unlock()
	}
	peer.mu.Lock()
	refused := peer.refuse
	peer.mu.Unlock()
	if refused != 0 {
		t.Fatal("the peer never refused a Report: the test did not exercise a failed send")
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if want := []string{"x t-nolink", "y t-refused"}; !slices.Equal(got, want) {
		t.Fatalf("ctl-b got %q, want %q", got, want)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.held) != 0 {
		t.Fatalf("%d results still held after the owner took them", len(rt.held))
	}
}

// TestHeldResultsAreBounded: an agent that sends results for tasks whose
// owner cannot be reached now holds at most maxHeldPerAgent of them, so it cannot fill the controller's memory or
// crowd out another agent's results.
func TestHeldResultsAreBounded(t *testing.T) {
	owners := map[string]string{}
	for i := range maxHeldPerAgent + 10 {
		owners[fmt.Sprintf("flood-%d", i)] = "ctl-gone"
	}
	owners["honest"] = "ctl-gone"
	rt, _ := newTestRouter(t, owners)
	for i := range maxHeldPerAgent + 10 {
		rt.TaskResult("mallory", &agentv1.TaskResult{TaskId: fmt.Sprintf("flood-%d", i), OutputJson: []byte(`{}`)})
	}
	rt.TaskResult("honest-agent", &agentv1.TaskResult{TaskId: "honest"})
	// A result held again (re-sent) replaces its earlier copy.
	rt.TaskResult("honest-agent", &agentv1.TaskResult{TaskId: "honest"})
	rt.mu.Lock()
	defer rt.mu.Unlock()
	tests := []struct {
		name      string
		got, want int
	}{
		{"mallory's held results", rt.heldBy["mallory"], maxHeldPerAgent},
		{"the honest agent's", rt.heldBy["honest-agent"], 1},
		{"all held", len(rt.held), maxHeldPerAgent + 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if _, ok := rt.held["honest"]; !ok {
		t.Error("the honest agent's result was not held")
	}
	sum := 0
	for _, h := range rt.held {
		sum += h.size
	}
	if sum != rt.heldBytes || sum == 0 {
		t.Errorf("held bytes counted %d, the held results add up to %d", rt.heldBytes, sum)
	}
}

// sessionStore is a shared store whose session writes fail a given
// number of times before they are taken, as while PostgreSQL restarts.
type sessionStore struct {
	sharedStore
	mu         sync.Mutex
	failOpens  int
	failCloses int
	open       map[string]int64
}

func (s *sessionStore) OpenAgentSessions(_ context.Context, _ string, ids []string) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ids) > 0 && s.failOpens > 0 {
		s.failOpens--
		return nil, errors.New("connection refused")
	}
	out := map[string]int64{}
	for _, id := range ids {
		s.open[id]++
		out[id] = s.open[id]
	}
	return out, nil
}

func (s *sessionStore) CloseAgentSessions(_ context.Context, _ string, epochs map[string]int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(epochs) > 0 && s.failCloses > 0 {
		s.failCloses--
		return errors.New("connection refused")
	}
	for id, e := range epochs {
		if s.open[id] == e {
			s.open[id] = -e // closed
		}
	}
	return nil
}

func (s *sessionStore) state(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id]
}

// TestSessionWritesTheStoreRefusedAreTriedAgain: an agent's session that
// the store refused to record (opened, or closed) is written again after a
// backoff, not left out until the agent reconnects: other controllers
// route to the agents the store names.
func TestSessionWritesTheStoreRefusedAreTriedAgain(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		failOpens, failCloses int
	}{
		{"opens refused twice", 2, 0},
		{"closes refused twice", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &sessionStore{failOpens: tc.failOpens, failCloses: tc.failCloses, open: map[string]int64{}}
			rt, err := New(Config{ID: "ctl-a", Store: st, Dial: func(string) (Peer, error) { return nil, nil }})
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			rt.Wire(rec, rec)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				rt.writeSessions(ctx)
				close(done)
			}()
			defer func() {
				cancel()
				<-done
			}()
			wait := func(what string, ok func() bool) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for !ok() {
					if time.Now().After(deadline) {
						t.Fatalf("never: %s", what)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			rt.AgentConnected("agt-1")
			wait("the session of agt-1 recorded open", func() bool { return st.state("agt-1") == 1 })
			rt.AgentDisconnected("agt-1")
			wait("the session of agt-1 recorded closed", func() bool { return st.state("agt-1") == -1 })
		})
	}
}
