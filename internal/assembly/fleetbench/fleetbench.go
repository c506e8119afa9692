// Package fleetbench measures fleet-wide dispatch: a real controller and N
// simulated agents, each enrolled and holding its own mTLS gRPC stream on
// loopback, run one action across the fleet. Simulated agents run the real
// agent code with a built-in action and an in-memory journal and identity;
// they are labelled simulated everywhere they show.
package fleetbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Actions are the built-in actions a benchmark can run.
var Actions = []string{"noop", hostisolate.SimulatedName}

// AgentHost starts n simulated agents against a controller and returns a
// function that stops them. The default hosts them in-process; the CLI
// hosts them in a child process so the controller's RSS is its own.
type AgentHost func(ctx context.Context, addr string, caPEM []byte, token string, n int, action string) (stop func(), err error)

// Options configures a benchmark.
type Options struct {
	// Agents is the number of simulated agents.
	Agents int
	// Action is noop or host-isolate-sim.
	Action string
	// Host starts the agents; nil hosts them in this process.
	Host AgentHost
	// Logger receives the controller's logs (default: discarded).
	Logger *slog.Logger
	// CPUProfile, when set, receives a CPU profile of the dispatch phase
	// (from the run's creation to its last result).
	CPUProfile io.Writer
	// HeapProfile, when set, receives a heap profile of this process
	// once the run ended (the controller's, and the agents' too with
	// the agents in this process).
	HeapProfile io.Writer
}

// Result is what `firebreak bench fleet --json` prints.
type Result struct {
	Agents              int     `json:"agents"`
	Action              string  `json:"action"`
	ConnectAllMS        float64 `json:"connect_all_ms"`
	CreateRunMS         float64 `json:"create_run_ms"`
	DispatchToAllDoneMS float64 `json:"dispatch_to_all_done_ms"`
	P50MS               float64 `json:"p50_ms"`
	P99MS               float64 `json:"p99_ms"`
	ControllerRSSBytes  int64   `json:"controller_rss_bytes"`
	// ControllerRSSIdleBytes is the controller's RSS (the sum over the
	// controllers of a cluster) started and serving, with no agent
	// connected yet. With the agents in the controller's process it is
	// measured before they start.
	ControllerRSSIdleBytes int64 `json:"controller_rss_idle_bytes"`
	// ControllerRSSPerAgentBytes is (ControllerRSSBytes -
	// ControllerRSSIdleBytes) / Agents: what each connected agent costs
	// the controller (with the agents in the controller's process, their
	// own memory too).
	ControllerRSSPerAgentBytes float64 `json:"controller_rss_per_agent_bytes"`
	Errors                     int     `json:"errors"`
	AgentsInProcess            bool    `json:"agents_in_controller_process"`
	SimulatedAgents            bool    `json:"simulated_agents"`
	// Controllers is how many controller processes served the fleet (1:
	// the embedded controller of this process).
	Controllers int `json:"controllers"`
	// Store is the controllers' store: sqlite (embedded) or postgres.
	Store                string `json:"store"`
	ControllerGoroutines int    `json:"-"`
}

// BenchEnrollLimits are the enrollment limits of the benchmark's
// controller. Every simulated agent enrolls from 127.0.0.1, where a real
// fleet enrolls from as many addresses as it has hosts, so the per-source
// limit is lifted; the overall rate keeps its default and its burst is
// raised to the fleet, so no simulated agent is refused when the whole
// fleet starts at once. What the benchmark measures after enrollment is
// not touched by either.
func BenchEnrollLimits(agents int) fleet.EnrollLimits {
	return fleet.EnrollLimits{PerSource: rate.Inf, OverallBurst: max(agents, fleet.DefaultEnrollOverallBurst)}
}

