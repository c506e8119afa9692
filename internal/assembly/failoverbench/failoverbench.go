// Package failoverbench measures a controller cluster: losing a machine
// (Run), and serving a whole fleet's run (Fleet, `bench fleet
// --controllers N`). Run:
// N controller processes of this binary on one PostgreSQL store (a
// throwaway server unless one is given) with S3 evidence (an in-process
// S3 server), and simulated agents in this process given every
// controller's address. Each round creates a noop run with a delay over
// every agent through one controller, kills another controller (or the
// run's owner) with SIGKILL about a second later, and measures how long
// the dead controller's agents take to be connected elsewhere and the run
// to complete; the killed controller is restarted before the next round.
// At the end it checks that no task was lost or run twice.
//
// The simulated agents are the real agent code (enrollment, mTLS gRPC
// stream, task signature and target checks, replay journal, the noop
// action through the go-plugin protocol served in memory); they skip the
// plugin process and the journal file (the journal is in memory).
package failoverbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/internal/assembly/fleetbench"
	"github.com/firebreak-ir/firebreak/internal/pgserver"
	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// Kill modes: which controller a round kills.
const (
	// KillHolder kills a controller other than the run's owner, the one
	// holding the most agents.
	KillHolder = "holder"
	// KillOwner kills the controller the run was created through.
	KillOwner = "owner"
)

// Options configures a benchmark.
type Options struct {
	// Controllers is how many controller processes to run (at least 2).
	Controllers int
	// Agents is how many simulated agents to run.
	Agents int
	// Rounds is how many kill -9 rounds to run.
	Rounds int
	// Delay is how long each noop task takes.
	Delay time.Duration
	// Kill is KillHolder (default) or KillOwner.
	Kill string
	// Store is a postgres:// URL of an empty database; empty starts a
	// throwaway PostgreSQL.
	Store string
	// Executable is the firebreak binary the controllers run (default:
	// this process's own).
	Executable string
	// Progress receives one line per step (default: discarded).
	Progress io.Writer
	// KeepLogs keeps the working directory with the controllers' logs
	// after a run that succeeded too (one that failed always keeps it).
	KeepLogs bool
}

// CheckAndSetDefaults checks the options and sets defaults.
func (o *Options) CheckAndSetDefaults() error {
	if o.Controllers < 2 {
		return fmt.Errorf("--controllers %d: a cluster needs at least 2 controllers", o.Controllers)
	}
	if o.Kill == "" {
		o.Kill = KillHolder
	}
	if o.Kill != KillHolder && o.Kill != KillOwner {
		return fmt.Errorf("--kill %q: want %s or %s", o.Kill, KillHolder, KillOwner)
	}
	if o.Agents < 1 {
		return fmt.Errorf("--agents %d: want at least 1", o.Agents)
	}
	if o.Rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", o.Rounds)
	}
	if o.Delay <= 0 {
		return fmt.Errorf("--delay %s: want a positive duration such as 5s", o.Delay)
	}
	if o.Store != "" {
		u, err := url.Parse(o.Store)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("--store: want a postgres://USER@HOST/DB URL of an empty database")
		}
	}
	if o.Executable == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary to start controllers from: %w", err)
		}
		o.Executable = self
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// Round is one kill -9 round.
type Round struct {
	// RunID is the round's run.
	RunID string `json:"run_id"`
	// Owner is the address the run was created through.
	Owner string `json:"owner"`
	// Killed is the address of the controller killed.
	Killed string `json:"killed"`
	// AgentsMoved is how many agents the killed controller held.
	AgentsMoved int `json:"agents_moved"`
	// ReconnectMS is from the kill to the last of them connected to
	// another controller (-1: not all within the wait).
	ReconnectMS float64 `json:"reconnect_ms"`
	// RunDoneMS is from the kill to the run's end as an operator sees it
	// (-1: not done within the wait).
	RunDoneMS float64 `json:"run_done_ms"`
	// Succeeded is how many of the run's targets succeeded.
	Succeeded int `json:"succeeded"`
	// Targets is how many targets the run had.
	Targets int `json:"targets"`
}

