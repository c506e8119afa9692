// Package e2e starts the real Firebreak binaries — controller, agents,
// plugins — as separate processes talking mTLS gRPC, for end-to-end tests.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bins are the built binaries.
type Bins struct {
	// Firebreak is bin/firebreak.
	Firebreak string
	// Agent is bin/firebreak-agent.
	Agent string
	// PluginDir holds the plugins and manifest.json.
	PluginDir string
	// Root is the module root.
	Root string
}

var (
	buildOnce sync.Once
	bins      *Bins
	buildErr  error
	buildDir  string
)

// moduleRoot finds the directory holding go.mod.
func moduleRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found")
		}
		dir = parent
	}
}

// Build builds every binary once per test process, with `make build`'s
// layout, into a directory removed by Cleanup. The directory is under the
// user's cache directory, not /tmp: triage collection copies every
// executable under /tmp, /var/tmp and /dev/shm, and the collection tests
// must not archive the suite's own 700 MB of binaries. Under -short it
// skips the test: end-to-end tests start the real binaries, and -short runs
// unit tests only.
func Build(t testing.TB) *Bins {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: -short runs unit tests only; end-to-end tests build and start the real binaries in the full suite (make test)")
	}
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildDir, err = binDir()
		if err != nil {
			buildErr = err
			return
		}
		b := &Bins{Firebreak: filepath.Join(buildDir, "firebreak"), Agent: filepath.Join(buildDir, "firebreak-agent"),
			PluginDir: filepath.Join(buildDir, "plugins"), Root: root}
		if err := os.MkdirAll(b.PluginDir, 0o755); err != nil {
			buildErr = err
			return
		}
		var plugins []string
		entries, _ := os.ReadDir(filepath.Join(root, "plugins", "cmd"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "firebreak-plugin-") {
				plugins = append(plugins, "./plugins/cmd/"+e.Name())
			}
		}
		// One go build per output directory: it loads the packages once and
		// compiles and links the binaries in parallel.
		for _, job := range []struct {
			dir  string
			pkgs []string
		}{
			{buildDir, []string{"./controller/cmd/firebreak", "./agent/cmd/firebreak-agent"}},
			{b.PluginDir, plugins},
		} {
			cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", job.dir + "/"}, job.pkgs...)...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %v: %v\n%s", job.pkgs, err, out)
				return
			}
		}
		if out, err := exec.Command(b.Firebreak, "plugins", "manifest", b.PluginDir).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("plugins manifest: %v\n%s", err, out)
			return
		}
		bins = b
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

// binDir makes the build directory under the user's cache directory, 0755
// like `make build`'s bin/, which the plugin host requires to be writable by
// its owner alone.
func binDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the test binaries (set HOME or XDG_CACHE_HOME): %w", err)
	}
	base = filepath.Join(base, "firebreak-e2e")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(base, "bin-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// TempOutsideTmp points TMPDIR, and so every t.TempDir, at a fresh
// directory under /var/lib/fbtest (or ~/.cache/fbtest where that cannot be
// made) when the temporary directory lies under /tmp, /var/tmp or
// /dev/shm, the trees the tmp_executables artifact collects; `make test`
// does the same through GOTMPDIR. The returned function removes the
// directory and restores TMPDIR.
func TempOutsideTmp() (restore func()) {
	cur, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		cur = os.TempDir()
	}
	collected := false
	for _, root := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if cur == root || strings.HasPrefix(cur, root+"/") {
			collected = true
		}
	}
	if !collected {
		return func() {}
	}
	bases := []string{"/var/lib/fbtest"}
	if home, err := os.UserHomeDir(); err == nil {
		bases = append(bases, filepath.Join(home, ".cache", "fbtest"))
	}
	for _, base := range bases {
		if os.MkdirAll(base, 0o700) != nil {
			continue
		}
		dir, err := os.MkdirTemp(base, "e2e-")
		if err != nil {
			continue
		}
		old, had := os.LookupEnv("TMPDIR")
		os.Setenv("TMPDIR", dir)
		return func() {
			os.RemoveAll(dir)
			if had {
				os.Setenv("TMPDIR", old)
			} else {
				os.Unsetenv("TMPDIR")
			}
		}
	}
	return func() {}
}

