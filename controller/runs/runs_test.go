package runs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/runs"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The catalogue of the tests: a destructive host action, a harmless host
// action and a service action for workers.
func descriptions() map[string]*pluginv1.ActionDescription {
	return map[string]*pluginv1.ActionDescription{
		"isolate": {Name: "isolate", Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Destructive: true, Roles: []string{"host"},
			Params: []*pluginv1.ParamSpec{{Name: "allow", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]"}}},
		"sysinfo": {Name: "sysinfo", Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Roles: []string{"host"},
			Params: []*pluginv1.ParamSpec{{Name: "depth", Type: pluginv1.ParamType_PARAM_TYPE_INT, DefaultJson: "1"}}},
		"contain-key": {Name: "contain-key", Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_SERVICE, Destructive: true, Roles: []string{"worker"},
			Params: []*pluginv1.ParamSpec{{Name: "key", Type: pluginv1.ParamType_PARAM_TYPE_STRING}}},
	}
}

// fleet is a fixed set of agents; every agent is connected.
type fleet struct {
	agents []*store.Agent
}

func (f *fleet) Agents(context.Context) ([]*store.Agent, error) { return f.agents, nil }
func (f *fleet) Connected(string) bool                          { return true }
func (f *fleet) Facts(string) *agentv1.AgentFacts               { return nil }

// agent is an agent of a role reporting the catalogue's descriptions of
// the named actions.
func agent(id, role, account string, actions ...string) *store.Agent {
	a := &store.Agent{ID: id, Role: role, Hostname: id, Facts: &agentv1.AgentFacts{Hostname: id, Account: account}}
	for _, n := range actions {
		a.Plugins = append(a.Plugins, &agentv1.PluginInfo{Sha256: "00", Description: descriptions()[n]})
	}
	return a
}

// dispatcher records what it is handed.
type dispatcher struct {
	mu   sync.Mutex
	runs []*store.Run
}

func (d *dispatcher) Submit(r *store.Run, _ []*store.Task, _, _ string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.runs = append(d.runs, r)
}

func (d *dispatcher) submitted() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.runs)
}

type harness struct {
	p     *runs.Planner
	store *store.SQL
	disp  *dispatcher
}

