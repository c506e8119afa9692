package failoverbench

// The herd benchmarks (`firebreak bench enroll` and `bench reconnect`):
// one controller process of this binary on SQLite, and N simulated agents
// in this process that all start at the same moment, as a fleet does when
// it is installed at once or when its controller comes back.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// HerdOptions configures Enroll and Reconnect.
type HerdOptions struct {
	// Agents is how many simulated agents start at once.
	Agents int
	// MaxHandshakes is the controller's --max-agent-handshakes (0: its
	// default).
	MaxHandshakes int
	// Wait bounds each phase: the herd's enrollment, and its reconnection
	// (default 10 minutes).
	Wait time.Duration
	// Executable is the firebreak binary the controller runs (default:
	// this process's own).
	Executable string
	// Progress receives a line per step and a count each second (default:
	// discarded).
	Progress io.Writer
	// Join is how the agents enrol: token (default; a join token of
	// --agents uses) or aws-iid (each its own EC2 instance identity
	// document from the AWS emulator's IMDS; see herd_iid.go).
	Join string
	// BinDir holds firebreak-agent and plugins/, for the API worker an
	// aws-iid herd starts (default: next to Executable).
	BinDir string
}

// CheckAndSetDefaults checks the options and sets defaults.
func (o *HerdOptions) CheckAndSetDefaults() error {
	if o.Agents < 1 {
		return fmt.Errorf("--agents %d: want at least 1", o.Agents)
	}
	if o.MaxHandshakes < 0 {
		return fmt.Errorf("--max-agent-handshakes %d: want at least 1 (or 0, the controller's default)", o.MaxHandshakes)
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Minute
	}
	if o.Executable == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary to start the controller from: %w", err)
		}
		o.Executable = self
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	switch o.Join {
	case "":
		o.Join = agent.JoinToken
	case agent.JoinToken, agent.JoinAWSIID:
	default:
		return fmt.Errorf("--join %q: want token or aws-iid", o.Join)
	}
	if o.Join == agent.JoinAWSIID && o.BinDir == "" {
		o.BinDir = filepath.Dir(o.Executable)
	}
	return nil
}

// EnrollResult is what `firebreak bench enroll --json` prints.
type EnrollResult struct {
	Agents int `json:"agents"`
	// Enrolled is how many agents enrolled and hold their stream.
	Enrolled int `json:"enrolled"`
	// TimeTo99MS is from the herd's start to 99% of the agents holding
	// their stream (-1: never).
	TimeTo99MS float64 `json:"time_to_99_ms"`
	// TimeToAllMS is from the herd's start to every agent holding its
	// stream (-1: not within the wait).
	TimeToAllMS float64 `json:"time_to_all_ms"`
	// Errors is how many agents did not enroll or connect: refused (any
	// refusal but a shed one, which they wait out), or not done within the
	// wait.
	Errors int `json:"errors"`
	// ShedAttempts is how many enrollment and connection attempts the
	// controller shed (RESOURCE_EXHAUSTED with a retry-after), as the
	// agents saw them.
	ShedAttempts int64 `json:"shed_attempts"`
	// AgentRestarts is how many agent starts failed and were made again
	// (an enrollment that did not get through, as a service manager
	// restarts the agent).
	AgentRestarts int64 `json:"agent_restarts"`
	// ControllerRSSBytes is the controller process's RSS with the herd
	// connected.
	ControllerRSSBytes int64 `json:"controller_rss_bytes"`
	// ControllerLogErrors is how many ERROR and WARN lines the controller
	// logged.
	ControllerLogErrors int  `json:"controller_log_errors"`
	SimulatedAgents     bool `json:"simulated_agents"`
	// Join is aws-iid for a herd enrolled by instance identity documents;
	// a token herd's output is as it was, without it.
	Join string `json:"join,omitempty"`
	// AttestedAWSIID is, for an aws-iid herd, how many of its agents
	// `agents list --json` shows connected with attestation aws-iid and
	// the instance id of their own document; any other counts as an error.
	AttestedAWSIID *int `json:"attested_aws_iid,omitempty"`
}