// Cleanup removes the built binaries; call it from TestMain.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Proc is a running binary with its log.
type Proc struct {
	Name    string
	Args    []string
	Env     []string
	LogPath string
	Prefix  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts the process; its output goes to LogPath.
func (p *Proc) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	argv := append(append([]string{}, p.Prefix...), p.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.Name, err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func(done chan struct{}) {
		p.err = cmd.Wait()
		logf.Close()
		close(done)
	}(p.done)
}

// Stop sends SIGTERM and waits (then SIGKILL after 15s).
func (p *Proc) Stop() error { return p.signal(syscall.SIGTERM, 15*time.Second) }

// Kill kills the process group at once, as a crash would.
func (p *Proc) Kill() { _ = p.signal(syscall.SIGKILL, 5*time.Second) }

func (p *Proc) signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return p.err
	default:
	}
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	} else {
		_ = cmd.Process.Signal(sig)
	}
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return p.err
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Log returns the process's output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// Controller is a running controller.
type Controller struct {
	*Proc
	Bins    *Bins
	DataDir string
	Addr    string
	Creds   string
}

// ControllerOptions configures StartController.
type ControllerOptions struct {
	// Listen defaults to 127.0.0.1:0.
	Listen string
	// Args are extra flags.
	Args []string
	// Prefix runs the controller under a wrapper (e.g. ip netns exec NS).
	Prefix []string
	// Env is extra environment.
	Env []string
}

// StartController starts a controller in a fresh data dir and waits until
// it serves.
func StartController(t testing.TB, b *Bins, o ControllerOptions) *Controller {
	t.Helper()
	dir := t.TempDir()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	c := &Controller{Bins: b, DataDir: filepath.Join(dir, "controller"), Creds: filepath.Join(dir, "controller", "admin.creds")}
	c.Proc = &Proc{Name: "controller", LogPath: filepath.Join(dir, "controller.log"), Prefix: o.Prefix, Env: o.Env,
		Args: append([]string{b.Firebreak, "controller", "--data-dir", c.DataDir, "--listen", o.Listen}, o.Args...)}
	c.Start(t)
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			t.Logf("controller log:\n%s", tail(c.Log(), 60))
		}
	})
	c.awaitAddr(t)
	return c
}

func (c *Controller) awaitAddr(t testing.TB) {
	t.Helper()
	addrFile := filepath.Join(c.DataDir, "controller.addr")
	WaitFor(t, 20*time.Second, "the controller to serve", func() bool {
		b, err := os.ReadFile(addrFile)
		if err != nil {
			return false
		}
		c.Addr = strings.TrimSpace(string(b))
		return c.Addr != ""
	})
}

// Restart stops the controller (SIGTERM) and starts it again on the same
// address and data dir.
func (c *Controller) Restart(t testing.TB) {
	t.Helper()
	if err := c.Stop(); err != nil {
		t.Logf("controller exit: %v", err)
	}
	_ = os.Remove(filepath.Join(c.DataDir, "controller.addr"))
	for i, a := range c.Args {
		if a == "--listen" {
			c.Args[i+1] = c.Addr
		}
	}
	c.Start(t)
	c.awaitAddr(t)
}

// StartAt starts the controller process again, after Kill or Stop, on
// the same data dir (the same CA, keys and database) but listening on
// listen, and waits until it serves there.
func (c *Controller) StartAt(t testing.TB, listen string) {
	t.Helper()
	_ = os.Remove(filepath.Join(c.DataDir, "controller.addr"))
	for i, a := range c.Args {
		if a == "--listen" {
			c.Args[i+1] = listen
		}
	}
	c.Start(t)
	c.awaitAddr(t)
}

// Result is the outcome of one CLI invocation.
type Result struct {
	Stdout, Stderr string
	Exit           int
}

// CLI runs `firebreak ARGS…` as the admin operator.
func (c *Controller) CLI(t testing.TB, args ...string) Result {
	t.Helper()
	return c.CLIAs(t, c.Creds, args...)
}