// Run runs one benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Agents < 1 {
		return nil, fmt.Errorf("--agents must be at least 1")
	}
	if !validAction(o.Action) {
		return nil, fmt.Errorf("--action %q: want one of %s", o.Action, strings.Join(Actions, ", "))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	inProcess := o.Host == nil
	if inProcess {
		o.Host = func(ctx context.Context, addr string, caPEM []byte, token string, n int, action string) (func(), error) {
			return Host(ctx, addr, caPEM, token, n, action, nil)
		}
	}
	dir, err := os.MkdirTemp("", "firebreak-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// host-isolate-sim is no plugin binary's action, so the benchmark's
	// controller catalogues it itself.
	sim, err := hostisolate.NewSimulated().Describe(ctx)
	if err != nil {
		return nil, err
	}
	c, err := controller.New(ctx, controller.Config{DataDir: filepath.Join(dir, "controller"), Listen: "127.0.0.1:0",
		Logger: o.Logger, ApprovalThreshold: o.Agents + 1, Heartbeat: time.Minute, Actions: []*pluginv1.ActionDescription{sim},
		EnrollLimits: BenchEnrollLimits(o.Agents)})
	if err != nil {
		return nil, err
	}
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()
	admin := auth.WithOperator(ctx, &store.Operator{Name: "bench", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN})
	tok, err := c.Operator.CreateJoinToken(admin, &operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole_AGENT_ROLE_HOST,
		Uses: uint32(o.Agents), Ttl: durationpb.New(time.Hour)})
	if err != nil {
		return nil, err
	}
	res := &Result{Agents: o.Agents, Action: o.Action, AgentsInProcess: inProcess, SimulatedAgents: true, Controllers: 1, Store: "sqlite"}
	res.ControllerRSSIdleBytes = RSS()
	start := time.Now()
	stop, err := o.Host(ctx, c.Addr(), CAPEM(c), tok.GetToken(), o.Agents, o.Action)
	if err != nil {
		return nil, err
	}
	defer stop()
	// Waiting for the fleet to connect is the benchmark's own bookkeeping;
	// nothing in the controller polls agents.
	deadline := time.Now().Add(10 * time.Minute)
	for c.Fleet.ConnectedCount() < o.Agents {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d agents connected within 10 minutes", c.Fleet.ConnectedCount(), o.Agents)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	res.ConnectAllMS = ms(time.Since(start))

	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return nil, err
		}
	}
	runStart := time.Now()
	created, err := c.Operator.CreateRun(admin, &operatorv1.CreateRunRequest{Action: o.Action, Selector: "all", Deadline: durationpb.New(5 * time.Minute)})
	if err != nil {
		return nil, err
	}
	res.CreateRunMS = ms(time.Since(runStart))
	runID := created.GetRun().GetId()
	snap, sub, err := c.Dispatcher.Watch(ctx, runID)
	if err != nil {
		return nil, err
	}
	done := map[string]time.Duration{}
	record := func(t *operatorv1.Task, at time.Duration) {
		if IsFinal(t.GetStatus()) {
			if _, ok := done[t.GetId()]; !ok {
				done[t.GetId()] = at
				if t.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
					res.Errors++
				}
			}
		}
	}
	if sub == nil {
		final, err := c.Operator.GetRun(admin, &operatorv1.GetRunRequest{RunId: runID})
		if err != nil {
			return nil, err
		}
		for _, t := range final.GetRun().GetTasks() {
			record(t, time.Since(runStart))
		}
	} else {
		for _, t := range snap.Tasks {
			record(storeview.Task(t), time.Since(runStart))
		}
	loop:
		for m := range sub.C {
			switch m.Kind {
			case dispatch.EventSnapshot, dispatch.EventDone:
				for _, t := range m.Run.Tasks {
					record(storeview.Task(t), time.Since(runStart))
				}
				if m.Kind == dispatch.EventDone {
					break loop
				}
			case dispatch.EventTask:
				record(storeview.Task(m.Task), time.Since(runStart))
			}
		}
	}
	res.DispatchToAllDoneMS = ms(time.Since(runStart))
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	lat := make([]time.Duration, 0, len(done))
	for _, d := range done {
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.P50MS, res.P99MS = ms(Percentile(lat, 50)), ms(Percentile(lat, 99))
	res.Errors += o.Agents - len(done)
	res.ControllerRSSBytes = RSS()
	res.ControllerRSSPerAgentBytes = PerAgent(res.ControllerRSSBytes, res.ControllerRSSIdleBytes, o.Agents)
	if o.HeapProfile != nil {
		if err := pprof.Lookup("heap").WriteTo(o.HeapProfile, 0); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func validAction(a string) bool {
	for _, x := range Actions {
		if x == a {
			return true
		}
	}
	return false
}

// IsFinal reports whether a task in status s has ended.
func IsFinal(s agentv1.TaskStatus) bool {
	switch s {
	case agentv1.TaskStatus_TASK_STATUS_PENDING, agentv1.TaskStatus_TASK_STATUS_DISPATCHED, agentv1.TaskStatus_TASK_STATUS_RUNNING:
		return false
	}
	return true
}

// Percentile returns the p-th percentile of sorted durations (0 for none).
func Percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return sorted[i]
}

// PerAgent is (rss - idle) / agents: the memory each connected agent
// costs (0 without agents).
func PerAgent(rss, idle int64, agents int) float64 {
	if agents < 1 {
		return 0
	}
	return float64(rss-idle) / float64(agents)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// RSS returns this process's resident set size in bytes.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// Host runs n simulated agents against addr, pinning the CA in caPEM.
func Host(ctx context.Context, addr string, caPEM []byte, token string, n int, action string, logger *slog.Logger) (func(), error) {
	var shared sdk.Action = noop.Action{}
	if action == hostisolate.SimulatedName {
		shared = hostisolate.NewSimulated()
	}
	return HostWith(ctx, HostConfig{Controller: addr, CAPEM: caPEM, Token: token, Agents: n, Action: shared, Logger: logger})
}

// HostConfig configures HostWith.
type HostConfig struct {
	// Controller is the controller address, or several separated by
	// commas.
	Controller string
	// CAPEM is the controller CA the agents pin at enrollment.
	CAPEM []byte
	// Token is the join token the agents enroll with.
	Token string
	// Agents is how many simulated agents to run.
	Agents int
	// Action is the one built-in action every agent offers.
	Action sdk.Action
	// Logger receives the agents' logs (default: discarded).
	Logger *slog.Logger
	// Configure, when set, adjusts agent i's configuration before it
	// starts (connection callbacks, a dialer that records the address).
	Configure func(i int, cfg *agent.Config)
	// StartAttempts is how many times an agent's start (enrollment) is
	// tried, a second apart, as a service manager restarts a real agent
	// that failed (default 1).
	StartAttempts int
	// Failed, when set, is told of an agent that did not start after its
	// attempts.
	Failed func(i int, err error)
}

// HostWith runs simulated agents as c says and returns a function that
// stops them.
func HostWith(ctx context.Context, c HostConfig) (func(), error) {
	dir, err := os.MkdirTemp("", "firebreak-bench-agents-")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, c.CAPEM, 0o600); err != nil {
		return nil, err
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	client, stopAction, err := sdk.ServeInMemory(c.Action)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	go func() {
		// Report enrollment failures once everyone had a chance.
		<-actx.Done()
		if f := failed.Load(); f > 0 {
			err, _ := firstErr.Load().(error)
			logger.Error("simulated agents failed to start", "failed", f, "error", err)
		}
	}()
	// Enrollment is bounded so thousands of agents do not all hit the
	// controller in the same millisecond.
	sem := make(chan struct{}, 32)
	for i := 0; i < c.Agents; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cfg := agent.Config{Controller: c.Controller, CAFile: caFile, JoinToken: c.Token, Role: "host",
				Hostname: fmt.Sprintf("sim-%05d", i), Simulated: true, MemoryJournal: true, BuiltinClients: []*sdk.Client{client},
				Labels: map[string]string{"bench": "fleet"}, Logger: logger}
			if c.Configure != nil {
				c.Configure(i, &cfg)
			}
			a, err := agent.New(actx, cfg)
			for attempt := 1; err != nil && attempt < c.StartAttempts && actx.Err() == nil; attempt++ {
				logger.Warn("simulated agent failed to start; trying again", "agent", i, "error", err)
				select {
				case <-actx.Done():
				case <-time.After(time.Second):
				}
				a, err = agent.New(actx, cfg)
			}
			<-sem
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				if c.Failed != nil {
					c.Failed(i, err)
				}
				return
			}
			_ = a.Run(actx)
		}(i)
	}
	stop := func() {
		cancel()
		wg.Wait()
		stopAction()
		os.RemoveAll(dir)
	}
	return stop, nil
}

// CAPEM reads a controller's CA certificate.
func CAPEM(c *controller.Controller) []byte { return pki.EncodeCertPEM(c.CA.Cert.Raw) }
