// Package agent is the composition root of the Firebreak agent, for both
// roles: a host agent runs in-guest actions on its host, a worker runs AWS
// API actions across accounts. The agent dials out to the controller and
// holds one stream, on which the controller pushes signed tasks; the agent
// verifies each task, records it in its journal, runs its plugin and reports
// the result until the controller has stored it.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	"github.com/firebreak-ir/firebreak/agent/journal"
	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/statedir"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the agent's version.
const Version = "0.1.0"

// startedEventDelay is how long a task runs before the agent reports it as
// started.
const startedEventDelay = 250 * time.Millisecond

// Config is the agent's configuration.
type Config struct {
	// Controller is the controller's HOST:PORT, or several separated by
	// commas; a host name may resolve to several addresses. The agent
	// connects to one picked at random and moves to another when the
	// connection fails (see package ctrladdr).
	Controller string
	// CAFile is the controller CA to pin at enrollment.
	CAFile string
	// JoinToken enrolls the agent the first time. New clears its own copy
	// once the agent has an identity.
	JoinToken string
	// Join is how the agent proves itself at its first enrollment: token
	// (default; JoinToken or JoinTokenFile), aws-iid (the instance identity
	// document from IMDSv2, for hosts) or aws-sts (a signed
	// sts:GetCallerIdentity, for workers). See attest.go.
	Join string
	// IMDS is the instance metadata client --join aws-iid reads the
	// identity document from (default: the SDK's, from the AWS
	// configuration; simulated hosts of a benchmark each get their own).
	IMDS *imds.Client
	// ServerID is the controller's id a worker signs for aws-sts (default:
	// the pinned CA's SHA-256).
	ServerID string
	// JoinTokenFile holds the join token; it is read only when the agent
	// must enroll, and the token is not kept afterwards.
	JoinTokenFile string
	// DataDir holds the agent's key, certificate, journal and plugin state.
	DataDir string
	// Role is "host" or "worker".
	Role string
	// Labels are the agent's own labels.
	Labels map[string]string
	// PluginDir is the directory of plugin binaries and their manifest.
	PluginDir string
	// Builtins are in-process actions (lab, benchmarks).
	Builtins []sdk.Action
	// BuiltinClients are already-served in-process actions shared by many
	// simulated agents.
	BuiltinClients []*sdk.Client
	// Hostname overrides the host name (simulated hosts).
	Hostname string
	// Simulated marks a simulated host; every view of the agent shows it.
	Simulated bool
	// MemoryJournal keeps the journal in memory (simulated agents only).
	// With an empty DataDir, a simulated agent also keeps its identity in
	// memory.
	MemoryJournal bool
	// MaxConcurrentTasks bounds the tasks running at once (default 8).
	MaxConcurrentTasks int
	// Bandwidth caps the agent's evidence uploads, all together, in bytes
	// per second (0: no cap); a run's own cap applies too, and the lower
	// one sets an upload's pace.
	Bandwidth int64
	// PaceClock is the clock uploads are paced by under the bandwidth caps;
	// defaults to the wall clock (tests inject a virtual one).
	PaceClock bandwidth.Clock
	// Logger logs; defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
	// Resolver resolves controller host names; defaults to the system's
	// (tests inject one).
	Resolver ctrladdr.Resolver
	// Dialer overrides how the controller is dialled (tests, benchmarks).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// Connected, when set, is called each time the stream is established.
	Connected func()
	// Worker configures a worker's access to AWS accounts.
	Worker WorkerConfig
}