// CLIAs runs `firebreak ARGS…` with a given credential file.
func (c *Controller) CLIAs(t testing.TB, creds string, args ...string) Result {
	t.Helper()
	// The CLI runs where the controller runs (its network namespace, if any).
	argv := append(append([]string{}, c.Prefix...), c.Bins.Firebreak, "--controller", c.Addr, "--creds", creds)
	return runCLI(t, append(argv, args...), fmt.Sprintf("firebreak %v", args))
}

// runCLI runs argv for up to 3 minutes and returns its output and exit
// code; what fails to start at all fails the test, named by what.
func runCLI(t testing.TB, argv []string, what string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := Result{Stdout: so.String(), Stderr: se.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return r
}

// CLIOnTerminal runs `firebreak ARGS…` with its standard output and error
// on a pseudo-terminal (util-linux script(1)), so the CLI draws what it
// draws for a person: progress bars, spinners. Result.Stdout is the
// terminal's transcript, both streams in the order written; it skips the
// test when script(1) is missing.
func (c *Controller) CLIOnTerminal(t testing.TB, args ...string) Result {
	t.Helper()
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("needs script(1) (util-linux) for a pseudo-terminal")
	}
	argv := append(append([]string{}, c.Prefix...), c.Bins.Firebreak, "--controller", c.Addr, "--creds", c.Creds)
	argv = append(argv, args...)
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return runCLI(t, []string{"script", "-qfec", strings.Join(quoted, " "), "/dev/null"}, fmt.Sprintf("firebreak %v on a terminal", args))
}

// MustJSON runs the CLI with --json, requires exit 0 (or want), and decodes
// stdout into v.
func (c *Controller) MustJSON(t testing.TB, v any, wantExit int, args ...string) Result {
	t.Helper()
	r := c.CLI(t, append(args, "--json")...)
	if r.Exit != wantExit {
		t.Fatalf("firebreak %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.Exit, wantExit, r.Stdout, r.Stderr)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
			t.Fatalf("firebreak %v: decoding %q: %v", args, r.Stdout, err)
		}
	}
	return r
}

// Token creates a join token.
func (c *Controller) Token(t testing.TB, role string, uses int, extra ...string) string {
	t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	c.MustJSON(t, &out, 0, append([]string{"token", "create", "--role", role, "--uses", fmt.Sprint(uses)}, extra...)...)
	return out.Token
}

// Agent is a running agent.
type Agent struct {
	*Proc
	DataDir string
	Name    string
}

// AgentOptions configures StartAgent.
type AgentOptions struct {
	// Name names the agent's data dir and log, and its hostname label.
	Name string
	// Token enrolls the agent; empty reuses an existing enrollment.
	Token string
	// Role is host (default) or worker.
	Role string
	// Labels are k=v labels.
	Labels []string
	// PluginDir defaults to the built plugins.
	PluginDir string
	// Controller defaults to the controller's address; a comma-separated
	// list gives the agent several controllers to fail over between.
	Controller string
	// CAFile is the CA the agent pins; it defaults to the controller's
	// data dir's ca.pem (a cluster's controllers share --pki-dir's).
	CAFile string
	// Prefix runs the agent under a wrapper (e.g. ip netns exec NS).
	Prefix []string
	// DataDir defaults to a fresh directory.
	DataDir string
	// Env is extra environment.
	Env []string
	// Args are extra flags.
	Args []string
}

// PluginSubset returns a new plugin directory holding only the named
// plugins (copies, for plugins must be real files) and their manifest,
// for fixtures that run many agents: each agent hashes every plugin it is
// given at start, and the whole catalogue, for dozens of agents at once,
// is minutes of CPU on a small machine.
func (b *Bins) PluginSubset(t testing.TB, names ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src := filepath.Join(b.PluginDir, "firebreak-plugin-"+n)
		data, err := os.ReadFile(src) //nolint:gosec // G304: a plugin this suite built
		if err != nil {
			t.Fatalf("plugin %s: %v", n, err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), data, 0o700); err != nil { //nolint:gosec // G306: an executable, the agent's own user's only
			t.Fatal(err)
		}
	}
	//nolint:gosec // G204: the suite's own firebreak binary
	if out, err := exec.Command(b.Firebreak, "plugins", "manifest", dir).CombinedOutput(); err != nil {
		t.Fatalf("plugins manifest %s: %v\n%s", dir, err, out)
	}
	return dir
}