// Result is what `firebreak bench failover --json` prints.
type Result struct {
	Controllers int     `json:"controllers"`
	Agents      int     `json:"agents"`
	Kill        string  `json:"kill"`
	DelayMS     float64 `json:"delay_ms"`
	Rounds      []Round `json:"rounds"`
	// Lost is how many tasks of all the runs did not succeed or never ran.
	Lost int `json:"lost"`
	// Duplicated is how many task executions were repeats of a task an
	// agent had already run.
	Duplicated int `json:"duplicated"`
	// ControllerRSSBytesPerAgent is the controllers' RSS growth from
	// before the agents connected to after, divided by the agents.
	ControllerRSSBytesPerAgent float64 `json:"controller_rss_bytes_per_agent"`
	// ControllerRSSBytes is each controller's RSS once the agents were
	// connected.
	ControllerRSSBytes []int64 `json:"controller_rss_bytes"`
	// ConnectAllMS is how long the fleet took to enroll and connect.
	ConnectAllMS    float64 `json:"connect_all_ms"`
	SimulatedAgents bool    `json:"simulated_agents"`
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if err := o.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, done, err := newBench(o, "firebreak-failover-")
	if err != nil {
		return nil, err
	}
	defer func() { done(err) }()
	res = &Result{Controllers: o.Controllers, Agents: o.Agents, Kill: o.Kill, DelayMS: float64(o.Delay.Milliseconds()), SimulatedAgents: true}
	action := &countingNoop{runs: map[string]int{}}
	up, stop, err := b.start(ctx, action)
	if err != nil {
		return nil, err
	}
	defer stop()
	res.ConnectAllMS, res.ControllerRSSBytes, res.ControllerRSSBytesPerAgent = up.connectAllMS, up.rss, up.rssPerAgent

	var finals []runFinal
	for r := 0; r < o.Rounds; r++ {
		round, final, err := b.round(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r+1, err)
		}
		res.Rounds = append(res.Rounds, round)
		finals = append(finals, final)
		fmt.Fprintf(o.Progress, "round %d: killed %s holding %d agents: reconnected in %.0f ms, run done %.0f ms after the kill (%d/%d succeeded)\n",
			r+1, round.Killed, round.AgentsMoved, round.ReconnectMS, round.RunDoneMS, round.Succeeded, round.Targets)
	}
	res.Lost, res.Duplicated = action.check(finals)
	return res, nil
}

// clusterUp is what starting the cluster measured.
type clusterUp struct {
	connectAllMS float64
	rss          []int64
	rssPerAgent  float64
	// rssIdle is the controllers' summed RSS before any agent connected.
	rssIdle int64
}