// CheckAndSetDefaults checks the configuration and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Controller == "" {
		missing = append(missing, "--controller")
	}
	if c.DataDir == "" && !(c.MemoryJournal && c.Simulated) {
		missing = append(missing, "--data-dir")
	}
	if len(missing) > 0 {
		return fmt.Errorf("agent: missing %s", strings.Join(missing, ", "))
	}
	if c.Role == "" {
		c.Role = "host"
	}
	if c.Role != "host" && c.Role != "worker" {
		return fmt.Errorf("agent: --role %q: want host or worker", c.Role)
	}
	if c.MaxConcurrentTasks == 0 {
		c.MaxConcurrentTasks = 8
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.PaceClock == nil {
		c.PaceClock = bandwidth.SystemClock
	}
	if _, err := ctrladdr.Parse(c.Controller); err != nil {
		return fmt.Errorf("agent: --controller: %w", err)
	}
	return nil
}

// Agent is a running agent.
type Agent struct {
	cfg   Config
	id    *identity
	facts *agentv1.AgentFacts
	// placement is the instance id, account and region of the agent's
	// certificate (see helloFacts).
	placement [3]string
	plugins   *pluginhost.Host
	journal   *journal.Journal
	verifier  *tasksign.Verifier
	sem       chan struct{}
	// controllers picks the controller address to dial.
	controllers *ctrladdr.Picker

	// creds gives service tasks their account's credentials (workers),
	// or says why the worker is degraded.
	creds *workerCredentials

	mu      sync.Mutex
	running map[string]context.CancelFunc
	stream  *streamState
	conn    *grpc.ClientConn
	// target is the controller address the stream is open to (zero when
	// none is); evidence uploads dial the same controller.
	target   ctrladdr.Target
	ctrlIPs  []string
	ctrlPort uint32
	isolated bool
	// hostState serialises changes of the reported host state with the
	// writes of its record, so the record ends as the last change.
	hostState sync.Mutex

	evidence evidenceUploads
}

type streamState struct {
	send func(*agentv1.ConnectRequest) error
}

// New builds an agent: it loads its plugins and its identity, enrolling
// with the join token if it has none.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		// Security-critical: the data dir holds the agent's key and
		// journal; it is created 0700, or tightened to it, and every file
		// in it made private.
		if err := statedir.Prepare(cfg.DataDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, "state"), 0o700); err != nil {
			return nil, err
		}
		if err := statedir.Tighten(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	a := &Agent{cfg: cfg, sem: make(chan struct{}, cfg.MaxConcurrentTasks), running: map[string]context.CancelFunc{}}
	a.facts = a.collectFacts()
	list, err := ctrladdr.Parse(cfg.Controller)
	if err != nil {
		return nil, fmt.Errorf("--controller: %w", err)
	}
	if a.controllers, err = ctrladdr.NewPicker(ctrladdr.PickerConfig{List: list, Resolver: cfg.Resolver}); err != nil {
		return nil, err
	}
	if cfg.Role == "worker" {
		if w := endpointWarning(os.Getenv); w != "" {
			cfg.Logger.Warn(w)
		}
		a.creds = newWorkerCredentials(cfg.Worker, cfg.Clock, cfg.Logger)
		// One attempt now, so a worker whose credentials work enrolls
		// with its account; a degraded one enrolls anyway and Run keeps
		// trying.
		if a.creds.try(ctx) {
			b, _ := a.creds.current()
			if a.facts.Account == "" {
				a.facts.Account = b.account
			}
			if a.facts.Region == "" {
				a.facts.Region = b.base.Region
			}
		}
		a.creds.changed = a.degradedChanged
	}
	hostCfg := pluginhost.Config{Dir: cfg.PluginDir, Logger: cfg.Logger, Role: cfg.Role}
	if cfg.DataDir != "" {
		hostCfg.SocketDir = filepath.Join(cfg.DataDir, "plugin-sockets")
	}
	if a.plugins, err = pluginhost.New(hostCfg); err != nil {
		return nil, fmt.Errorf("loading plugins: %w", err)
	}
	for _, b := range cfg.Builtins {
		if err := a.plugins.AddBuiltin(b); err != nil {
			return nil, fmt.Errorf("built-in action: %w", err)
		}
	}
	for _, c := range cfg.BuiltinClients {
		if err := a.plugins.AddBuiltinClient(c, func() {}); err != nil {
			return nil, fmt.Errorf("built-in action: %w", err)
		}
	}
	a.id, err = a.loadOrEnroll(ctx)
	// The join token is spent or not needed: it is not kept.
	a.cfg.JoinToken, cfg.JoinToken = "", ""
	if err != nil {
		a.plugins.Close()
		return nil, err
	}
	a.placementFromCertificate()
	if cfg.MemoryJournal {
		a.journal = journal.OpenMemory()
	} else if a.journal, err = journal.Open(a.path(journalFile), cfg.Clock); err != nil {
		a.plugins.Close()
		return nil, err
	}
	a.verifier = &tasksign.Verifier{Key: a.id.signingKey, AgentID: a.id.AgentID, Now: cfg.Clock}
	a.reportInterrupted()
	return a, nil
}