// StartAgent starts an agent (enrolling it when a token is given).
func (c *Controller) StartAgent(t testing.TB, o AgentOptions) *Agent {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = filepath.Join(t.TempDir(), o.Name)
	}
	if o.PluginDir == "" {
		o.PluginDir = c.Bins.PluginDir
	}
	if o.Controller == "" {
		o.Controller = c.Addr
	}
	if o.Role == "" {
		o.Role = "host"
	}
	if o.CAFile == "" {
		o.CAFile = filepath.Join(c.DataDir, "ca.pem")
	}
	args := []string{c.Bins.Agent, "--controller", o.Controller, "--ca-file", o.CAFile,
		"--data-dir", o.DataDir, "--role", o.Role, "--plugin-dir", o.PluginDir}
	for _, l := range o.Labels {
		args = append(args, "--label", l)
	}
	args = append(args, o.Args...)
	env := append([]string{}, o.Env...)
	if o.Token != "" {
		env = append(env, "FIREBREAK_JOIN_TOKEN="+o.Token)
	}
	a := &Agent{DataDir: o.DataDir, Name: o.Name}
	a.Proc = &Proc{Name: "agent " + o.Name, LogPath: filepath.Join(filepath.Dir(o.DataDir), o.Name+".log"), Args: args, Env: env, Prefix: o.Prefix}
	a.Start(t)
	t.Cleanup(func() {
		a.Kill()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", o.Name, tail(a.Log(), 40))
		}
	})
	return a
}

// AgentID reads the enrolled agent's id from its data dir.
func (a *Agent) AgentID(t testing.TB) string {
	t.Helper()
	var id struct {
		AgentID string `json:"agent_id"`
	}
	WaitFor(t, 20*time.Second, "agent "+a.Name+" to enroll", func() bool {
		b, err := os.ReadFile(filepath.Join(a.DataDir, "identity.json"))
		return err == nil && json.Unmarshal(b, &id) == nil && id.AgentID != ""
	})
	return id.AgentID
}

// AgentJSON is one entry of `agents list --json`.
type AgentJSON struct {
	ID        string            `json:"id"`
	Role      string            `json:"role"`
	Hostname  string            `json:"hostname"`
	Labels    map[string]string `json:"labels"`
	Connected bool              `json:"connected"`
	Isolated  bool              `json:"isolated"`
	// Attestation is aws-iid, aws-sts or token.
	Attestation string `json:"attestation"`
	// State is connected, offline, revoked or terminated.
	State string `json:"state"`
	// TerminatedAt is set once AWS reported the instance terminated.
	TerminatedAt *time.Time `json:"terminated_at"`
	Plugins      []struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
	} `json:"plugins"`
}

// Agents lists agents.
func (c *Controller) Agents(t testing.TB) []AgentJSON {
	t.Helper()
	var out []AgentJSON
	c.MustJSON(t, &out, 0, "agents", "list")
	return out
}

// WaitConnected waits until the given agents are connected.
func (c *Controller) WaitConnected(t testing.TB, ids ...string) {
	t.Helper()
	WaitFor(t, 30*time.Second, fmt.Sprintf("agents %v to connect", ids), func() bool {
		connected := map[string]bool{}
		for _, a := range c.Agents(t) {
			connected[a.ID] = a.Connected
		}
		for _, id := range ids {
			if !connected[id] {
				return false
			}
		}
		return true
	})
}

// RunJSON is the `run --wait --json` output.
type RunJSON struct {
	RunID     string `json:"run_id"`
	Action    string `json:"action"`
	Status    string `json:"status"`
	Targets   int    `json:"targets"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
	Offline   int    `json:"offline"`
	Results   []struct {
		AgentID  string          `json:"agent_id"`
		Hostname string          `json:"hostname"`
		Account  string          `json:"account"`
		Region   string          `json:"region"`
		Status   string          `json:"status"`
		Error    string          `json:"error"`
		Output   json.RawMessage `json:"output"`
		Evidence []string        `json:"evidence_ids"`
	} `json:"results"`
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