// ReconnectResult is what `firebreak bench reconnect --json` prints.
type ReconnectResult struct {
	Agents int `json:"agents"`
	// Reconnected is how many agents hold a stream to the restarted
	// controller.
	Reconnected int `json:"reconnected"`
	// ConnectedBeforeKill is how many agents held a stream when the
	// controller was killed (all of them unless some never enrolled).
	ConnectedBeforeKill int `json:"connected_before_kill"`
	// TimeToAllMS is from the kill -9 to every agent that was connected
	// holding a stream to the restarted controller (-1: not within the
	// wait).
	TimeToAllMS float64 `json:"time_to_all_ms"`
	// TimeTo99MS is from the kill to 99% of them.
	TimeTo99MS float64 `json:"time_to_99_ms"`
	// RestartMS is from the kill to the restarted controller serving.
	RestartMS float64 `json:"restart_ms"`
	// Errors is how many agents did not reconnect within the wait.
	Errors int `json:"errors"`
	// ShedAttempts is how many connection attempts the restarted
	// controller shed, as the agents saw them.
	ShedAttempts int64 `json:"shed_attempts"`
	// ControllerLogErrors is how many ERROR and WARN lines the restarted
	// controller logged until the last agent was back ("no error storm").
	ControllerLogErrors int `json:"controller_log_errors"`
	// ControllerLogLines is how many lines it logged in that time.
	ControllerLogLines int `json:"controller_log_lines"`
	// EnrollMS is how long the herd took to enroll and connect first
	// (setup), and EnrollTo99MS to 99% of it.
	EnrollMS     float64 `json:"enroll_ms"`
	EnrollTo99MS float64 `json:"enroll_to_99_ms"`
	// AgentRestarts is how many agent starts failed and were made again.
	AgentRestarts   int64 `json:"agent_restarts"`
	SimulatedAgents bool  `json:"simulated_agents"`
}

// Enroll measures a fresh enrollment herd: every agent, at the same
// moment, makes a key and a certificate request, enrolls with the join
// token, and opens its mTLS stream.
func Enroll(ctx context.Context, o HerdOptions) (*EnrollResult, error) {
	if err := o.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, err := startHerd(ctx, o)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	res := &EnrollResult{Agents: o.Agents, SimulatedAgents: true, TimeTo99MS: -1, TimeToAllMS: -1}
	waitErr := h.fleet.wait(ctx, o.Wait, h.start, o.Progress, "enrolled and connected")
	times := h.fleet.since(h.start)
	res.Enrolled = len(times)
	res.Errors = o.Agents - len(times)
	res.TimeTo99MS, res.TimeToAllMS = quantiles(times, o.Agents)
	res.ShedAttempts = h.fleet.shed.Load()
	res.AgentRestarts = h.fleet.restarts.Load()
	res.ControllerRSSBytes = h.ctl.rss()
	if res.ControllerLogErrors, _, err = countLogErrors(h.ctl.logPath, 0); err != nil {
		return nil, err
	}
	if h.iid != nil {
		res.Join = agent.JoinAWSIID
		attested, wrong, err := h.attested(ctx)
		if err != nil {
			return nil, err
		}
		res.AttestedAWSIID = &attested
		// An agent that connected but is not listed as attested by its own
		// instance's document is an error too.
		res.Errors += wrong
	}
	if waitErr != nil && !errors.Is(waitErr, errHerdIncomplete) {
		return nil, waitErr
	}
	return res, nil
}

