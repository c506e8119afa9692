// Package playbookruntest runs a real controller in-process with in-memory
// agents, for tests of playbooks, cases and the findings intake: the runs
// go through the operator service, the dispatcher, signed tasks on agent
// streams and actions served over the plugin gRPC contract. Recorder is an
// action that records every execution, so a test can tell how many times a
// step really ran.
package playbookruntest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Call is one execution of a Recorder.
type Call struct {
	// Action is the recorder's name.
	Action string
	// TaskID and AgentID identify the task.
	TaskID, AgentID string
	// Mark is the "mark" parameter.
	Mark string
	// At is when the execution started.
	At time.Time
}

// Recorder is an action that records its executions. Parameters: mark (a
// string echoed back and recorded), fail (answer with an error), delay
// (wait before answering, a Go duration), value (echoed as "value") and
// artifact (stored as an evidence artifact named "<mark>.txt").
// Its output is {"mark", "value", "agent_id", "n"}, n counting the calls
// so far. Set fields before the agents start; use the methods after.
type Recorder struct {
	// Name is the action's name.
	Name string
	// Destructive and RollbackAction go into the description.
	Destructive    bool
	RollbackAction string
	// Roles are the agent roles that run it (default host and worker).
	Roles []string

	mu    sync.Mutex
	calls []Call
}

// Describe implements sdk.Action.
func (r *Recorder) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	roles := r.Roles
	if len(roles) == 0 {
		roles = []string{"host", "worker"}
	}
	return &pluginv1.ActionDescription{Name: r.Name, Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "records its executions (tests)", Destructive: r.Destructive, RollbackAction: r.RollbackAction, Roles: roles,
		Params: []*pluginv1.ParamSpec{
			{Name: "mark", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "recorded and echoed"},
			{Name: "value", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "echoed"},
			{Name: "fail", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, Description: "answer with an error"},
			{Name: "delay", Type: pluginv1.ParamType_PARAM_TYPE_DURATION, Description: "wait before answering"},
			{Name: "artifact", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "content of an evidence artifact to store"},
		}}, nil
}