// start starts the cluster and its fleet: PostgreSQL (a throwaway server
// unless the options name one), the S3 server, the cluster identity, the
// controllers, and the simulated agents offering action, all connected
// and the cluster settled. stop undoes all of it, also after an error.
func (b *bench) start(ctx context.Context, action sdk.Action) (up *clusterUp, stop func(), err error) {
	var cleanups []func()
	stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	dsn := b.o.Store
	if dsn == "" {
		fmt.Fprintln(b.o.Progress, "starting a throwaway PostgreSQL…")
		pg, err := pgserver.Start()
		if err != nil {
			return nil, stop, fmt.Errorf("starting a throwaway PostgreSQL (or give --store): %w", err)
		}
		cleanups = append(cleanups, pg.Stop)
		if err := pg.Exec(`CREATE DATABASE firebreak`); err != nil {
			return nil, stop, err
		}
		dsn = pg.DSN("firebreak")
	}
	evidence, stopS3, err := b.s3()
	if err != nil {
		return nil, stop, err
	}
	cleanups = append(cleanups, stopS3)
	if _, err := b.cli(ctx, "controller", "init", "--pki-dir", filepath.Join(b.root, "pki")); err != nil {
		return nil, stop, err
	}
	ports, err := freePorts(b.o.Controllers)
	if err != nil {
		return nil, stop, err
	}
	for i, p := range ports {
		name := fmt.Sprintf("controller-%c", 'a'+i)
		c := &controllerProc{name: name, addr: fmt.Sprintf("127.0.0.1:%d", p), dataDir: filepath.Join(b.root, name),
			logPath: filepath.Join(b.root, name+".log"), env: b.env}
		c.args = []string{"controller", "--data-dir", c.dataDir, "--pki-dir", filepath.Join(b.root, "pki"), "--listen", c.addr,
			"--store", dsn, "--evidence", evidence, "--approval-threshold", strconv.Itoa(b.o.Agents + 1),
			// Every simulated agent enrolls from 127.0.0.1, where a real
			// fleet enrolls from as many addresses as it has hosts.
			"--enroll-rate-per-source", "1e9", "--enroll-burst-per-source", strconv.Itoa(b.o.Agents),
			"--enroll-burst", strconv.Itoa(b.o.Agents)}
		if err := c.start(ctx, b.o.Executable); err != nil {
			return nil, stop, err
		}
		cleanups = append(cleanups, c.stop)
		b.ctls = append(b.ctls, c)
	}
	fmt.Fprintf(b.o.Progress, "%d controllers serving on %s\n", len(b.ctls), strings.Join(b.addrs(), ","))
	var rssBefore int64
	for _, c := range b.ctls {
		rssBefore += c.rss()
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := b.cliJSON(ctx, b.ctls[0].addr, &tok, "token", "create", "--role", "host", "--uses", strconv.Itoa(2*b.o.Agents), "--ttl", "2h"); err != nil {
		return nil, stop, err
	}
	caPEM, err := os.ReadFile(filepath.Join(b.root, "pki", "ca.pem"))
	if err != nil {
		return nil, stop, err
	}
	fmt.Fprintf(b.o.Progress, "starting %d simulated agents…\n", b.o.Agents)
	b.fleet = newFleetState(b.o.Agents)
	start := time.Now()
	stopAgents, err := fleetbench.HostWith(ctx, fleetbench.HostConfig{Controller: strings.Join(b.addrs(), ","), CAPEM: caPEM,
		Token: tok.Token, Agents: b.o.Agents, Action: action, Configure: b.fleet.configure, StartAttempts: 5, Failed: b.fleet.failed})
	if err != nil {
		return nil, stop, err
	}
	cleanups = append(cleanups, stopAgents)
	if err := b.fleet.waitAll(ctx, 10*time.Minute, func(s *agentConn) bool { return s.addr != "" }); err != nil {
		return nil, stop, fmt.Errorf("connecting the fleet: %w", err)
	}
	up = &clusterUp{connectAllMS: ms(time.Since(start)), rssIdle: rssBefore}
	var rssAfter int64
	for _, c := range b.ctls {
		r := c.rss()
		rssAfter += r
		up.rss = append(up.rss, r)
	}
	up.rssPerAgent = float64(rssAfter-rssBefore) / float64(b.o.Agents)
	fmt.Fprintf(b.o.Progress, "fleet connected in %.1f s: %s\n", up.connectAllMS/1000, b.fleet.spread())
	if err := b.settle(ctx); err != nil {
		return nil, stop, err
	}

	return up, stop, nil
}

// newBench makes a benchmark's working directory (the cluster identity,
// the controllers' data and logs). done removes it, or after an error or
// with KeepLogs keeps it, saying where, so the controllers' logs can be
// read.
func newBench(o Options, prefix string) (b *bench, done func(err error), err error) {
	root, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, err
	}
	done = func(err error) {
		if err != nil || o.KeepLogs {
			fmt.Fprintf(o.Progress, "controller logs kept in %s\n", root)
			return
		}
		_ = os.RemoveAll(root)
	}
	return &bench{o: o, root: root, creds: filepath.Join(root, "pki", "admin.creds")}, done, nil
}

// bench is one benchmark's state.
type bench struct {
	o     Options
	root  string
	creds string
	env   []string
	ctls  []*controllerProc
	fleet *fleetState
}

func (b *bench) addrs() []string {
	out := make([]string, len(b.ctls))
	for i, c := range b.ctls {
		out[i] = c.addr
	}
	return out
}