// Reconnect measures a reconnect herd: the herd enrolls and connects, its
// connections stay up long enough for the agents' backoff to start again
// from its base, then the controller is killed with SIGKILL and restarted
// at once on the same data directory and address.
func Reconnect(ctx context.Context, o HerdOptions) (*ReconnectResult, error) {
	if err := o.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, err := startHerd(ctx, o)
	if err != nil {
		return nil, err
	}
	defer h.stop()
	res := &ReconnectResult{Agents: o.Agents, SimulatedAgents: true, TimeTo99MS: -1, TimeToAllMS: -1}
	// Agents that never enrolled stay out of the measure, and count as
	// errors: the herd is the agents that were connected.
	if err := h.fleet.wait(ctx, o.Wait, h.start, o.Progress, "enrolled and connected"); err != nil && !errors.Is(err, errHerdIncomplete) {
		return nil, fmt.Errorf("the herd's first connection: %w", err)
	}
	res.EnrollMS = ms(h.fleet.last().Sub(h.start))
	first := h.fleet.since(h.start)
	res.ConnectedBeforeKill = len(first)
	res.EnrollTo99MS, _ = quantiles(first, o.Agents)
	res.AgentRestarts = h.fleet.restarts.Load()
	// A real fleet was connected for a while: the agents' backoff starts
	// again from its base after a connection up for StableAfter.
	if settle := time.Until(h.fleet.last().Add(ctrladdr.StableAfter + time.Second)); settle > 0 {
		fmt.Fprintf(o.Progress, "all %d connected in %.1f s; keeping them connected %.0f s so they count as stable…\n", o.Agents, res.EnrollMS/1000, settle.Seconds())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(settle):
		}
	}
	logFrom, err := fileSize(h.ctl.logPath)
	if err != nil {
		return nil, err
	}
	shedBefore := h.fleet.shed.Load()
	fmt.Fprintf(o.Progress, "kill -9 of the controller (pid %d) and restart on the same data directory…\n", h.ctl.pid())
	killed := time.Now()
	h.ctl.kill()
	if err := h.ctl.start(ctx, o.Executable); err != nil {
		return nil, fmt.Errorf("restarting the controller: %w", err)
	}
	res.RestartMS = ms(time.Since(killed))
	waitErr := h.fleet.wait(ctx, o.Wait, killed, o.Progress, "reconnected")
	times := h.fleet.since(killed)
	res.Reconnected = len(times)
	res.Errors = o.Agents - len(times)
	res.TimeTo99MS, res.TimeToAllMS = quantiles(times, res.ConnectedBeforeKill)
	res.ShedAttempts = h.fleet.shed.Load() - shedBefore
	if res.ControllerLogErrors, res.ControllerLogLines, err = countLogErrors(h.ctl.logPath, logFrom); err != nil {
		return nil, err
	}
	if waitErr != nil && !errors.Is(waitErr, errHerdIncomplete) {
		return nil, waitErr
	}
	return res, nil
}

// herd is one controller and its simulated agents.
type herd struct {
	ctl   *controllerProc
	fleet *herdFleet
	start time.Time
	stop  func()
	// b is the benchmark's state, for operator commands.
	b *bench
	// iid is the AWS side of an aws-iid herd (nil for a token herd).
	iid *iidHerd
}