// placementFromCertificate reads the instance id, account and region of
// the agent's certificate: an agent enrolled by its instance identity
// document holds there what the controller read from the signed document.
func (a *Agent) placementFromCertificate() {
	a.id.mu.RLock()
	leaf := a.id.leaf
	a.id.mu.RUnlock()
	if leaf == nil {
		return
	}
	if id, err := pki.IdentityFromCert(leaf); err == nil {
		a.placement = [3]string{id.InstanceID, id.Account, id.Region}
	}
}

// helloFacts are the facts the hello sends: the agent's own, with the
// instance id, account and region they lack taken from its certificate, so
// that an agent enrolled by its document claims what its certificate holds
// (the controller takes them from the certificate in any case, and audits
// a hello claiming others as agent.identity_mismatch). What the facts
// already say is sent as it is.
func (a *Agent) helloFacts() *agentv1.AgentFacts {
	f := a.facts
	if a.placement == ([3]string{}) || (f.GetInstanceId() != "" && f.GetAccount() != "" && f.GetRegion() != "") {
		return f
	}
	f = proto.Clone(f).(*agentv1.AgentFacts)
	for i, field := range []*string{&f.InstanceId, &f.Account, &f.Region} {
		if *field == "" {
			*field = a.placement[i]
		}
	}
	return f
}

// ID returns the agent's id.
func (a *Agent) ID() string { return a.id.AgentID }

// Plugins returns the loaded plugins.
func (a *Agent) Plugins() []*agentv1.PluginInfo { return a.plugins.Plugins() }

// reportInterrupted turns tasks that were running when the agent stopped
// into failed results. They are not re-run: a destructive action must not
// run twice because the agent restarted.
func (a *Agent) reportInterrupted() {
	for _, e := range a.journal.Interrupted() {
		res := &agentv1.TaskResult{TaskId: e.TaskID, Status: agentv1.TaskStatus_TASK_STATUS_FAILED,
			Error:      "the agent stopped while the task was running; it was not run again, to avoid running it twice: check the host",
			StartedAt:  timestamppb.New(e.StartedAt),
			FinishedAt: timestamppb.New(a.cfg.Clock())}
		if err := a.journal.Finish(res); err != nil {
			a.cfg.Logger.Error("recording an interrupted task", "task", e.TaskID, "error", err)
		}
	}
}

