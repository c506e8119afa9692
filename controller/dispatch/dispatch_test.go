package dispatch_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// fleet is a fake set of agents: it records what the dispatcher pushes and
// answers tasks through a per-agent behaviour.
type fleet struct {
	mu        sync.Mutex
	d         *dispatch.Dispatcher
	connected map[string]bool
	pushed    map[string][]*agentv1.TaskSpec
	acks      map[string]int
	answer    func(agentID string, spec *agentv1.TaskSpec) *agentv1.TaskResult
}

func (f *fleet) Push(agentID string, msg *agentv1.ConnectResponse) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected[agentID] {
		return false
	}
	switch m := msg.GetMsg().(type) {
	case *agentv1.ConnectResponse_Task:
		spec := &agentv1.TaskSpec{}
		_ = proto.Unmarshal(m.Task.GetSpec(), spec)
		f.pushed[agentID] = append(f.pushed[agentID], spec)
		if f.answer != nil {
			if res := f.answer(agentID, spec); res != nil {
				go f.d.TaskResult(agentID, res)
			}
		}
	case *agentv1.ConnectResponse_ResultAck:
		f.acks[agentID]++
	}
	return true
}

func (f *fleet) connect(id string) {
	f.mu.Lock()
	f.connected[id] = true
	f.mu.Unlock()
	f.d.AgentConnected(id)
}

func (f *fleet) pushes(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pushed[id])
}

type harness struct {
	t     *testing.T
	st    store.Store
	f     *fleet
	d     *dispatch.Dispatcher
	clock *clock
	stop  func()
	runs  int
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newHarness(t *testing.T, dbPath string, answer func(string, *agentv1.TaskSpec) *agentv1.TaskResult) *harness {
	t.Helper()
	return newHarnessWith(t, dbPath, answer, nil)
}

// newHarnessWith is newHarness with the dispatcher's configuration changed
// by mut.
func newHarnessWith(t *testing.T, dbPath string, answer func(string, *agentv1.TaskSpec) *agentv1.TaskResult, mut func(*dispatch.Config)) *harness {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	clk := &clock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	f := &fleet{connected: map[string]bool{}, pushed: map[string][]*agentv1.TaskSpec{}, acks: map[string]int{}, answer: answer}
	cfg := dispatch.Config{Store: st, Signer: tasksign.NewSigner(key), Pusher: f, Clock: clk.Now, Tick: 10 * time.Millisecond}
	if mut != nil {
		mut(&cfg)
	}
	d, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = d.Run(ctx)
		close(done)
	}()
	h := &harness{t: t, st: st, f: f, d: d, clock: clk}
	h.stop = func() {
		cancel()
		<-done
		st.Close()
	}
	return h
}