// s3 serves an S3 bucket in this process for the controllers' evidence and
// returns its --evidence URL.
func (b *bench) s3() (string, func(), error) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	b.env = append(os.Environ(), "AWS_ENDPOINT_URL="+srv.URL, "AWS_REGION=eu-west-1", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true")
	client := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bench-evidence")}); err != nil {
		srv.Close()
		return "", nil, err
	}
	return "s3://bench-evidence/failover/", srv.Close, nil
}

// cli runs `firebreak ARGS…` and returns its standard output.
func (b *bench) cli(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	//nolint:gosec // G204: this binary, with arguments the benchmark builds
	cmd := exec.CommandContext(ctx, b.o.Executable, args...)
	cmd.Env = b.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("firebreak %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// cliJSON runs an operator command as the cluster's admin through addr and
// decodes its --json output into v.
func (b *bench) cliJSON(ctx context.Context, addr string, v any, args ...string) error {
	out, err := b.cli(ctx, append([]string{"--controller", addr, "--creds", b.creds, "--json"}, args...)...)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("firebreak %s: %w", args[0], err)
	}
	return nil
}

// runFinal is a run's end as `runs show --json` prints it.
type runFinal struct {
	RunID     string `json:"run_id"`
	Status    string `json:"status"`
	Targets   int    `json:"targets"`
	Succeeded int    `json:"succeeded"`
	Results   []struct {
		AgentID  string `json:"agent_id"`
		Hostname string `json:"hostname"`
		Status   string `json:"status"`
		Error    string `json:"error"`
	} `json:"results"`
}

// notSucceeded says, for the progress lines, which targets of the run did
// not succeed and why (the first five).
func (f runFinal) notSucceeded() string {
	var out []string
	n := 0
	for _, t := range f.Results {
		if t.Status == "succeeded" {
			continue
		}
		if n++; n <= 5 {
			out = append(out, fmt.Sprintf("%s (%s): %s %q", t.Hostname, t.AgentID, t.Status, t.Error))
		}
	}
	if n > 5 {
		out = append(out, fmt.Sprintf("and %d more", n-5))
	}
	return strings.Join(out, "; ")
}

// settle waits until every controller lists every other as live, then
// for one routing sweep more, so that each has its links to the others
// before a run starts: a round measures a failover, not a cluster still
// forming.
func (b *bench) settle(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range b.ctls {
		for {
			var listed []json.RawMessage
			if err := b.cliJSON(ctx, c.addr, &listed, "controllers", "list"); err == nil && len(listed) == len(b.ctls) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not list the %d controllers within 2 minutes", c.name, len(b.ctls))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(routingSweep + time.Second):
	}
	return nil
}

// routingSweep is the controllers' catch-up sweep interval (controller/route).
const routingSweep = 5 * time.Second

// round runs round r.
func (b *bench) round(ctx context.Context, r int) (Round, runFinal, error) {
	owner := b.ctls[r%len(b.ctls)]
	var created struct {
		RunID   string `json:"run_id"`
		Targets int    `json:"targets"`
	}
	if err := b.cliJSON(ctx, owner.addr, &created, "run", "noop", "--select", "all", "--param", "delay="+b.o.Delay.String(),
		"--deadline", "10m"); err != nil {
		return Round{}, runFinal{}, err
	}
	round := Round{RunID: created.RunID, Owner: owner.addr, Targets: created.Targets}
	victim := owner
	if b.o.Kill == KillHolder {
		victim = nil
		held := b.fleet.held()
		for _, c := range b.ctls {
			if c != owner && (victim == nil || held[c.addr] > held[victim.addr]) {
				victim = c
			}
		}
	}
	watchVia := owner
	if victim == owner {
		watchVia = b.ctls[(r+1)%len(b.ctls)]
	}
	// The operator's view of the run's end: `runs show --wait` through a
	// controller that stays up.
	doneAt := make(chan time.Time, 1)
	go func() {
		// The watch is the operator's, through a controller that stays up;
		// one that fails (not exit 3, a run that ended with a target not
		// succeeded) is opened again, as an operator would.
		for ctx.Err() == nil {
			err := b.cliJSON(ctx, watchVia.addr, nil, "runs", "show", created.RunID, "--wait")
			var ee *exec.ExitError
			if err == nil || (errors.As(err, &ee) && ee.ExitCode() == 3) {
				break
			}
			fmt.Fprintf(b.o.Progress, "round %d: watching run %s again: %v\n", r+1, created.RunID, err)
		}
		doneAt <- time.Now()
	}()
	select {
	case <-ctx.Done():
		return round, runFinal{}, ctx.Err()
	case <-time.After(time.Second):
	}
	moved := b.fleet.on(victim.addr)
	round.Killed, round.AgentsMoved = victim.addr, len(moved)
	killedAt := time.Now()
	victim.kill()
	round.ReconnectMS = -1
	if err := b.fleet.waitSome(ctx, moved, 3*time.Minute, func(s *agentConn) bool {
		return s.addr != "" && s.addr != victim.addr && s.connectedAt.After(killedAt)
	}); err == nil {
		round.ReconnectMS = ms(b.fleet.lastConnect(moved).Sub(killedAt))
	} else {
		fmt.Fprintf(b.o.Progress, "round %d: %v\n", r+1, err)
	}
	round.RunDoneMS = -1
	var final runFinal
	select {
	case at := <-doneAt:
		round.RunDoneMS = ms(at.Sub(killedAt))
	case <-time.After(5 * time.Minute):
	case <-ctx.Done():
		return round, final, ctx.Err()
	}
	// The run's end, read back through a surviving controller, whatever
	// the watch said. A run with a target that did not succeed exits 3
	// with the run on stdout: that is a lost task, counted and shown, not
	// an error of the benchmark.
	out, err := b.cli(ctx, "--controller", watchVia.addr, "--creds", b.creds, "--json", "runs", "show", created.RunID)
	if jerr := json.Unmarshal(out, &final); err != nil && (jerr != nil || final.RunID == "") {
		return round, final, err
	} else if jerr != nil {
		return round, final, fmt.Errorf("runs show: %w", jerr)
	}
	if why := final.notSucceeded(); why != "" {
		fmt.Fprintf(b.o.Progress, "round %d: run %s ended %s; not succeeded: %s\n", r+1, created.RunID, final.Status, why)
	}
	if final.RunID == "" {
		final.RunID = created.RunID
	}
	round.Succeeded = final.Succeeded
	if final.Targets == 0 {
		final.Targets = created.Targets
	}
	if err := victim.start(ctx, b.o.Executable); err != nil {
		return round, final, fmt.Errorf("restarting %s: %w", victim.name, err)
	}
	return round, final, b.settle(ctx)
}

// controllerProc is one controller process.
type controllerProc struct {
	name, addr, dataDir, logPath string
	args                         []string
	env                          []string
	mu                           sync.Mutex
	cmd                          *exec.Cmd
	exited                       chan struct{}
}

// start starts the controller and waits until it serves.
func (c *controllerProc) start(ctx context.Context, self string) error {
	_ = os.Remove(filepath.Join(c.dataDir, "controller.addr"))
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	//nolint:gosec // G204: this binary, with arguments the benchmark builds
	cmd := exec.Command(self, c.args...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// A controller dies with the benchmark.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b, err := os.ReadFile(filepath.Join(c.dataDir, "controller.addr")); err == nil && strings.TrimSpace(string(b)) != "" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start: see %s", c.name, c.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not serve within 2 minutes: see %s", c.name, c.logPath)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *controllerProc) kill() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// stop stops the controller (SIGTERM, then SIGKILL).
func (c *controllerProc) stop() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		c.kill()
	}
}

// rss is the controller process's VmRSS in bytes (0 when unknown).
func (c *controllerProc) rss() int64 {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd == nil {
		return 0
	}
	return RSSOf(cmd.Process.Pid)
}

// RSSOf returns the VmRSS of process pid in bytes, 0 when unknown.
func RSSOf(pid int) int64 {
	bs, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(bs), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// agentConn is one simulated agent's connection, as its own callbacks
// report it.
type agentConn struct {
	dialing     string
	addr        string
	connectedAt time.Time
}

// fleetState follows every simulated agent's connection.
type fleetState struct {
	mu        sync.Mutex
	agents    []agentConn
	startErrs int
	startErr  error
}

func newFleetState(n int) *fleetState { return &fleetState{agents: make([]agentConn, n)} }

// configure gives agent i a dialer that records the address it dials and
// a callback that records the stream it established.
func (f *fleetState) configure(i int, cfg *agent.Config) {
	var d net.Dialer
	cfg.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
		f.mu.Lock()
		f.agents[i].dialing = addr
		f.mu.Unlock()
		return d.DialContext(ctx, "tcp", addr)
	}
	cfg.Connected = func() {
		f.mu.Lock()
		a := &f.agents[i]
		a.addr, a.connectedAt = a.dialing, time.Now()
		f.mu.Unlock()
	}
}

// failed records an agent that never started.
func (f *fleetState) failed(i int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startErrs++
	if f.startErr == nil {
		f.startErr = fmt.Errorf("simulated agent %d did not start: %w", i, err)
	}
}

// held counts agents per controller address.
func (f *fleetState) held() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, a := range f.agents {
		out[a.addr]++
	}
	return out
}

// spread describes held.
func (f *fleetState) spread() string {
	var parts []string
	for addr, n := range f.held() {
		parts = append(parts, fmt.Sprintf("%s %d", addr, n))
	}
	return strings.Join(parts, ", ")
}

// on returns the agents connected to addr.
func (f *fleetState) on(addr string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, a := range f.agents {
		if a.addr == addr {
			out = append(out, i)
		}
	}
	return out
}

// lastConnect is the latest connection time among agents.
func (f *fleetState) lastConnect(agents []int) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, i := range agents {
		if t := f.agents[i].connectedAt; t.After(last) {
			last = t
		}
	}
	return last
}