func (a *Agent) collectFacts() *agentv1.AgentFacts {
	host := a.cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	f := &agentv1.AgentFacts{Hostname: host, Labels: maps.Clone(a.cfg.Labels), AgentVersion: Version, Os: runtime.GOOS,
		Arch: runtime.GOARCH, Simulated: a.cfg.Simulated}
	if f.Labels == nil {
		f.Labels = map[string]string{}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil && !a.cfg.Simulated {
		f.BootId = strings.TrimSpace(string(b))
	}
	// Labels may carry the cloud placement of agents outside EC2 metadata.
	f.InstanceId, f.Account, f.Region = f.Labels["instance_id"], f.Labels["account"], f.Labels["region"]
	if a.cfg.Role == "host" && !a.cfg.Simulated {
		f.HostCapability = hostRoot("/").hostCapability(os.Geteuid(), os.Getenv)
	}
	return f
}

// Run connects and serves tasks until ctx ends, reconnecting with
// exponential backoff and jitter.
func (a *Agent) Run(ctx context.Context) error {
	defer a.plugins.Close()
	defer a.journal.Close()
	// Recorded host state (isolation) is restored before the first
	// connection, so the host is contained again even when the controller
	// cannot be reached. It runs here rather than in New so that its spans
	// reach the exporter the command set up once the agent knew its id.
	a.reconcileAtStart(ctx)
	renewCtx, cancelRenew := context.WithCancel(ctx)
	defer cancelRenew()
	if a.creds != nil {
		go a.creds.recover(renewCtx)
	}
	go func() {
		_ = a.renewLoop(renewCtx, func() *grpc.ClientConn {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.conn
		})
	}()
	// Each connection goes to a controller picked at random from the
	// list, so agents spread over a cluster; when it ends (dial error,
	// broken stream, controller stopping) the next goes to another, after
	// a full-jitter delay, so the agents of a controller that died do not
	// all arrive at one survivor at once. Addresses that refuse are passed
	// over quickly until every one was tried (see ctrladdr.Schedule).
	sched := ctrladdr.Schedule{Picker: a.controllers}
	target, pickErr := sched.First(ctx)
	for {
		var err error
		var up time.Duration
		if pickErr != nil {
			err = pickErr
		} else {
			up, err = a.session(ctx, target)
		}
		if ctx.Err() != nil {
			a.waitRunning(10 * time.Second)
			return nil
		}
		failed := target.Addr
		var wait time.Duration
		var shed *shedError
		isShed := errors.As(err, &shed) && failed != ""
		if isShed {
			target, wait, pickErr = sched.AfterShed(ctx, failed, shed.after)
		} else {
			target, wait, pickErr = sched.After(ctx, failed, up)
		}
		if failed == "" {
			failed = a.controllers.List().String()
		}
		switch {
		case isShed && pickErr == nil:
			a.cfg.Logger.Info("the controller is at its limit of agent handshakes; trying again as it asked", "controller", failed,
				"retry_after", shed.after.String(), "next", target.Addr, "in", wait.Round(time.Millisecond).String())
		case pickErr != nil:
			a.cfg.Logger.Warn("connection to the controller lost, and no controller address resolves; retrying", "controller", failed,
				"error", err, "resolve_error", pickErr, "in", wait.Round(time.Millisecond).String())
		default:
			a.cfg.Logger.Warn("connection to the controller lost; reconnecting", "controller", failed, "error", err,
				"next", target.Addr, "in", wait.Round(time.Millisecond).String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (a *Agent) waitRunning(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		n := len(a.running)
		a.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial opens a connection to one controller address. The TLS check does
// not depend on the address dialled: the agent verifies the name
// pki.ServerName, which every controller certificate of the pinned CA
// holds, so a resolved IP of a DNS name verifies as the name would.
func (a *Agent) dial(t ctrladdr.Target) (*grpc.ClientConn, error) {
	tlsCfg := pki.ClientTLS(a.id.caPool, a.id.current)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithReadBufferSize(16 << 10),
		grpc.WithWriteBufferSize(16 << 10),
	}
	if a.cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(a.cfg.Dialer))
	}
	return grpc.NewClient("passthrough:///"+t.Addr, opts...)
}

// session holds one Connect stream to t until it breaks. up is how long
// the stream was established (0 when it never was).
func (a *Agent) session(ctx context.Context, t ctrladdr.Target) (up time.Duration, err error) {
	conn, err := a.dial(t)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := agentv1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		return 0, err
	}
	var sendMu sync.Mutex
	send := func(m *agentv1.ConnectRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	a.facts.Isolated = a.Isolated()
	a.facts.Degraded = a.degraded()
	if err := send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: &agentv1.Hello{
		Facts: a.helloFacts(), Plugins: a.plugins.Plugins(), RunningTaskIds: a.runningIDs()}}}); err != nil {
		return 0, err
	}
	first, err := stream.Recv()
	if err != nil {
		// A controller at its limit of handshakes says when to come back.
		return 0, shedFrom(err, stream.Trailer())
	}
	w := first.GetWelcome()
	if w == nil {
		return 0, errors.New("the controller did not answer hello with welcome")
	}
	if w.GetAgentId() != a.id.AgentID {
		return 0, fmt.Errorf("the controller sees this agent as %q, not %q", w.GetAgentId(), a.id.AgentID)
	}
	if skew := a.cfg.Clock().Sub(w.GetServerTime().AsTime()); skew > tasksign.MaxClockSkew || -skew > tasksign.MaxClockSkew {
		a.cfg.Logger.Warn("the clocks of agent and controller differ; tasks may be refused as expired or early", "skew", skew)
	}
	a.rememberController(ctx, stream, t)
	a.mu.Lock()
	a.stream = &streamState{send: send}
	a.conn = conn
	a.target = t
	a.mu.Unlock()
	connectedAt := time.Now()
	defer func() {
		up = time.Since(connectedAt)
		a.mu.Lock()
		a.stream = nil
		a.conn = nil
		a.target = ctrladdr.Target{}
		a.mu.Unlock()
	}()
	a.cfg.Logger.Info("connected", "controller", t.Addr, "endpoint", t.Endpoint.String(), "agent", a.id.AgentID, "plugins", len(a.plugins.Plugins()))
	if a.cfg.Connected != nil {
		a.cfg.Connected()
	}
	// Results the controller has not confirmed go again.
	for _, r := range a.journal.Unacked() {
		if err := send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: r}}); err != nil {
			return 0, err
		}
	}
	hb := time.Duration(w.GetHeartbeatSeconds()) * time.Second
	if hb <= 0 {
		hb = 30 * time.Second
	}
	go func() {
		tick := time.NewTicker(hb)
		defer tick.Stop()
		// A result still unacknowledged a whole heartbeat after it was
		// seen unacknowledged goes again on this stream: a controller
		// that took it in but could not store or route it (its database
		// restarting, its link to the run's owner down) has no other way
		// to get it back while the stream stays up. The owner takes a
		// result twice as once.
		var waiting map[string]bool
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
				if err := send(a.heartbeat()); err != nil {
					cancel()
					return
				}
				now := map[string]bool{}
				for _, r := range a.journal.Unacked() {
					now[r.GetTaskId()] = true
					if !waiting[r.GetTaskId()] {
						continue
					}
					if err := send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: r}}); err != nil {
						cancel()
						return
					}
				}
				waiting = now
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			return 0, err
		}
		switch msg := m.GetMsg().(type) {
		case *agentv1.ConnectResponse_Task:
			a.onTask(ctx, msg.Task)
		case *agentv1.ConnectResponse_ResultAck:
			if err := a.journal.Ack(msg.ResultAck.GetTaskId()); err != nil {
				a.cfg.Logger.Warn("recording an acknowledgement", "error", err)
			}
		case *agentv1.ConnectResponse_Cancel:
			a.mu.Lock()
			if c := a.running[msg.Cancel.GetTaskId()]; c != nil {
				c()
			}
			a.mu.Unlock()
		}
	}
}