// submit stores and submits a run over agents a0..a(n-1).
func (h *harness) submit(n int, mut func(*store.Run)) string {
	h.t.Helper()
	now := h.clock.Now()
	h.runs++
	r := &store.Run{ID: fmt.Sprintf("run-%d", h.runs), Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`),
		Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, CreatedBy: "alice", CreatedAt: now, StartedAt: now,
		DeadlineAfter: time.Hour, Deadline: now.Add(time.Hour)}
	if mut != nil {
		mut(r)
	}
	var tasks []*store.Task
	for i := 0; i < n; i++ {
		tasks = append(tasks, &store.Task{ID: fmt.Sprintf("%s-t%d", r.ID, i), RunID: r.ID, Seq: i, AgentID: fmt.Sprintf("a%d", i),
			Status: agentv1.TaskStatus_TASK_STATUS_PENDING})
	}
	if err := h.st.CreateRun(context.Background(), r, tasks); err != nil {
		h.t.Fatal(err)
	}
	h.d.Submit(r, tasks, "", "")
	return r.ID
}

// wait polls the run until cond holds; the loop's state is only reachable
// through its API.
func (h *harness) wait(runID string, what string, cond func(*operatorv1.Run) bool) *operatorv1.Run {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := h.d.Sync(context.Background()); err != nil {
			h.t.Fatal(err)
		}
		v, err := h.d.Snapshot(context.Background(), runID)
		if err != nil {
			h.t.Fatal(err)
		}
		r := wire(v)
		if r == nil {
			rr, tasks, err := h.st.GetRun(context.Background(), runID)
			if err != nil {
				h.t.Fatal(err)
			}
			r = storeview.Run(rr, tasks, nil)
		}
		if cond(r) {
			return r
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("run %s: timed out waiting for %s", runID, what)
	return nil
}

// wire is a dispatcher's view of a run as operators get it (nil: none).
func wire(v *dispatch.RunView) *operatorv1.Run {
	if v == nil {
		return nil
	}
	return storeview.RunWithCounts(v.Run, v.Tasks, v.Approvals, v.Counts)
}

func succeed(_ string, spec *agentv1.TaskSpec) *agentv1.TaskResult {
	return &agentv1.TaskResult{TaskId: spec.GetTaskId(), Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: []byte(`{"ok":true}`)}
}

func ended(r *operatorv1.Run) bool {
	return r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_RUNNING && r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
}

func TestRunToCompletion(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
	defer h.stop()
	for i := 0; i < 5; i++ {
		h.f.connect(fmt.Sprintf("a%d", i))
	}
	id := h.submit(5, nil)
	r := h.wait(id, "the end", ended)
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED || r.GetCounts().GetSucceeded() != 5 {
		t.Fatalf("run %v counts %v", r.GetStatus(), r.GetCounts())
	}
	for i := 0; i < 5; i++ {
		if n := h.f.pushes(fmt.Sprintf("a%d", i)); n != 1 {
			t.Errorf("agent a%d got %d tasks, want 1", i, n)
		}
	}
	// Every result was acknowledged only after it was stored.
	_, tasks, _ := h.st.GetRun(context.Background(), id)
	for _, tk := range tasks {
		if tk.Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED || len(tk.SignedTask) == 0 {
			t.Errorf("stored task %s: %v signed=%d", tk.ID, tk.Status, len(tk.SignedTask))
		}
	}
}

func TestMaxConcurrencyAndMaxErrors(t *testing.T) {
	tests := []struct {
		name          string
		targets       int
		concurrency   int
		maxErrors     string
		failAgents    map[string]bool
		wantStatus    operatorv1.RunStatus
		wantFailed    uint32
		wantCancelled uint32
	}{
		{name: "concurrency 1, no errors", targets: 4, concurrency: 1, wantStatus: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED},
		{name: "max-errors 0 stops after the first failure", targets: 4, concurrency: 1, maxErrors: "0",
			failAgents: map[string]bool{"a0": true}, wantStatus: operatorv1.RunStatus_RUN_STATUS_FAILED, wantFailed: 1, wantCancelled: 3},
		{name: "max-errors 1 tolerates one", targets: 5, concurrency: 1, maxErrors: "1",
			failAgents: map[string]bool{"a0": true, "a1": true}, wantStatus: operatorv1.RunStatus_RUN_STATUS_FAILED, wantFailed: 2, wantCancelled: 3},
		{name: "max-errors 50% of 4 is 2", targets: 4, concurrency: 1, maxErrors: "50%",
			failAgents: map[string]bool{"a0": true, "a1": true}, wantStatus: operatorv1.RunStatus_RUN_STATUS_FAILED, wantFailed: 2},
		{name: "no limit runs everything", targets: 4, concurrency: 2,
			failAgents: map[string]bool{"a0": true, "a1": true, "a2": true}, wantStatus: operatorv1.RunStatus_RUN_STATUS_FAILED, wantFailed: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			inflight, peak := 0, 0
			var h *harness
			h = newHarness(t, filepath.Join(t.TempDir(), "db"), func(agent string, spec *agentv1.TaskSpec) *agentv1.TaskResult {
				mu.Lock()
				inflight++
				peak = max(peak, inflight)
				mu.Unlock()
				go func() {
					time.Sleep(2 * time.Millisecond)
					mu.Lock()
					inflight--
					mu.Unlock()
					res := succeed(agent, spec)
					if tt.failAgents[agent] {
						res.Status, res.Error = agentv1.TaskStatus_TASK_STATUS_FAILED, "boom"
					}
					h.d.TaskResult(agent, res)
				}()
				return nil
			})
			defer h.stop()
			for i := 0; i < tt.targets; i++ {
				h.f.connect(fmt.Sprintf("a%d", i))
			}
			id := h.submit(tt.targets, func(r *store.Run) { r.MaxConcurrency, r.MaxErrors = tt.concurrency, tt.maxErrors })
			r := h.wait(id, "the end", ended)
			c := r.GetCounts()
			if r.GetStatus() != tt.wantStatus || c.GetFailed() != tt.wantFailed || c.GetCancelled() != tt.wantCancelled {
				t.Fatalf("status %v counts %v; want %v failed %d cancelled %d", r.GetStatus(), c, tt.wantStatus, tt.wantFailed, tt.wantCancelled)
			}
			if peak > tt.concurrency {
				t.Fatalf("%d tasks in flight at once; the limit is %d", peak, tt.concurrency)
			}
			for _, tk := range r.GetTasks() {
				if tk.GetStatus() == agentv1.TaskStatus_TASK_STATUS_CANCELLED && !strings.Contains(tk.GetError(), "max-errors") {
					t.Errorf("cancelled task error %q does not name max-errors", tk.GetError())
				}
			}
		})
	}
}

func TestOfflineAgentGetsTaskOnReturnOrGoesOffline(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
	defer h.stop()
	h.f.connect("a0")
	id := h.submit(3, nil)
	h.wait(id, "a0 done", func(r *operatorv1.Run) bool { return r.GetCounts().GetSucceeded() == 1 })
	// a1 returns before the deadline and gets its task at once.
	h.f.connect("a1")
	h.wait(id, "a1 done", func(r *operatorv1.Run) bool { return r.GetCounts().GetSucceeded() == 2 })
	// a2 never returns: past the deadline its task is offline.
	h.clock.Add(2 * time.Hour)
	r := h.wait(id, "the end", ended)
	if r.GetCounts().GetOffline() != 1 || r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_FAILED {
		t.Fatalf("status %v counts %v", r.GetStatus(), r.GetCounts())
	}
	for _, tk := range r.GetTasks() {
		if tk.GetAgentId() == "a2" && !strings.Contains(tk.GetError(), "did not connect before the run's deadline") {
			t.Errorf("offline error %q", tk.GetError())
		}
	}
}

func TestApprovalTwoPersonRule(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
	defer h.stop()
	h.f.connect("a0")
	h.f.connect("a1")
	awaiting := func(r *store.Run) {
		r.Status = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
		r.StartedAt, r.Deadline = time.Time{}, time.Time{}
		r.Destructive = true
	}
	id := h.submit(2, awaiting)
	ctx := context.Background()
	if h.f.pushes("a0") != 0 {
		t.Fatal("a run awaiting approval was dispatched")
	}
	if _, err := h.d.Decide(ctx, id, "alice", true, ""); !errors.Is(err, dispatch.ErrSelfApproval) {
		t.Fatalf("self-approval: %v", err)
	}
	v, err := h.d.Decide(ctx, id, "bob", true, "confirmed by IR lead")
	r := wire(v)
	if err != nil || r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("approve: %v %v", r.GetStatus(), err)
	}
	r = h.wait(id, "the end", ended)
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("status %v", r.GetStatus())
	}
	aps, _ := h.st.ListApprovals(ctx, id)
	if len(aps) != 1 || aps[0].Operator != "bob" || !aps[0].Approved || aps[0].Comment != "confirmed by IR lead" {
		t.Fatalf("approvals %+v", aps)
	}

	id2 := h.submit(2, awaiting)
	if _, err := h.d.Decide(ctx, id2, "bob", false, "not this host"); err != nil {
		t.Fatal(err)
	}
	r = h.wait(id2, "rejection", ended)
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_REJECTED || r.GetCounts().GetCancelled() != 2 {
		t.Fatalf("rejected run %v %v", r.GetStatus(), r.GetCounts())
	}
	if _, err := h.d.Decide(ctx, id2, "bob", true, ""); err == nil {
		t.Fatal("approving a rejected run worked")
	}

	// A run a playbook created for carol: neither the playbook nor carol
	// may approve it.
	id3 := h.submit(2, func(r *store.Run) {
		awaiting(r)
		r.CreatedBy, r.OnBehalfOf = "playbook:contain-host", "carol"
	})
	for _, who := range []string{"playbook:contain-host", "carol"} {
		if _, err := h.d.Decide(ctx, id3, who, true, ""); !errors.Is(err, dispatch.ErrSelfApproval) {
			t.Fatalf("approval by %s of a run created for carol: %v", who, err)
		}
	}
	if v, err := h.d.Decide(ctx, id3, "bob", true, ""); err != nil || v.Run.OnBehalfOf != "carol" {
		t.Fatalf("approval by bob: %v (on behalf of %q)", err, v.Run.OnBehalfOf)
	}
	h.wait(id3, "the end", ended)
}

// TestRestartResumes stops the dispatcher mid-run and starts a new one on
// the same database: a dispatched task is re-sent (the agent's journal
// keeps it from running twice) and pending tasks still run.
func TestRestartResumes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "db")
	h := newHarness(t, db, func(string, *agentv1.TaskSpec) *agentv1.TaskResult { return nil }) // agents never answer
	h.f.connect("a0")
	id := h.submit(2, nil)
	h.wait(id, "dispatch", func(r *operatorv1.Run) bool { return r.GetCounts().GetRunning() == 1 })
	h.stop()

	h2 := newHarness(t, db, succeed)
	defer h2.stop()
	h2.f.connect("a0")
	h2.f.connect("a1")
	r := h2.wait(id, "the end", ended)
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("after restart: %v %v", r.GetStatus(), r.GetCounts())
	}
	if h2.f.pushes("a0") != 1 || h2.f.pushes("a1") != 1 {
		t.Fatalf("pushes after restart: a0 %d a1 %d", h2.f.pushes("a0"), h2.f.pushes("a1"))
	}
	first := h.f.pushed["a0"][0]
	again := h2.f.pushed["a0"][0]
	if first.GetTaskId() != again.GetTaskId() || string(first.GetNonce()) != string(again.GetNonce()) {
		t.Fatal("the re-sent task is not the stored signed task")
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		in      string
		targets int
		want    int
	}{{"", 10, -1}, {"0", 10, 0}, {"3", 10, 3}, {"10%", 50, 5}, {"10%", 5, 0}, {"100%", 7, 7}, {"x", 3, -1}}
	for _, tt := range tests {
		if got := dispatch.Threshold(tt.in, tt.targets); got != tt.want {
			t.Errorf("Threshold(%q, %d) = %d, want %d", tt.in, tt.targets, got, tt.want)
		}
	}
	for _, bad := range []string{"x", "-1", "101%", "5.5"} {
		if apiview.ParseMaxErrors(bad) == nil {
			t.Errorf("ParseMaxErrors(%q) accepted", bad)
		}
	}
}

func TestMaxPerAccount(t *testing.T) {
	var mu sync.Mutex
	inflight := map[string]int{}
	peak := map[string]int{}
	var h *harness
	h = newHarness(t, filepath.Join(t.TempDir(), "db"), func(agent string, spec *agentv1.TaskSpec) *agentv1.TaskResult {
		mu.Lock()
		inflight[spec.GetAccount()]++
		peak[spec.GetAccount()] = max(peak[spec.GetAccount()], inflight[spec.GetAccount()])
		mu.Unlock()
		go func() {
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			inflight[spec.GetAccount()]--
			mu.Unlock()
			h.d.TaskResult(agent, succeed(agent, spec))
		}()
		return nil
	})
	defer h.stop()
	h.f.connect("w")
	// One worker, six tasks over two accounts, two regions each... all on
	// the same agent as an account-targeted run would be.
	now := h.clock.Now()
	r := &store.Run{ID: "run-acct", Action: "noop", Selector: "role=worker", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
		CreatedBy: "alice", CreatedAt: now, StartedAt: now, DeadlineAfter: time.Hour, Deadline: now.Add(time.Hour), MaxPerAccount: 1, Accounts: "all"}
	var tasks []*store.Task
	for i, acct := range []string{"111111111111", "111111111111", "111111111111", "222222222222", "222222222222", "222222222222"} {
		tasks = append(tasks, &store.Task{ID: fmt.Sprintf("t%d", i), RunID: r.ID, Seq: i, AgentID: "w", Account: acct, Region: "us-east-1",
			Status: agentv1.TaskStatus_TASK_STATUS_PENDING})
	}
	if err := h.st.CreateRun(context.Background(), r, tasks); err != nil {
		t.Fatal(err)
	}
	h.d.Submit(r, tasks, "", "")
	run := h.wait(r.ID, "the end", ended)
	if run.GetCounts().GetSucceeded() != 6 {
		t.Fatalf("counts %v", run.GetCounts())
	}
	for acct, p := range peak {
		if p > 1 {
			t.Errorf("account %s had %d tasks in flight; the limit is 1", acct, p)
		}
	}
}

// TestResultEvidenceIsWhatTheControllerStored checks that a task records
// the evidence the controller stored for it, whatever its agent claims.
func TestResultEvidenceIsWhatTheControllerStored(t *testing.T) {
	tests := []struct {
		name        string
		claimed     []string
		stored      []string
		storeErr    error
		want        []string
		wantRefused []string
	}{
		{"claim matches", []string{"ev-a"}, []string{"ev-a"}, nil, []string{"ev-a"}, nil},
		{"another task's item", []string{"ev-a", "ev-other-host"}, []string{"ev-a"}, nil, []string{"ev-a"}, []string{"ev-other-host"}},
		{"claimed fewer than stored", []string{"ev-a"}, []string{"ev-a", "ev-b"}, nil, []string{"ev-a", "ev-b"}, nil},
		{"nothing claimed", nil, []string{"ev-a"}, nil, nil, nil},
		{"store unreadable", []string{"ev-a"}, nil, fmt.Errorf("disk I/O error"), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var refused []any
			answer := func(_ string, spec *agentv1.TaskSpec) *agentv1.TaskResult {
				res := succeed("", spec)
				res.EvidenceIds = tt.claimed
				return res
			}
			h := newHarnessWith(t, filepath.Join(t.TempDir(), "db"), answer, func(c *dispatch.Config) {
				c.TaskEvidence = func(_ context.Context, taskID string) ([]string, error) {
					return tt.stored, tt.storeErr
				}
				c.Audit = func(_ context.Context, actor, action, target string, detail any) {
					if action == "task.evidence_refused" {
						mu.Lock()
						refused = append(refused, detail)
						mu.Unlock()
					}
				}
			})
			defer h.stop()
			h.f.connect("a0")
			id := h.submit(1, nil)
			h.wait(id, "the end", ended)
			_, tasks, err := h.st.GetRun(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if got := tasks[0].EvidenceIDs; strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("task records evidence %q, want %q", got, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if (len(tt.wantRefused) > 0) != (len(refused) == 1) {
				t.Fatalf("audited refusals %v, want one refusing %q", refused, tt.wantRefused)
			}
			if len(refused) == 1 && !strings.Contains(fmt.Sprint(refused[0]), strings.Join(tt.wantRefused, " ")) {
				t.Errorf("the refusal %v does not name %q", refused[0], tt.wantRefused)
			}
		})
	}
}

// TestApprovedRunPushesEachTaskOnce counts the signed tasks pushed per task
// after an approval: each is signed and pushed once, whenever its agent
// connected and however often its stream was replaced.
func TestApprovedRunPushesEachTaskOnce(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		// before connects agents (again) while the run awaits approval.
		before []string
		// after connects agents once the run is approved.
		after []string
	}{
		{name: "agents connected before the run", concurrency: 0},
		{name: "agents connected before the run, concurrency 2", concurrency: 2},
		{name: "streams replaced while awaiting approval", before: []string{"a0", "a1", "a0"}},
		{name: "an agent connects after the approval", after: []string{"a2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, filepath.Join(t.TempDir(), "db"), succeed)
			defer h.stop()
			h.f.connect("a0")
			h.f.connect("a1")
			if len(tt.after) == 0 {
				h.f.connect("a2")
			}
			// The loop has loaded the store and seen the connections: the
			// run arrives through Submit only.
			if err := h.d.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			id := h.submit(3, func(r *store.Run) {
				r.Status, r.StartedAt, r.Deadline, r.Destructive = operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL, time.Time{}, time.Time{}, true
				r.MaxConcurrency = tt.concurrency
			})
			for _, a := range tt.before {
				h.f.connect(a)
			}
			if _, err := h.d.Decide(context.Background(), id, "bob", true, ""); err != nil {
				t.Fatalf("approving: %v", err)
			}
			for _, a := range tt.after {
				h.f.connect(a)
			}
			if r := h.wait(id, "the end", ended); r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED {
				t.Fatalf("status %v counts %v", r.GetStatus(), r.GetCounts())
			}
			perTask := map[string]int{}
			h.f.mu.Lock()
			for _, specs := range h.f.pushed {
				for _, s := range specs {
					perTask[s.GetTaskId()]++
				}
			}
			h.f.mu.Unlock()
			for i := 0; i < 3; i++ {
				if task := fmt.Sprintf("%s-t%d", id, i); perTask[task] != 1 {
					t.Errorf("task %s was signed and pushed %d times, want once", task, perTask[task])
				}
			}
		})
	}
}

// TestAgentCannotReportOnAnotherAgentsTask has one agent send progress and
// a result for another agent's task: neither changes the task, and the
// task's own agent's result is the one recorded.
func TestAgentCannotReportOnAnotherAgentsTask(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), func(string, *agentv1.TaskSpec) *agentv1.TaskResult { return nil })
	defer h.stop()
	h.f.connect("a0")
	h.f.connect("a1")
	id := h.submit(2, nil)
	h.wait(id, "both tasks dispatched", func(r *operatorv1.Run) bool { return r.GetCounts().GetRunning() == 2 })
	victim := id + "-t0"
	h.d.TaskEvent("a1", &agentv1.TaskEvent{TaskId: victim, Event: &agentv1.TaskEvent_Started{Started: timestamppb.Now()}})
	h.d.TaskResult("a1", &agentv1.TaskResult{TaskId: victim, Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: []byte(`{"forged":true}`)})
	r := h.wait(id, "the forged reports to be handled", func(*operatorv1.Run) bool { return true })
	for _, tk := range r.GetTasks() {
		if tk.GetId() == victim && (tk.GetStatus() != agentv1.TaskStatus_TASK_STATUS_DISPATCHED || len(tk.GetOutputJson()) != 0 || tk.GetStartedAt() != nil) {
			t.Fatalf("a0's task after a1's forged reports: %v output %s started %v", tk.GetStatus(), tk.GetOutputJson(), tk.GetStartedAt())
		}
	}
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_RUNNING || r.GetCounts().GetSucceeded() != 0 {
		t.Fatalf("run %v counts %v after forged reports", r.GetStatus(), r.GetCounts())
	}
	h.d.TaskResult("a0", &agentv1.TaskResult{TaskId: victim, Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: "real failure"})
	h.d.TaskResult("a1", &agentv1.TaskResult{TaskId: id + "-t1", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: []byte(`{}`)})
	r = h.wait(id, "the end", ended)
	if r.GetStatus() != operatorv1.RunStatus_RUN_STATUS_FAILED || r.GetCounts().GetFailed() != 1 || r.GetCounts().GetSucceeded() != 1 {
		t.Fatalf("run %v counts %v", r.GetStatus(), r.GetCounts())
	}
	for _, tk := range r.GetTasks() {
		if tk.GetId() == victim && (tk.GetError() != "real failure" || len(tk.GetOutputJson()) != 0) {
			t.Fatalf("a0's task records %q output %s, not its own agent's result", tk.GetError(), tk.GetOutputJson())
		}
	}
}

// downStore is a store whose writes of task changes fail while down is set,
// as while the database restarts.
type downStore struct {
	store.Store
	mu       sync.Mutex
	down     bool
	refusals int
}

func (s *downStore) SaveOwnedTasks(ctx context.Context, owner string, tasks []*store.Task, runs []*store.Run) ([]string, error) {
	s.mu.Lock()
	down := s.down
	if down {
		s.refusals++
	}
	s.mu.Unlock()
	if down {
		return nil, errors.New("connection refused")
	}
	return s.Store.SaveOwnedTasks(ctx, owner, tasks, runs)
}

func (s *downStore) set(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *downStore) refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusals
}

// TestResultsTakenInWhileTheStoreIsDownAreStoredWhenItReturns: results
// that arrive while the store refuses writes, for longer than any fixed
// number of attempts, are neither dropped nor acknowledged; once the store
// is back the run ends in it, and each agent gets its acknowledgement.
func TestResultsTakenInWhileTheStoreIsDownAreStoredWhenItReturns(t *testing.T) {
	ds := &downStore{}
	h := newHarnessWith(t, filepath.Join(t.TempDir(), "db"), succeed, func(c *dispatch.Config) {
		ds.Store = c.Store
		c.Store = ds
	})
	defer h.stop()
	const n = 3
	id := h.submit(n, nil)
	ds.set(true)
	for i := 0; i < n; i++ {
		h.f.connect(fmt.Sprintf("a%d", i))
	}
	// The loop ends the run in memory; the store has not got it.
	deadline := time.Now().Add(10 * time.Second)
	for ds.refused() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("the persister tried %d times in 10 s", ds.refused())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.f.mu.Lock()
	acked := len(h.f.acks)
	h.f.mu.Unlock()
	if acked != 0 {
		t.Fatalf("results were acknowledged before they were stored: %v", h.f.acks)
	}
	r, _, err := h.st.GetRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != operatorv1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("the store holds the run as %v while it refused every write", r.Status)
	}

	ds.set(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.d.Sync(ctx); err != nil {
		t.Fatalf("Sync after the store returned: %v", err)
	}
	r, tasks, err := h.st.GetRun(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("the stored run after the store returned: %v", r.Status)
	}
	for _, tk := range tasks {
		if tk.Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED || string(tk.OutputJSON) != `{"ok":true}` {
			t.Fatalf("stored task %s: %v %s", tk.ID, tk.Status, tk.OutputJSON)
		}
	}
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	for i := 0; i < n; i++ {
		if a := fmt.Sprintf("a%d", i); h.f.acks[a] != 1 {
			t.Fatalf("agent %s got %d acknowledgements, want 1", a, h.f.acks[a])
		}
	}
}

// TestResultOfARunNotHeldHereIsAcknowledgedOnlyOnceStored: a result for a
// task whose run this dispatcher does not hold (a controller adopting the
// run, which the store names its owner before the loop holds it) is not
// acknowledged while the store has the task open: acknowledged, the agent
// would never send it again and would refuse the task as a replay, and the
// result would be lost. One the store has ended, or that names no task of
// the agent's, is acknowledged so the agent stops re-sending it.
func TestResultOfARunNotHeldHereIsAcknowledgedOnlyOnceStored(t *testing.T) {
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), nil)
	defer h.stop()
	ctx := context.Background()
	// The loop has loaded the store's runs: the one below is not its own.
	if err := h.d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	r := &store.Run{ID: "run-elsewhere", Action: "noop", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
		CreatedBy: "alice", CreatedAt: now, StartedAt: now, DeadlineAfter: time.Hour, Deadline: now.Add(time.Hour), Owner: "ctl-dead"}
	tasks := []*store.Task{
		{ID: "t-open", RunID: r.ID, Seq: 0, AgentID: "a0", Status: agentv1.TaskStatus_TASK_STATUS_DISPATCHED},
		{ID: "t-running", RunID: r.ID, Seq: 1, AgentID: "a1", Status: agentv1.TaskStatus_TASK_STATUS_RUNNING},
		{ID: "t-done", RunID: r.ID, Seq: 2, AgentID: "a2", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED},
		{ID: "t-of-a4", RunID: r.ID, Seq: 3, AgentID: "a4", Status: agentv1.TaskStatus_TASK_STATUS_DISPATCHED},
	}
	if err := h.st.CreateRun(ctx, r, tasks); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		agent, task string
		wantAck     bool
	}{
		{"a0", "t-open", false},
		{"a1", "t-running", false},
		{"a2", "t-done", true},
		{"a3", "t-of-a4", true},     // not its task: nothing to store
		{"a5", "tsk-unknown", true}, // no such task
	} {
		t.Run(tc.agent+" "+tc.task, func(t *testing.T) {
			h.f.connect(tc.agent)
			h.d.TaskResult(tc.agent, &agentv1.TaskResult{TaskId: tc.task, Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJson: []byte(`{}`)})
			if err := h.d.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			h.f.mu.Lock()
			acks := h.f.acks[tc.agent]
			h.f.mu.Unlock()
			if (acks == 1) != tc.wantAck || acks > 1 {
				t.Fatalf("%d acknowledgements, want ack %v", acks, tc.wantAck)
			}
		})
	}
	// Nothing of the results was written over the store's record.
	_, stored, err := h.st.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range stored {
		if st.Status != tasks[i].Status || len(st.OutputJSON) != 0 {
			t.Fatalf("task %s: %v %s after results for a run not held", st.ID, st.Status, st.OutputJSON)
		}
	}
}