// waitAll waits until ok holds for every agent.
func (f *fleetState) waitAll(ctx context.Context, limit time.Duration, ok func(*agentConn) bool) error {
	all := make([]int, len(f.agents))
	for i := range all {
		all[i] = i
	}
	return f.waitSome(ctx, all, limit, ok)
}

// waitSome waits until ok holds for each of agents.
func (f *fleetState) waitSome(ctx context.Context, agents []int, limit time.Duration, ok func(*agentConn) bool) error {
	deadline := time.Now().Add(limit)
	for {
		f.mu.Lock()
		if f.startErr != nil {
			err := fmt.Errorf("%d agents did not start, the first: %w", f.startErrs, f.startErr)
			f.mu.Unlock()
			return err
		}
		missing := 0
		for _, i := range agents {
			if !ok(&f.agents[i]) {
				missing++
			}
		}
		f.mu.Unlock()
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d agents not connected within %s", missing, len(agents), limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// countingNoop is the noop action, counting how often each task runs.
type countingNoop struct {
	noop.Action
	mu   sync.Mutex
	runs map[string]int // "run/task" → executions
}

// Execute implements sdk.Action.
func (c *countingNoop) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	c.mu.Lock()
	c.runs[req.Task.GetRunId()+"/"+req.Task.GetTaskId()]++
	c.mu.Unlock()
	return c.Action.Execute(ctx, req, emit)
}

// check counts the tasks of finals that did not succeed or never ran
// (lost) and the executions beyond a task's first (duplicated).
func (c *countingNoop) check(finals []runFinal) (lost, duplicated int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ran := map[string]int{}
	for key, n := range c.runs {
		run, _, _ := strings.Cut(key, "/")
		ran[run]++
		duplicated += n - 1
	}
	for _, f := range finals {
		lost += f.Targets - f.Succeeded
		if missing := f.Targets - ran[f.RunID]; missing > 0 && missing > f.Targets-f.Succeeded {
			lost += missing - (f.Targets - f.Succeeded)
		}
	}
	return lost, duplicated
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