// rememberController records the controller addresses that in-guest
// isolation must keep reachable: the address actually dialled and every
// address the configured list resolves to, so an isolated host can still
// fail over to another controller of the cluster. Isolation opens one
// port, the connected controller's, so the controllers of a cluster
// listen on the same port.
func (a *Agent) rememberController(ctx context.Context, stream grpc.ClientStream, t ctrladdr.Target) {
	var ips []string
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		if ta, ok := p.Addr.(*net.TCPAddr); ok {
			ips = append(ips, ta.IP.String())
		}
	}
	if host, _, err := net.SplitHostPort(t.Addr); err == nil && net.ParseIP(host) != nil {
		ips = append(ips, net.ParseIP(host).String())
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	all, err := a.controllers.Resolve(rctx)
	cancel()
	if err != nil {
		a.cfg.Logger.Warn("resolving the controller list for isolation; only the connected controller stays reachable when isolated", "error", err)
	}
	for _, o := range all {
		if host, _, err := net.SplitHostPort(o.Addr); err == nil {
			ips = append(ips, host)
		}
	}
	n, _ := strconv.ParseUint(t.Endpoint.Port, 10, 16)
	a.mu.Lock()
	a.ctrlIPs = dedupe(ips)
	a.ctrlPort = uint32(n)
	a.mu.Unlock()
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (a *Agent) runningIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.running))
	for id := range a.running {
		out = append(out, id)
	}
	return out
}

