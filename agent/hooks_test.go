package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// fenceResult is a fake action's result that says how it left the host.
type fenceResult struct {
	Isolated *bool `json:"isolated,omitempty"`
}

// HostState implements sdk.HostStateReporter.
func (r fenceResult) HostState() *pluginv1.HostState {
	if r.Isolated == nil {
		return nil
	}
	return &pluginv1.HostState{Isolated: proto.Bool(*r.Isolated)}
}

// fence is a fake host action whose name the agent has never heard of: it
// says how it left the host, and may ask to be reconciled at start.
type fence struct {
	name      string
	reconcile string // reconcile_at_start params; empty: none
	mu        sync.Mutex
	result    fenceResult
	fail      error
	calls     []string // params of each Execute
}

func (f *fence) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	d := &pluginv1.ActionDescription{Name: f.name, Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE, Roles: []string{"host"},
		Params: []*pluginv1.ParamSpec{{Name: "reconcile", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "false"}}}
	if f.reconcile != "" {
		d.ReconcileAtStart = &pluginv1.ReconcileAtStart{ParamsJson: f.reconcile}
	}
	return d, nil
}

func (f *fence) Execute(_ context.Context, req *sdk.Request, _ sdk.Emitter) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, string(req.Params))
	return f.result, f.fail
}

func newHookAgent(t *testing.T, dataDir string, actions ...sdk.Action) *Agent {
	t.Helper()
	h, err := pluginhost.New(pluginhost.Config{Role: "host", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	for _, a := range actions {
		if err := h.AddBuiltin(a); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	return &Agent{cfg: Config{DataDir: dataDir, Logger: slog.New(slog.DiscardHandler), Clock: func() time.Time { return now }},
		id: &identity{AgentID: "agent-1"}, facts: &agentv1.AgentFacts{Hostname: "h1"}, plugins: h, running: map[string]context.CancelFunc{}}
}

func isolated(v bool) *bool { return &v }

// TestAfterTaskAppliesHostState checks that the agent applies and records
// what a successful action's result says about the host, whatever the
// action's name, and ignores a failed action's word.
func TestAfterTaskAppliesHostState(t *testing.T) {
	tests := []struct {
		name      string
		before    bool
		result    *pluginv1.Result
		want      bool
		wantWrite bool
	}{
		{name: "isolated", result: &pluginv1.Result{HostState: &pluginv1.HostState{Isolated: proto.Bool(true)}}, want: true, wantWrite: true},
		{name: "no longer isolated", before: true, result: &pluginv1.Result{HostState: &pluginv1.HostState{Isolated: proto.Bool(false)}}, want: false, wantWrite: true},
		{name: "failed part-way", result: &pluginv1.Result{Error: "could not record", HostState: &pluginv1.HostState{Isolated: proto.Bool(true)}}},
		{name: "says nothing", before: true, result: &pluginv1.Result{}, want: true},
		{name: "unset field", before: true, result: &pluginv1.Result{HostState: &pluginv1.HostState{}}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := newHookAgent(t, dir)
			a.SetIsolated(tc.before)
			a.afterTask(&agentv1.TaskSpec{TaskId: "t1", Action: "any-action"}, tc.result)
			if got := a.Isolated(); got != tc.want {
				t.Fatalf("Isolated() = %t, want %t", got, tc.want)
			}
			rec, err := a.readHostState()
			if err != nil {
				t.Fatal(err)
			}
			_, statErr := os.Stat(filepath.Join(dir, hostStateFile))
			if wrote := statErr == nil; wrote != tc.wantWrite {
				t.Fatalf("record written: %t, want %t", wrote, tc.wantWrite)
			}
			if tc.wantWrite && (rec.Isolated != tc.want || rec.Action != "any-action" || rec.TaskID != "t1") {
				t.Fatalf("record %+v", rec)
			}
			if tc.wantWrite {
				st, err := os.Stat(filepath.Join(dir, hostStateFile))
				if err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("record mode %v, %v; want 0600", st.Mode().Perm(), err)
				}
			}
		})
	}
}

// TestReconcileAtStart checks what the agent reports after start: its own
// record, confirmed or changed by the actions that ask to be reconciled,
// each run with the parameters its description gives.
func TestReconcileAtStart(t *testing.T) {
	tests := []struct {
		name     string
		recorded *bool // the agent's own record before start; nil: none
		result   fenceResult
		fail     error
		// noReconcile: the action does not ask to be reconciled.
		noReconcile bool
		want        bool
		wantCalls   int
	}{
		// A host isolated by an earlier agent version has no agent record;
		// the action's own reconcile restores and reports it.
		{name: "no record, action confirms isolation", result: fenceResult{Isolated: isolated(true)}, want: true, wantCalls: 1},
		{name: "nothing anywhere", want: false, wantCalls: 1},
		{name: "recorded, action confirms", recorded: isolated(true), result: fenceResult{Isolated: isolated(true)}, want: true, wantCalls: 1},
		// A reconcile that fails or says nothing leaves the agent's record.
		{name: "recorded, action fails", recorded: isolated(true), fail: errors.New("netlink refused"), want: true, wantCalls: 1},
		{name: "recorded, action says nothing", recorded: isolated(true), want: true, wantCalls: 1},
		{name: "recorded, nothing reconciles", recorded: isolated(true), noReconcile: true, want: true},
		{name: "recorded open", recorded: isolated(false), want: false, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := &fence{name: "host-fence", reconcile: `{"reconcile":true}`, result: tc.result, fail: tc.fail}
			if tc.noReconcile {
				f.reconcile = ""
			}
			if tc.recorded != nil {
				seed := newHookAgent(t, dir)
				seed.SetIsolated(!*tc.recorded)
				seed.applyHostState("host-fence", "t0", &pluginv1.HostState{Isolated: tc.recorded})
			}
			a := newHookAgent(t, dir, f)
			a.reconcileAtStart(context.Background())
			if got := a.Isolated(); got != tc.want {
				t.Fatalf("Isolated() = %t, want %t", got, tc.want)
			}
			if len(f.calls) != tc.wantCalls {
				t.Fatalf("the action ran %d times at start, want %d", len(f.calls), tc.wantCalls)
			}
			if tc.wantCalls > 0 && f.calls[0] != `{"reconcile":true}` {
				t.Fatalf("reconcile params %s", f.calls[0])
			}
			rec, err := a.readHostState()
			if err != nil {
				t.Fatal(err)
			}
			if rec.Isolated != tc.want {
				t.Fatalf("record says isolated=%t, want %t", rec.Isolated, tc.want)
			}
		})
	}
}

// TestReconcileAtStartRefusesBadParams checks that an action whose
// reconcile parameters its own schema refuses is not run.
func TestReconcileAtStartRefusesBadParams(t *testing.T) {
	f := &fence{name: "host-fence", reconcile: `{"reconcile":true}`}
	a := newHookAgent(t, t.TempDir(), f)
	// The description is checked when loaded; change it afterwards, as a
	// plugin could not, to reach the agent's own check.
	d, _ := a.plugins.Describe("host-fence")
	d.ReconcileAtStart.ParamsJson = `{"unknown":1}`
	a.reconcileAtStart(context.Background())
	if len(f.calls) != 0 {
		t.Fatalf("the action ran with parameters its schema refuses: %v", f.calls)
	}
}