// startHerd starts the controller, makes a join token and starts every
// agent at once. stop undoes all of it, also after an error.
func startHerd(ctx context.Context, o HerdOptions) (h *herd, err error) {
	b, done, err := newBench(Options{Executable: o.Executable, Progress: o.Progress}, "firebreak-herd-")
	if err != nil {
		return nil, err
	}
	h = &herd{b: b}
	var cleanups []func()
	h.stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		done(nil)
	}
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			done(err)
		}
	}()
	b.env = os.Environ()
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(b.root, "controller")
	h.ctl = &controllerProc{name: "controller", addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), dataDir: dataDir,
		logPath: filepath.Join(b.root, "controller.log"), env: b.env}
	h.ctl.args = []string{"controller", "--data-dir", dataDir, "--listen", h.ctl.addr, "--approval-threshold", strconv.Itoa(o.Agents + 1),
		// Every simulated agent enrolls from 127.0.0.1, where a real
		// fleet enrolls from as many addresses as it has hosts; the
		// overall rate and the handshake admission keep their defaults.
		"--enroll-rate-per-source", "1e9", "--enroll-burst-per-source", strconv.Itoa(o.Agents)}
	if o.MaxHandshakes > 0 {
		h.ctl.args = append(h.ctl.args, "--max-agent-handshakes", strconv.Itoa(o.MaxHandshakes))
	}
	var policyFile string
	if o.Join == agent.JoinAWSIID {
		fmt.Fprintf(o.Progress, "AWS emulator: a member account with %d running instances tagged firebreak=enabled…\n", o.Agents)
		if h.iid, err = startIIDEmulator(b.root, o.Agents, time.Now().UTC()); err != nil {
			return nil, err
		}
		cleanups = append(cleanups, h.iid.stop)
		// Every document's pendingTime is the bench's start: the policy's
		// maximum age covers the setup and the whole wait.
		certFile, pf, err := h.iid.files(b.root, o.Wait+time.Hour)
		if err != nil {
			return nil, err
		}
		policyFile = pf
		h.ctl.args = append(h.ctl.args, h.iid.controllerArgs(certFile)...)
		h.ctl.env = append(append([]string(nil), b.env...), h.iid.controllerEnv()...)
	}
	if err := h.ctl.start(ctx, o.Executable); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, h.ctl.stop)
	b.creds = filepath.Join(dataDir, "admin.creds")
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(b.root, "agent-ca.pem")
	//nolint:gosec // G703: a file in the benchmark's own temporary directory
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		return nil, err
	}
	var configure func(int, *agent.Config)
	if h.iid == nil {
		var tok struct {
			Token string `json:"token"`
		}
		if err := b.cliJSON(ctx, h.ctl.addr, &tok, "token", "create", "--role", "host", "--uses", strconv.Itoa(2*o.Agents), "--ttl", "2h"); err != nil {
			return nil, err
		}
		configure = func(_ int, cfg *agent.Config) { cfg.JoinToken = tok.Token }
	} else {
		if err := h.prepareIID(ctx, o, policyFile, caFile); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Progress, "AWS emulator: signing the %d instances' identity documents (before the herd, as AWS has them at launch)…\n", o.Agents)
		if err := h.iid.presign(ctx); err != nil {
			return nil, err
		}
		configure = h.iid.configure
	}
	fmt.Fprintf(o.Progress, "controller serving on %s (pid %d); starting %d simulated agents at once…\n", h.ctl.addr, h.ctl.pid(), o.Agents)
	h.fleet = newHerdFleet(o.Agents)
	h.start = time.Now()
	stopAgents, err := h.fleet.run(ctx, h.ctl.addr, caFile, configure)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, stopAgents)
	return h, nil
}

// errHerdIncomplete is wait's error when some agents were not done in
// time; the result still counts the others.
var errHerdIncomplete = errors.New("not every agent connected within the wait")

// herdFleet runs the simulated agents and records, for each, when its
// stream was last established and why it failed to start.
type herdFleet struct {
	mu        sync.Mutex
	connected []time.Time
	startErrs int
	startErr  error
	// shed counts the attempts the controller shed, from the agents' own
	// log records of them.
	shed atomic.Int64
	// restarts counts the agents started again after a failed start.
	restarts atomic.Int64
}

// herdStartAttempts is how many times a simulated agent of a herd is
// started before it counts as failed.
const herdStartAttempts = 8

func newHerdFleet(n int) *herdFleet { return &herdFleet{connected: make([]time.Time, n)} }