func newHarness(t *testing.T, wrap func(runs.Store) runs.Store, agents ...*store.Agent) *harness {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := actioncatalog.New(descriptions())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{store: st, disp: &dispatcher{}}
	var rs runs.Store = st
	if wrap != nil {
		rs = wrap(st)
	}
	h.p, err = runs.New(runs.Config{Store: rs, Fleet: &fleet{agents: agents}, Actions: cat, Dispatcher: h.disp, ApprovalThreshold: 2,
		Clock: func() time.Time { return time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var alice = runs.Actor{Name: "alice", Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER}

func spec(action, sel string) runs.Spec {
	return runs.Spec{Action: action, Selector: sel, Deadline: runs.DefaultDeadline}
}

func TestConfigNamesMissingDependencies(t *testing.T) {
	_, err := runs.New(runs.Config{})
	if err == nil || err.Error() != "runs: missing Actions, Dispatcher, Fleet, Store" {
		t.Fatalf("error %v", err)
	}
}

// TestRefusals checks each refusal's kind and its exact text, which the
// operator API passes on word for word.
func TestRefusals(t *testing.T) {
	revoked := agent("h-old", "host", "", "sysinfo")
	revoked.Revoked = true
	terminated := agent("h-gone", "host", "", "sysinfo")
	terminated.TerminatedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, nil, agent("h1", "host", "", "sysinfo", "isolate"), agent("h2", "host", "", "isolate"), revoked, terminated)
	with := func(s runs.Spec, f func(*runs.Spec)) runs.Spec { f(&s); return s }
	tests := []struct {
		name  string
		actor runs.Actor
		spec  runs.Spec
		kind  error
		msg   string
	}{
		{"viewer", runs.Actor{Name: "vic", Role: operatorv1.OperatorRole_OPERATOR_ROLE_VIEWER}, spec("sysinfo", "all"), runs.ErrPermission,
			`operator "vic" is a viewer; creating a run needs responder`},
		{"no action", alice, spec("", "all"), runs.ErrInvalidSpec, "no action given"},
		{"selector does not parse", alice, spec("sysinfo", "colour=red"), runs.ErrInvalidSelector,
			`selector term 1 "colour=red": unknown key "colour" (keys: id, role, hostname, account, region, instance_id, connected, isolated, simulated, label.NAME)`},
		{"max errors", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.MaxErrors = "lots" }), runs.ErrInvalidSpec, ""},
		{"reason too long", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.Reason = strings.Repeat("x", runs.MaxReason+1) }),
			runs.ErrInvalidSpec, "the reason is longer than 1024 characters"},
		{"no deadline", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.Deadline = 0 }), runs.ErrInvalidSpec,
			"--deadline 0s must be positive and at most 168h0m0s"},
		{"params not an object", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.ParamsJSON = []byte(`[1]`) }), runs.ErrInvalidParams,
			"params_json is not a JSON object: json: cannot unmarshal array into Go value of type map[string]interface {}"},
		{"unknown parameter", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.Params = map[string]string{"bogus": "1"} }),
			runs.ErrInvalidParams, ""},
		{"parameter of the wrong type", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.Params = map[string]string{"depth": "deep"} }),
			runs.ErrInvalidParams, ""},
		{"action not catalogued", alice, spec("steal", "all"), runs.ErrUnknownAction,
			"unknown action \"steal\": it is not in the controller's action catalogue (see `firebreak actions list`)"},
		{"action no matching agent offers", alice, spec("sysinfo", "id=h2"), runs.ErrUnknownAction,
			`unknown action "sysinfo": none of the 1 matching agents offers it (they offer: isolate)`},
		{"no agent matches", alice, spec("sysinfo", "hostname=nowhere"), runs.ErrNoTargets,
			"selector \"hostname=nowhere\" matches no enrolled agent: check `firebreak agents list`"},
		{"only revoked agents match", alice, spec("sysinfo", "id=h-old"), runs.ErrNoTargets,
			`selector "id=h-old" matches only revoked agents (h-old): revoked agents are never sent tasks`},
		{"only terminated agents match", alice, spec("sysinfo", "id=h-gone"), runs.ErrNoTargets,
			`selector "id=h-gone" matches only agents whose instance AWS reports terminated (h-gone): they are never sent tasks`},
		{"regions without accounts", alice, with(spec("sysinfo", "all"), func(s *runs.Spec) { s.Regions = "all" }), runs.ErrInvalidSpec,
			"--regions and --max-per-account apply to account-targeted runs: add --accounts"},
		{"host action on accounts", alice, with(spec("sysinfo", "role=host"), func(s *runs.Spec) { s.Accounts = "all" }), runs.ErrInvalidSpec,
			`action "sysinfo" acts inside hosts; only service actions can target accounts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := h.p.Create(context.Background(), tt.actor, tt.spec)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("error %v (plan %v), want one of kind %v", err, plan, tt.kind)
			}
			var refusal *runs.Error
			if !errors.As(err, &refusal) || refusal.Error() != refusal.Msg {
				t.Fatalf("error %T %v is not a *runs.Error", err, err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Fatalf("message\n %s\nwant\n %s", err, tt.msg)
			}
		})
	}
	if n := h.disp.submitted(); n != 0 {
		t.Fatalf("refused runs were handed to the dispatcher %d times", n)
	}
	if stored, err := h.store.ListRuns(context.Background(), 10); err != nil || len(stored) != 0 {
		t.Fatalf("refused runs left %d runs in the store (%v)", len(stored), err)
	}
}

// TestTerminatedAgentsAreNotTargets: an agent whose instance AWS reports
// terminated gets no task, while the others the selector matches do.
func TestTerminatedAgentsAreNotTargets(t *testing.T) {
	gone := agent("h-gone", "host", "", "sysinfo")
	gone.TerminatedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, nil, agent("h1", "host", "", "sysinfo"), gone, agent("h2", "host", "", "sysinfo"))
	for _, sel := range []string{"all", "role=host", "hostname!=h2"} {
		t.Run(sel, func(t *testing.T) {
			plan, err := h.p.Create(context.Background(), alice, spec("sysinfo", sel))
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range plan.Tasks {
				if task.AgentID == "h-gone" {
					t.Fatalf("selector %q planned a task for the terminated agent: %+v", sel, plan.Tasks)
				}
			}
			if len(plan.Tasks) == 0 {
				t.Fatalf("selector %q planned no task at all", sel)
			}
		})
	}
}

func TestApprovalDecision(t *testing.T) {
	h := newHarness(t, nil, agent("h1", "host", "", "sysinfo", "isolate"), agent("h2", "host", "", "sysinfo", "isolate"),
		agent("h3", "host", "", "sysinfo", "isolate"))
	tests := []struct {
		name     string
		action   string
		selector string
		require  bool
		want     operatorv1.RunStatus
	}{
		{"destructive over more targets than the threshold", "isolate", "all", false, operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL},
		{"destructive within the threshold", "isolate", "id!=h3", false, operatorv1.RunStatus_RUN_STATUS_RUNNING},
		{"harmless over many targets", "sysinfo", "all", false, operatorv1.RunStatus_RUN_STATUS_RUNNING},
		{"approval asked for", "sysinfo", "id=h1", true, operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec(tt.action, tt.selector)
			s.RequireApproval = tt.require
			plan, err := h.p.Create(context.Background(), alice, s)
			if err != nil {
				t.Fatal(err)
			}
			r := plan.Run
			if r.Status != tt.want {
				t.Fatalf("status %v over %d targets, want %v", r.Status, len(plan.Tasks), tt.want)
			}
			started := !r.StartedAt.IsZero() && r.Deadline.Equal(r.StartedAt.Add(runs.DefaultDeadline))
			if started != (tt.want == operatorv1.RunStatus_RUN_STATUS_RUNNING) {
				t.Fatalf("started %v deadline %v for a run %v", r.StartedAt, r.Deadline, r.Status)
			}
			stored, tasks, err := h.store.GetRun(context.Background(), r.ID)
			if err != nil || stored.Status != tt.want || len(tasks) != len(plan.Tasks) || stored.CreatedBy != "alice" {
				t.Fatalf("stored %+v with %d tasks (%v)", stored, len(tasks), err)
			}
		})
	}
}

func TestDryRunStoresNothing(t *testing.T) {
	h := newHarness(t, nil, agent("h1", "host", "", "sysinfo"))
	s := spec("sysinfo", "all")
	s.DryRun, s.IdempotencyKey = true, "k"
	plan, err := h.p.Create(context.Background(), alice, s)
	if err != nil || len(plan.Tasks) != 1 || string(plan.Run.ParamsJSON) != `{"depth":1}` {
		t.Fatalf("plan %+v (%v)", plan, err)
	}
	if stored, _ := h.store.ListRuns(context.Background(), 10); len(stored) != 0 || h.disp.submitted() != 0 {
		t.Fatalf("a dry run stored %d runs and submitted %d", len(stored), h.disp.submitted())
	}
}

func TestAccountFanOut(t *testing.T) {
	// wa-central lives in no account; wb-222 lives in 222222222222.
	h := newHarness(t, nil, agent("wa-central", "worker", "", "contain-key"), agent("wb-222", "worker", "222222222222", "contain-key"),
		agent("h1", "host", "", "sysinfo"))
	if err := h.store.ReplaceAccounts(context.Background(), []*store.Account{
		{ID: "111111111111", OUPath: "r/ou-sec", Regions: []string{"us-east-1"}},
		{ID: "222222222222", OUPath: "r/ou-wl", Regions: []string{"us-east-1", "eu-west-1"}},
		{ID: "333333333333", OUPath: "r/ou-wl", Regions: []string{"us-east-1"}},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		accounts string
		regions  string
		want     []string // account/region@agent per task, in order
		kind     error
	}{
		{name: "every account, each worker's region", accounts: "all",
			want: []string{"111111111111/@wa-central", "222222222222/@wb-222", "333333333333/@wa-central"}},
		{name: "an OU, every enabled region", accounts: "ou=ou-wl", regions: "all",
			want: []string{"222222222222/us-east-1@wb-222", "222222222222/eu-west-1@wb-222", "333333333333/us-east-1@wa-central"}},
		{name: "regions the accounts have not enabled are left out", accounts: "111111111111,222222222222", regions: "eu-west-1",
			want: []string{"222222222222/eu-west-1@wb-222"}},
		{name: "nothing selected", accounts: "111111111111", regions: "eu-west-1", kind: runs.ErrInvalidSelector},
		{name: "unknown account", accounts: "444444444444", kind: runs.ErrInvalidSelector},
		{name: "not an account id", accounts: "12345", kind: runs.ErrInvalidSelector},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec("contain-key", "")
			s.Accounts, s.Regions, s.DryRun = tt.accounts, tt.regions, true
			plan, err := h.p.Create(context.Background(), alice, s)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("error %v, want %v", err, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, task := range plan.Tasks {
				if task.Seq != i {
					t.Fatalf("task %d has seq %d", i, task.Seq)
				}
				got = append(got, fmt.Sprintf("%s/%s@%s", task.Account, task.Region, task.AgentID))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("tasks %v\nwant %v", got, tt.want)
			}
			if plan.Run.Selector != "role=worker" {
				t.Fatalf("selector %q: an account-targeted run goes to workers", plan.Run.Selector)
			}
		})
	}
}

func TestNoAccountsKnown(t *testing.T) {
	h := newHarness(t, nil, agent("w1", "worker", "", "contain-key"))
	s := spec("contain-key", "")
	s.Accounts = "all"
	_, err := h.p.Create(context.Background(), alice, s)
	if !errors.Is(err, runs.ErrNoTargets) || err.Error() != "no accounts are known: run `firebreak accounts sync --management-account ID` first" {
		t.Fatalf("error %v", err)
	}
}

func TestIdempotentCreate(t *testing.T) {
	h := newHarness(t, nil, agent("h1", "host", "", "sysinfo"))
	playbook := runs.Actor{Name: "playbook:contain", Role: operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER, OnBehalfOf: "bob"}
	s := spec("sysinfo", "all")
	s.Reason, s.IdempotencyKey = "playbook contain step a [pbr_1]", "pbrun:pbr_1:a"
	first, err := h.p.Create(context.Background(), playbook, s)
	if err != nil || first.Existing {
		t.Fatalf("first create: %+v %v", first, err)
	}
	tests := []struct {
		name     string
		actor    runs.Actor
		existing bool
		kind     error
	}{
		{"the same actor again", playbook, true, nil},
		{"another actor with the key", alice, false, runs.ErrPermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			again, err := h.p.Create(context.Background(), tt.actor, s)
			if tt.kind != nil {
				if !errors.Is(err, tt.kind) {
					t.Fatalf("error %v, want %v", err, tt.kind)
				}
				return
			}
			if err != nil || !again.Existing || again.Run.ID != first.Run.ID || len(again.Tasks) != 1 {
				t.Fatalf("create again: %+v %v, want run %s", again, err, first.Run.ID)
			}
		})
	}
	stored, _, err := h.store.GetRun(context.Background(), first.Run.ID)
	if err != nil || stored.Reason != s.Reason || stored.IdempotencyKey != s.IdempotencyKey || stored.OnBehalfOf != "bob" ||
		stored.CreatedBy != "playbook:contain" {
		t.Fatalf("stored run %+v (%v): the reason stays the requester's text and the key is its own field", stored, err)
	}
	if all, _ := h.store.ListRuns(context.Background(), 10); len(all) != 1 || h.disp.submitted() != 1 {
		t.Fatalf("%d runs stored and %d submitted, want one", len(all), h.disp.submitted())
	}
}

// missFirstLookup hides the runs of its keys from the first lookup, as
// though another caller stored its run just after this one looked.
type missFirstLookup struct {
	runs.Store
	mu     sync.Mutex
	missed map[string]bool
}

func (m *missFirstLookup) RunByIdempotencyKey(ctx context.Context, key string) (*store.Run, []*store.Task, error) {
	m.mu.Lock()
	miss := !m.missed[key]
	m.missed[key] = true
	m.mu.Unlock()
	if miss {
		return nil, nil, store.ErrNotFound
	}
	return m.Store.RunByIdempotencyKey(ctx, key)
}

func TestRacingIdempotentCreatesMakeOneRun(t *testing.T) {
	t.Run("the store refuses the second key", func(t *testing.T) {
		h := newHarness(t, func(s runs.Store) runs.Store { return &missFirstLookup{Store: s, missed: map[string]bool{}} },
			agent("h1", "host", "", "sysinfo"))
		s := spec("sysinfo", "all")
		s.IdempotencyKey = "pbrun:pbr_2:a"
		// The winner stored its run with the key before the loser looked.
		won := &store.Run{ID: "run_won", Action: "sysinfo", Selector: "all", ParamsJSON: []byte(`{}`), CreatedBy: "alice",
			Status: operatorv1.RunStatus_RUN_STATUS_RUNNING, IdempotencyKey: s.IdempotencyKey}
		if err := h.store.CreateRun(context.Background(), won, nil); err != nil {
			t.Fatal(err)
		}
		got, err := h.p.Create(context.Background(), alice, s)
		if err != nil || !got.Existing || got.Run.ID != "run_won" {
			t.Fatalf("the loser got %+v (%v), want the winner's run", got, err)
		}
		if all, _ := h.store.ListRuns(context.Background(), 10); len(all) != 1 || h.disp.submitted() != 0 {
			t.Fatalf("%d runs stored and %d submitted by the loser", len(all), h.disp.submitted())
		}
	})
	t.Run("concurrent callers", func(t *testing.T) {
		h := newHarness(t, nil, agent("h1", "host", "", "sysinfo"))
		s := spec("sysinfo", "all")
		s.IdempotencyKey = "pbrun:pbr_3:a"
		const callers = 8
		ids := make([]string, callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				plan, err := h.p.Create(context.Background(), alice, s)
				if err == nil {
					ids[i] = plan.Run.ID
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i := range callers {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("caller %d: run %q (%v); caller 0: run %q", i, ids[i], errs[i], ids[0])
			}
		}
		if all, _ := h.store.ListRuns(context.Background(), 10); len(all) != 1 || h.disp.submitted() != 1 {
			t.Fatalf("%d runs stored and %d submitted, want one", len(all), h.disp.submitted())
		}
	})
}