// Execute implements sdk.Action.
func (r *Recorder) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p struct {
		Mark     string `json:"mark"`
		Value    string `json:"value"`
		Fail     bool   `json:"fail"`
		Delay    string `json:"delay"`
		Artifact string `json:"artifact"`
	}
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.calls = append(r.calls, Call{Action: r.Name, TaskID: req.Task.GetTaskId(), AgentID: req.Task.GetAgentId(), Mark: p.Mark, At: time.Now()})
	n := len(r.calls)
	r.mu.Unlock()
	if p.Delay != "" {
		d, err := time.ParseDuration(p.Delay)
		if err != nil {
			return nil, sdk.Errorf(codes.InvalidArgument, "delay: %v", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	if p.Fail {
		return nil, fmt.Errorf("%s was asked to fail (mark %q)", r.Name, p.Mark)
	}
	if p.Artifact != "" {
		w := emit.Artifact(p.Mark+".txt", "text/plain")
		if _, err := io.WriteString(w, p.Artifact); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
	}
	return map[string]any{"mark": p.Mark, "value": p.Value, "agent_id": req.Task.GetAgentId(), "n": n}, nil
}

// Calls returns the executions so far, in order.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Marks returns the marks of the executions so far, in order.
func (r *Recorder) Marks() []string {
	var out []string
	for _, c := range r.Calls() {
		out = append(out, c.Mark)
	}
	return out
}

// Count returns how many executions had the mark.
func (r *Recorder) Count(mark string) int {
	n := 0
	for _, c := range r.Calls() {
		if c.Mark == mark {
			n++
		}
	}
	return n
}

// Options configure a Controller.
type Options struct {
	// DataDir is reused across restarts; empty means a new temporary one.
	DataDir string
	// Listen defaults to 127.0.0.1:0.
	Listen string
	// Incident configures playbooks, rules and intake.
	Incident controller.IncidentConfig
	// ApprovalThreshold is passed on (default the controller's).
	ApprovalThreshold int
	// Logger defaults to a discarding logger (FIREBREAK_TEST_LOG=1 logs to
	// stderr).
	Logger *slog.Logger
}

// Controller is an in-process controller.
type Controller struct {
	*controller.Controller
	// DataDir and Addr locate it.
	DataDir, Addr string

	cancel context.CancelFunc
	done   chan error
}

func testLogger() *slog.Logger {
	if os.Getenv("FIREBREAK_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// registered keeps the actions registered with each controller (by data
// dir), so a controller restarted on the same data dir knows them again, as
// an administrator's registration would last.
var registered = &registrations{byDir: map[string][]*pluginv1.ActionDescription{}}

type registrations struct {
	mu    sync.Mutex
	byDir map[string][]*pluginv1.ActionDescription
}

func (r *registrations) add(dir string, d *pluginv1.ActionDescription) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cur := range r.byDir[dir] {
		if cur.GetName() == d.GetName() {
			return
		}
	}
	r.byDir[dir] = append(r.byDir[dir], d)
}

func (r *registrations) get(dir string) []*pluginv1.ActionDescription {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pluginv1.ActionDescription(nil), r.byDir[dir]...)
}

// StartController builds and runs a controller; it stops when the test
// ends.
func StartController(t testing.TB, o Options) *Controller {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), "controller")
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Logger == nil {
		o.Logger = testLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.New(ctx, controller.Config{DataDir: o.DataDir, Listen: o.Listen, Incident: o.Incident, Logger: o.Logger,
		ApprovalThreshold: o.ApprovalThreshold, Heartbeat: time.Second, Actions: registered.get(o.DataDir)})
	if err != nil {
		cancel()
		t.Fatalf("starting the controller: %v", err)
	}
	tc := &Controller{Controller: c, DataDir: o.DataDir, Addr: c.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { tc.done <- c.Run(ctx) }()
	t.Cleanup(func() { tc.Stop(t) })
	return tc
}

// Stop stops the controller gracefully and waits for it; it may be called
// more than once.
func (c *Controller) Stop(t testing.TB) {
	t.Helper()
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("controller: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the controller did not stop")
	}
}

// As returns ctx acting as an operator with the role.
func As(ctx context.Context, name string, role operatorv1.OperatorRole) context.Context {
	return auth.WithOperator(ctx, &store.Operator{Name: name, Role: role})
}

// Admin returns ctx acting as the admin operator.
func Admin(ctx context.Context) context.Context {
	return As(ctx, "admin", operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN)
}

// AgentOptions configure an in-memory agent.
type AgentOptions struct {
	// Name is the agent's hostname and data directory name.
	Name string
	// Role is host (default) or worker.
	Role string
	// Labels are the agent's labels.
	Labels map[string]string
	// Actions are its in-memory actions.
	Actions []sdk.Action
	// DataDir is reused across restarts; empty means a new one.
	DataDir string
}

// Agent is a running in-memory agent.
type Agent struct {
	*agent.Agent
	// DataDir holds its identity and journal.
	DataDir string
	cancel  context.CancelFunc
	done    chan struct{}
}

// StartAgent enrolls (with a fresh join token) and runs an agent with
// in-memory actions; it stops when the test ends.
func (c *Controller) StartAgent(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	if o.Role == "" {
		o.Role = "host"
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), o.Name)
	}
	role := agentv1.AgentRole_AGENT_ROLE_HOST
	if o.Role == "worker" {
		role = agentv1.AgentRole_AGENT_ROLE_WORKER
	}
	tok, err := c.Operator.CreateJoinToken(Admin(context.Background()), &operatorv1.CreateJoinTokenRequest{Role: role})
	if err != nil {
		t.Fatalf("creating a join token: %v", err)
	}
	// The controller trusts only catalogued descriptions: the test's
	// in-memory actions are registered, as an administrator would.
	for _, act := range o.Actions {
		d, err := act.Describe(context.Background())
		if err != nil {
			t.Fatalf("describing an action of agent %s: %v", o.Name, err)
		}
		if err := c.Actions.Register(d, actioncatalog.SourceRegistered); err != nil {
			t.Fatalf("registering an action of agent %s: %v", o.Name, err)
		}
		registered.add(c.DataDir, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Config{Controller: c.Addr, CAFile: filepath.Join(c.DataDir, "ca.pem"), JoinToken: tok.GetToken(),
		DataDir: o.DataDir, Role: o.Role, Labels: o.Labels, Builtins: o.Actions, Hostname: o.Name, Logger: testLogger()})
	if err != nil {
		cancel()
		t.Fatalf("starting agent %s: %v", o.Name, err)
	}
	ta := &Agent{Agent: a, DataDir: o.DataDir, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ta.done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(ta.Stop)
	return ta
}

// Stop stops the agent and waits for it.
func (a *Agent) Stop() {
	a.cancel()
	<-a.done
}

// WaitConnected waits until the agents hold their streams.
func (c *Controller) WaitConnected(t testing.TB, agents ...*Agent) {
	t.Helper()
	WaitFor(t, 30*time.Second, "the agents to connect", func() bool {
		for _, a := range agents {
			if !c.Fleet.Connected(a.ID()) {
				return false
			}
		}
		return true
	})
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WritePlaybook writes a playbook file into dir and returns its path.
func WritePlaybook(t testing.TB, dir, name, yaml string) string {
	t.Helper()
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