// Isolated reports whether host isolation is recorded as in force.
func (a *Agent) Isolated() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.isolated
}

// SetIsolated records the isolation state reported to the controller.
func (a *Agent) SetIsolated(v bool) {
	a.mu.Lock()
	a.isolated = v
	a.mu.Unlock()
}

func (a *Agent) report(m *agentv1.ConnectRequest) {
	a.mu.Lock()
	s := a.stream
	a.mu.Unlock()
	if s == nil {
		return
	}
	if err := s.send(m); err != nil {
		a.cfg.Logger.Debug("sending to the controller failed; the result is re-sent on reconnect", "error", err)
	}
}

func (a *Agent) sendResult(res *agentv1.TaskResult) {
	a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: res}})
}

// onTask verifies a pushed task and starts it; it never blocks the stream.
func (a *Agent) onTask(ctx context.Context, st *agentv1.SignedTask) {
	verifyStart := time.Now()
	spec, err := a.verifier.Verify(st)
	if err != nil {
		a.refuse(st, err.Error())
		return
	}
	// The task's span continues the controller's trace; the context comes
	// from the signed (verified) spec.
	sctx, span := telemetry.StartTask(telemetry.ExtractTraceContext(ctx, spec.GetTraceparent(), spec.GetTracestate()), verifyStart,
		spec.GetTaskId(), spec.GetRunId(), spec.GetAction(), spec.GetAgentId(), spec.GetAccount(), spec.GetRegion(), spec.GetCaseId())
	handedOff := false
	defer func() {
		if !handedOff {
			span.End()
		}
	}()
	if e, ok := a.journal.Lookup(spec.GetTaskId()); ok {
		a.mu.Lock()
		_, running := a.running[spec.GetTaskId()]
		a.mu.Unlock()
		switch {
		case running:
			// A re-delivery while it runs: the result follows.
		case e.Result != nil && !e.Acked:
			a.sendResult(e.Result)
		case e.Result != nil && e.Acked:
			// Security-critical: a task the controller already has the
			// result of is never run again, whoever sends it.
			a.cfg.Logger.Warn("refused a replayed task", "task", spec.GetTaskId(), "action", spec.GetAction())
			a.sendResult(&agentv1.TaskResult{TaskId: spec.GetTaskId(), Status: agentv1.TaskStatus_TASK_STATUS_REFUSED,
				Error: fmt.Sprintf("task refused: replay of task %s, already executed at %s", spec.GetTaskId(), e.StartedAt.UTC().Format(time.RFC3339))})
		}
		return
	}
	_, jspan := telemetry.Tracer().Start(sctx, "task.journal")
	err = a.journal.Start(spec.GetTaskId(), spec.GetNonce(), spec.GetExpiresAt().AsTime())
	jspan.End()
	if err != nil {
		a.refuse(st, "the task could not be journalled: "+err.Error())
		return
	}
	tctx, cancel := context.WithDeadline(sctx, spec.GetExpiresAt().AsTime())
	a.mu.Lock()
	a.running[spec.GetTaskId()] = cancel
	a.mu.Unlock()
	handedOff = true
	go func() {
		defer span.End()
		defer cancel()
		res := a.execute(tctx, spec)
		telemetry.EndTask(span, res.GetStatus().String(), res.GetError())
		if err := a.journal.Finish(res); err != nil {
			a.cfg.Logger.Error("journalling a result", "task", spec.GetTaskId(), "error", err)
		}
		a.mu.Lock()
		delete(a.running, spec.GetTaskId())
		a.mu.Unlock()
		a.sendResult(res)
	}()
}