// run starts every agent at once; the returned function stops them.
func (f *herdFleet) run(ctx context.Context, addr, caFile string, configure func(i int, cfg *agent.Config)) (func(), error) {
	client, stopAction, err := sdk.ServeInMemory(noop.Action{})
	if err != nil {
		return nil, err
	}
	logger := slog.New(&shedCounter{n: &f.shed})
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range f.connected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := agent.Config{Controller: addr, CAFile: caFile, Role: "host",
				Hostname: herdHostname(i), Simulated: true, MemoryJournal: true, BuiltinClients: []*sdk.Client{client},
				Labels: map[string]string{"bench": "herd"}, Logger: logger,
				Connected: func() {
					f.mu.Lock()
					f.connected[i] = time.Now()
					f.mu.Unlock()
				}}
			configure(i, &cfg)
			a, err := agent.New(actx, cfg)
			// An agent whose enrollment failed (its TLS handshake timed
			// out in the herd) exits, and its service manager starts it
			// again: here after a full-jitter backoff, up to
			// herdStartAttempts times.
			var backoff ctrladdr.Backoff
			for attempt := 1; err != nil && attempt < herdStartAttempts && actx.Err() == nil; attempt++ {
				f.restarts.Add(1)
				select {
				case <-actx.Done():
				case <-time.After(backoff.Next()):
				}
				a, err = agent.New(actx, cfg)
			}
			if err != nil {
				if actx.Err() == nil {
					f.mu.Lock()
					f.startErrs++
					if f.startErr == nil {
						f.startErr = fmt.Errorf("simulated agent %d did not enroll: %w", i, err)
					}
					f.mu.Unlock()
				}
				return
			}
			_ = a.Run(actx)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
		stopAction()
	}, nil
}

// herdHostname is the host name of the herd's agent i.
func herdHostname(i int) string { return fmt.Sprintf("herd-%05d", i) }

// since returns, sorted, how long after t each agent connected, for the
// agents that connected after t.
func (f *herdFleet) since(t time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, c := range f.connected {
		if c.After(t) {
			out = append(out, c.Sub(t))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// last is the latest connection time.
func (f *herdFleet) last() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, c := range f.connected {
		if c.After(last) {
			last = c
		}
	}
	return last
}

// wait waits until every agent connected after t, or every agent not yet
// connected failed to start, printing the count each second.
func (f *herdFleet) wait(ctx context.Context, limit time.Duration, t time.Time, progress io.Writer, what string) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastPrint := time.Now()
	for {
		n := len(f.since(t))
		f.mu.Lock()
		failed, firstErr := f.startErrs, f.startErr
		f.mu.Unlock()
		if n == len(f.connected) {
			fmt.Fprintf(progress, "%s: %d/%d at %.1f s\n", what, n, len(f.connected), time.Since(t).Seconds())
			return nil
		}
		if n+failed >= len(f.connected) {
			fmt.Fprintf(progress, "%s: %d/%d; %d agents failed, the first: %v\n", what, n, len(f.connected), failed, firstErr)
			return errHerdIncomplete
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(progress, "%s: %d/%d within %s\n", what, n, len(f.connected), limit)
			return errHerdIncomplete
		}
		if time.Since(lastPrint) >= time.Second {
			lastPrint = time.Now()
			fmt.Fprintf(progress, "%s: %d/%d at %.0f s (shed attempts so far %d)\n", what, n, len(f.connected), time.Since(t).Seconds(), f.shed.Load())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// shedCounter is the simulated agents' log handler: it keeps nothing but
// the count of attempts a controller shed, which the agent logs as such.
type shedCounter struct{ n *atomic.Int64 }

func (h *shedCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h *shedCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "the controller is at its limit") {
		h.n.Add(1)
	}
	return nil
}

func (h *shedCounter) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h *shedCounter) WithGroup(string) slog.Handler { return h }

// quantiles returns the 99th percentile and the maximum of sorted over a
// fleet of n (-1 each when fewer than that share of n are in sorted).
func quantiles(sorted []time.Duration, n int) (p99, all float64) {
	p99, all = -1, -1
	need := (n*99 + 99) / 100
	if len(sorted) >= need && need > 0 {
		p99 = ms(sorted[need-1])
	}
	if len(sorted) == n && n > 0 {
		all = ms(sorted[n-1])
	}
	return p99, all
}

// countLogErrors counts the lines of the controller's JSON log from byte
// offset from on, and those among them at level ERROR or WARN.
func countLogErrors(path string, from int64) (errs, lines int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		lines++
		l := sc.Text()
		if strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`) {
			errs++
		}
	}
	return errs, lines, sc.Err()
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// pid is the controller process's id (0 when not started).
func (c *controllerProc) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}