// refuse reports a refused task. The task id is read from the unverified
// bytes only to address the report; nothing else in them is used.
func (a *Agent) refuse(st *agentv1.SignedTask, reason string) {
	spec := &agentv1.TaskSpec{}
	_ = proto.Unmarshal(st.GetSpec(), spec)
	a.cfg.Logger.Warn("refused a task", "task", spec.GetTaskId(), "reason", reason)
	if spec.GetTaskId() == "" {
		return
	}
	a.sendResult(&agentv1.TaskResult{TaskId: spec.GetTaskId(), Status: agentv1.TaskStatus_TASK_STATUS_REFUSED, Error: reason,
		FinishedAt: timestamppb.New(a.cfg.Clock())})
}

func (a *Agent) execute(ctx context.Context, spec *agentv1.TaskSpec) *agentv1.TaskResult {
	res := &agentv1.TaskResult{TaskId: spec.GetTaskId()}
	finish := func(status agentv1.TaskStatus, msg string) *agentv1.TaskResult {
		res.Status, res.Error, res.FinishedAt = status, msg, timestamppb.New(a.cfg.Clock())
		return res
	}
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	case <-ctx.Done():
		return finish(ctxStatus(ctx), ctxMessage(ctx, "while waiting for a free task slot"))
	}
	started := a.cfg.Clock()
	res.StartedAt = timestamppb.New(started)
	// The started event only matters for tasks that take a while: a quick
	// task's result carries its start time, and one message fewer per task
	// counts across a fleet.
	startedSent := time.AfterFunc(startedEventDelay, func() {
		a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskEvent{TaskEvent: &agentv1.TaskEvent{
			TaskId: spec.GetTaskId(), Event: &agentv1.TaskEvent_Started{Started: timestamppb.New(started)}}}})
	})
	defer startedSent.Stop()

	req := a.executeRequest(spec)
	if d, ok := a.plugins.Describe(spec.GetAction()); ok && d.GetDomain() == pluginv1.Domain_DOMAIN_SERVICE {
		creds, err := a.awsCredentials(ctx, spec)
		var ue *UnreachableError
		switch {
		case errors.As(err, &ue):
			return finish(agentv1.TaskStatus_TASK_STATUS_UNREACHABLE, ue.Error())
		case err != nil:
			return finish(agentv1.TaskStatus_TASK_STATUS_FAILED, err.Error())
		}
		req.Aws = creds
	}
	var lastProgress time.Time
	out, err := a.plugins.Execute(ctx, spec.GetAction(), req, func(m *pluginv1.ExecuteResponse) error {
		switch e := m.GetEvent().(type) {
		case *pluginv1.ExecuteResponse_Progress:
			// Progress is rate-limited; the stream is shared by all tasks.
			if time.Since(lastProgress) < 100*time.Millisecond && e.Progress.GetPercent() != 100 {
				return nil
			}
			lastProgress = time.Now()
			a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskEvent{TaskEvent: &agentv1.TaskEvent{
				TaskId: spec.GetTaskId(), Event: &agentv1.TaskEvent_Progress{Progress: e.Progress}}}})
		case *pluginv1.ExecuteResponse_Log:
			a.cfg.Logger.Info("action log", "task", spec.GetTaskId(), "action", spec.GetAction(), "level", e.Log.GetLevel(), "message", e.Log.GetMessage())
			a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskEvent{TaskEvent: &agentv1.TaskEvent{
				TaskId: spec.GetTaskId(), Event: &agentv1.TaskEvent_Log{Log: e.Log}}}})
		case *pluginv1.ExecuteResponse_Artifact:
			return a.onArtifact(ctx, spec, e.Artifact, res)
		}
		return nil
	})
	if aerr := a.closeArtifacts(ctx, spec, res); aerr != nil && err == nil {
		err = aerr
	}
	switch {
	case ctx.Err() != nil:
		return finish(ctxStatus(ctx), ctxMessage(ctx, "while the action ran; the action was stopped"))
	case err != nil:
		return finish(agentv1.TaskStatus_TASK_STATUS_FAILED, err.Error())
	}
	res.OutputJson = out.GetOutputJson()
	a.afterTask(spec, out)
	if out.GetError() != "" {
		return finish(agentv1.TaskStatus_TASK_STATUS_FAILED, out.GetError())
	}
	return finish(agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, "")
}

func ctxStatus(ctx context.Context) agentv1.TaskStatus {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return agentv1.TaskStatus_TASK_STATUS_TIMED_OUT
	}
	return agentv1.TaskStatus_TASK_STATUS_CANCELLED
}

func ctxMessage(ctx context.Context, when string) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "the task's deadline passed " + when
	}
	return "the task was cancelled " + when
}

func (a *Agent) executeRequest(spec *agentv1.TaskSpec) *pluginv1.ExecuteRequest {
	tp, tstate := telemetry.InjectTraceContext(context.Background())
	if spec.GetTraceparent() != "" {
		tp, tstate = spec.GetTraceparent(), spec.GetTracestate()
	}
	a.mu.Lock()
	ips, port := append([]string(nil), a.ctrlIPs...), a.ctrlPort
	a.mu.Unlock()
	req := &pluginv1.ExecuteRequest{
		Task: &pluginv1.TaskContext{TaskId: spec.GetTaskId(), RunId: spec.GetRunId(), CaseId: spec.GetCaseId(),
			Operator: spec.GetOperator(), AgentId: spec.GetAgentId(), Deadline: spec.GetExpiresAt(), Traceparent: tp, Tracestate: tstate},
		ParamsJson: spec.GetParamsJson(),
		Host: &pluginv1.HostContext{ControllerAddresses: ips, ControllerPort: port, Hostname: a.facts.GetHostname(),
			InstanceId: a.facts.GetInstanceId(), OnEc2: a.facts.GetInstanceId() != ""},
	}
	if a.cfg.DataDir != "" {
		req.Host.StateDir = filepath.Join(a.cfg.DataDir, "state")
	}
	return req
}

// awsCredentials gets a service task its account's credentials.
func (a *Agent) awsCredentials(ctx context.Context, spec *agentv1.TaskSpec) (*pluginv1.AWSCredentials, error) {
	if a.cfg.Role != "worker" {
		return nil, fmt.Errorf("action %s acts through the AWS APIs and runs on API workers (--role worker), not on host agents", spec.GetAction())
	}
	b, degraded := a.creds.current()
	if degraded != "" {
		return nil, fmt.Errorf("this worker is degraded and cannot act in AWS accounts now (it retries on its own): %s", degraded)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	creds, err := b.For(ctx, spec)
	var ue *UnreachableError
	if errors.As(err, &ue) && ue.OwnCredentials {
		a.creds.broken(ue.Reason)
	}
	return creds, err
}

// degraded is why this worker cannot serve its role now, or "".
func (a *Agent) degraded() string {
	if a.creds == nil {
		return ""
	}
	return a.creds.reason()
}

// heartbeat is the agent's periodic report.
func (a *Agent) heartbeat() *agentv1.ConnectRequest {
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{
		Isolated: a.Isolated(), RunningTaskIds: a.runningIDs(), Degraded: a.degraded()}}}
}

// degradedChanged tells the controller at once that the worker became
// degraded or recovered, rather than at the next heartbeat.
func (a *Agent) degradedChanged(string) { a.report(a.heartbeat()) }
