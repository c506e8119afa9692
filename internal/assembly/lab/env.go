package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/netns"
	"github.com/firebreak-ir/firebreak/internal/pki"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Options configures the lab.
type Options struct {
	// BinDir holds firebreak-agent and plugins/ (default: the directory of
	// the running executable, i.e. bin/).
	BinDir string
	// Simulated forces simulated hosts even as root.
	Simulated bool
	// Progress receives the lab's narration (nil: none).
	Progress io.Writer
	// KeepDir keeps the lab's directory (logs, data) instead of removing it.
	KeepDir bool
	// Console, when not empty, is the HOST:PORT the controller serves its
	// web console on.
	Console string
	// Seed is the emulated organisation; awsemu.LabSeed(3) when nil. Its
	// account awsemu.LabAccountID(2) holds the hosts.
	Seed *awsemu.Seed
}

// Host is one emulated EC2 instance with its host agent.
type Host struct {
	// Name is the instance's Name tag and the agent's host name.
	Name string
	// InstanceID is the emulated instance id.
	InstanceID string
	// Agent is the agent process.
	Agent *exec.Cmd
}

// Env is a running lab: emulator, controller, worker and host agents.
type Env struct {
	// Dir holds everything the lab writes.
	Dir string
	// AWS is the emulator.
	AWS *AWS
	// Controller is the in-process controller.
	Controller *controller.Controller
	// Net is the namespace network when the hosts are real (root), else nil.
	Net *netns.Lab
	// Hosts are the member account's instances with their agents.
	Hosts []*Host
	// Member is the member account the hosts live in.
	Member string
	// EventsURL is the controller's HTTPS events endpoint.
	EventsURL string
	// EventsSecret is the shared secret the endpoint accepts.
	EventsSecret string

	opts     Options
	admin    context.Context
	procs    []*exec.Cmd
	stops    []func()
	cancel   context.CancelFunc
	runDone  chan error
	progress io.Writer
	started  time.Time
}

// Simulated reports whether the hosts are simulated (not root).
func (e *Env) Simulated() bool { return e.Net == nil }

// Admin is a context acting as the lab's operator.
func (e *Env) Admin() context.Context { return e.admin }

func (e *Env) say(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, "[%5.1fs] %s\n", time.Since(e.started).Seconds(), fmt.Sprintf(format, args...))
	}
}

var netnsName = regexp.MustCompile(`[^a-z0-9-]`)

// Start brings the lab up. Close it when done.
func Start(ctx context.Context, o Options) (_ *Env, err error) {
	if o.BinDir == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.BinDir = filepath.Dir(self)
	}
	agentBin := filepath.Join(o.BinDir, "firebreak-agent")
	if _, err := os.Stat(agentBin); err != nil {
		return nil, fmt.Errorf("the lab needs %s and %s: run `make build` first", agentBin, filepath.Join(o.BinDir, "plugins"))
	}
	stale := sweepStale(os.TempDir())
	dir, err := os.MkdirTemp("", "firebreak-lab-")
	if err != nil {
		return nil, err
	}
	if err := claimDir(dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	e := &Env{Dir: dir, opts: o, progress: o.Progress, started: time.Now(), Member: awsemu.LabAccountID(2)}
	if len(stale) > 0 {
		e.say("removed %d directories of earlier labs that were killed: %s", len(stale), strings.Join(stale, ", "))
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	seed := o.Seed
	if seed == nil {
		seed = awsemu.LabSeed(3)
	}
	// The lab boots the member's instances now, tagged for Firebreak: their
	// identity documents' pendingTime is fresh, as a new instance's is, and
	// the attestation policy's tag requirement holds.
	seed = bootInstances(seed, e.Member, time.Now().UTC())
	var names []string
	for _, acct := range seed.Accounts {
		if acct.ID != e.Member {
			continue
		}
		for _, rs := range acct.Resources {
			for _, in := range rs.Instances {
				e.Hosts = append(e.Hosts, &Host{Name: netnsName.ReplaceAllString(strings.ToLower(in.Name), "-"), InstanceID: in.ID})
				names = append(names, e.Hosts[len(e.Hosts)-1].Name)
			}
		}
	}
	if len(e.Hosts) == 0 {
		return nil, errors.New("the lab seed has no instances in the member account")
	}

	real := os.Geteuid() == 0 && !o.Simulated && netns.Probe() == ""
	listen := func(host string) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
	if real {
		if e.Net, err = netns.New(netns.KindLab, append([]string{"ctl", "attacker"}, names...)...); err != nil {
			return nil, fmt.Errorf("building the lab network: %w", err)
		}
		listen = func(host string) (net.Listener, error) {
			var lis net.Listener
			err := e.Net.Do(host, func() error {
				var err error
				lis, err = net.Listen("tcp", net.JoinHostPort(e.Net.Addr(host).String(), "0"))
				return err
			})
			return lis, err
		}
		e.say("network: namespaces %s (controller, attacker, %s) on a bridge; real nftables", e.Net.ID(), strings.Join(names, ", "))
	} else {
		why := "not root"
		if o.Simulated {
			why = "--simulated"
		} else if os.Geteuid() == 0 {
			why = netns.Probe()
		}
		e.say("network: SIMULATED hosts (%s): agents run on this machine, labelled simulated, without in-guest isolation", why)
	}

	awsLis, err := listen("ctl")
	if err != nil {
		return nil, err
	}
	if e.AWS, err = ServeAWS(awsLis, dir, seed); err != nil {
		return nil, err
	}
	if real {
		if err := e.AWS.ServeLocal(); err != nil {
			return nil, err
		}
	}
	e.say("AWS: emulator at %s with a %d-account organisation (EMULATED; nothing reaches AWS)", e.AWS.Endpoint, len(seed.Accounts))

	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	e.EventsSecret = hex.EncodeToString(secret)
	secretFile := filepath.Join(dir, "events.secret")
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(secretFile, []byte(e.EventsSecret+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(rulesFile, []byte(labRules), 0o600); err != nil {
		return nil, err
	}
	attestation, err := e.attestation(real)
	if err != nil {
		return nil, err
	}
	ctlLis, err := listen("ctl")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return nil, err
	}
	logger := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e.Controller, err = controller.New(ctx, controller.Config{
		DataDir: filepath.Join(dir, "controller"), Listener: ctlLis, Logger: logger, Heartbeat: 10 * time.Second,
		Incident: controller.IncidentConfig{RulesFile: rulesFile, NoDefaultRules: true, EventsListen: "127.0.0.1:0", EventsSecretFile: secretFile},
		Console:  controller.ConsoleConfig{Listen: o.Console}, Attestation: attestation,
	})
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.runDone = make(chan error, 1)
	go func() { e.runDone <- e.Controller.Run(cctx) }()
	e.EventsURL = "https://" + e.Controller.EventsAddr() + "/v1/events"
	e.admin = auth.WithOperator(ctx, &store.Operator{Name: "lab", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN})
	e.say("controller: %s (SQLite and local evidence in %s)", e.Controller.Addr(), filepath.Join(dir, "controller"))

	if err := e.startAgents(ctx, agentBin, filepath.Join(o.BinDir, "plugins"), real); err != nil {
		return nil, err
	}
	return e, nil
}

// startAgents starts the worker and one host agent per instance, and waits
// until all are connected.
func (e *Env) startAgents(ctx context.Context, agentBin, pluginDir string, real bool) error {
	hostPlugins := pluginDir
	if !real {
		// Simulated hosts cannot change a real firewall; leaving the
		// isolation plugins out keeps them from trying.
		var err error
		if hostPlugins, err = pluginSubset(pluginDir, filepath.Join(e.Dir, "plugins"), "host-isolate", "host-unisolate"); err != nil {
			return err
		}
	}
	caFile := filepath.Join(e.Dir, "controller", pki.CACertFile)
	ctl := e.Controller.Addr()
	// No join token: the worker signs an sts:GetCallerIdentity with its
	// role's credentials and each host sends its instance's identity
	// document, which the controller checks against the policy the lab
	// wrote (docs/attestation.md).
	start := func(name, ns string, env []string, args ...string) (*exec.Cmd, error) {
		argv := append([]string{agentBin, "--controller", ctl, "--ca-file", caFile, "--data-dir", filepath.Join(e.Dir, name),
			"--hostname", name}, args...)
		if ns != "" {
			argv = append([]string{"ip", "netns", "exec", e.Net.Netns(ns)}, argv...)
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), env...)
		logf, err := os.Create(filepath.Join(e.Dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting agent %s: %w", name, err)
		}
		e.procs = append(e.procs, cmd)
		return cmd, nil
	}
	workerNS := ""
	if real {
		workerNS = "ctl"
	}
	if _, err := start("lab-worker", workerNS, e.AWS.WorkerEnv(), "--role", "worker", "--plugin-dir", pluginDir, "--join", "aws-sts"); err != nil {
		return err
	}
	if err := e.waitConnected(ctx, 1); err != nil {
		return err
	}
	// Preparation: account-targeted steps need the organisation's accounts,
	// and an instance enrols only from an account of the organisation.
	sync, err := e.Controller.Operator.SyncAccounts(e.admin, &operatorv1.SyncAccountsRequest{ManagementAccount: awsemu.LabAccountID(0)})
	if err != nil {
		return fmt.Errorf("preparation: account discovery: %w", err)
	}
	e.say("preparation: %d accounts discovered through the management account (run %s)", len(sync.GetAccounts()), sync.GetRunId())
	for _, h := range e.Hosts {
		ns, extra := "", []string{"--simulated-host"}
		if real {
			ns, extra = h.Name, nil
		}
		imdsURL, err := e.serveIMDS(h, ns)
		if err != nil {
			return err
		}
		// The account, region, instance_id and tag labels come from the
		// document and the instance's tags as the controller reads them.
		args := append([]string{"--role", "host", "--plugin-dir", hostPlugins, "--join", "aws-iid", "--label", "lab=demo"}, extra...)
		env := []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imdsURL, "AWS_EC2_METADATA_DISABLED=", "AWS_REGION=us-east-1"}
		if h.Agent, err = start(h.Name, ns, env, args...); err != nil {
			return err
		}
	}
	if err := e.waitConnected(ctx, len(e.Hosts)+1); err != nil {
		return err
	}
	kind := "real hosts in network namespaces"
	if !real {
		kind = "SIMULATED hosts"
	}
	agents, err := e.Agents(ctx)
	if err != nil {
		return err
	}
	e.say("agents: a worker and %d host agents (%s) enrolled by attestation and connected", len(e.Hosts), kind)
	for _, a := range agents {
		e.say("  %-12s %-6s enrolled by %s", a.Hostname, a.Role, a.Attestation)
	}
	return nil
}

// waitConnected waits until want agents hold a stream.
func (e *Env) waitConnected(ctx context.Context, want int) error {
	deadline := time.Now().Add(90 * time.Second)
	for e.Controller.Fleet.ConnectedCount() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d lab agents connected in 90s: see the logs in %s", e.Controller.Fleet.ConnectedCount(), want, e.Dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// pluginSubset copies a plugin directory without the named actions and
// writes its manifest.
func pluginSubset(from, to string, without ...string) (string, error) {
	if err := os.MkdirAll(to, 0o755); err != nil {
		return "", err
	}
	m, err := pluginhost.ReadManifest(from)
	if err != nil {
		return "", err
	}
	out := pluginhost.Manifest{Version: 1}
	for _, p := range m.Plugins {
		skip := false
		for _, w := range without {
			if p.File == pluginhost.FilePrefix+w {
				skip = true
			}
		}
		if skip {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, p.File))
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(to, p.File), b, 0o755); err != nil {
			return "", err
		}
		out.Plugins = append(out.Plugins, p)
	}
	if err := pluginhost.WriteManifest(to, &out); err != nil {
		return "", err
	}
	return to, nil
}

// Close stops everything and removes the lab's directory (unless kept).
func (e *Env) Close() {
	for _, p := range e.procs {
		if p.Process != nil {
			_ = p.Process.Signal(os.Interrupt)
		}
	}
	for _, p := range e.procs {
		done := make(chan struct{})
		go func() {
			_ = p.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if e.cancel != nil {
		e.cancel()
		<-e.runDone
	}
	for _, stop := range e.stops {
		stop()
	}
	if e.AWS != nil {
		_ = e.AWS.Stop()
	}
	if e.Net != nil {
		_ = e.Net.Close()
	}
	if !e.opts.KeepDir {
		_ = os.RemoveAll(e.Dir)
	}
}

// labRules send the drills' findings straight to their playbooks.
const labRules = `# firebreak lab: findings start their playbooks automatically.
- name: ec2-compromise
  match:
    types: ["UnauthorizedAccess:EC2/*", "CryptoCurrency:EC2/*", "Backdoor:EC2/*", "Trojan:EC2/*"]
    min_severity: 4
  playbook: ec2-instance-compromise
  mode: auto
  # A drill keeps triage short; the bundle says when it was cut.
  inputs:
    instance_id: "${{ finding.instance_id }}"
    account: "${{ finding.account }}"
    region: "${{ finding.region }}"
    collect_time_budget: "15s"
    collect_max_bytes: 268435456
- name: leaked-key
  match:
    types: ["UnauthorizedAccess:IAMUser/*", "CredentialAccess:IAMUser/*"]
    min_severity: 4
  playbook: iam-credential-compromise
  mode: auto
- name: public-bucket
  match:
    types: ["Policy:S3/*"]
  playbook: s3-public-exposure
  mode: auto
`

// ConsoleCommander is the operator the lab signs in to the console as.
const ConsoleCommander = "commander"

// ConsoleLogin adds the lab's incident commander (an admin operator),
// writes its credential to DIR/commander.creds (so the CLI can act as it
// too, and ask for more login links), and returns a one-time login link
// to the console and the credential's path.
func (e *Env) ConsoleLogin(ctx context.Context) (link, creds string, err error) {
	resp, err := e.Controller.Operator.AddOperator(e.admin, &operatorv1.AddOperatorRequest{Name: ConsoleCommander,
		Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN})
	if err != nil {
		return "", "", fmt.Errorf("adding the console's operator: %w", err)
	}
	creds = filepath.Join(e.Dir, ConsoleCommander+".creds")
	if err := os.WriteFile(creds, resp.GetCredsJson(), 0o600); err != nil {
		return "", "", err
	}
	link, err = e.Controller.ConsoleLoginLink(ctx, ConsoleCommander)
	if err != nil {
		return "", "", err
	}
	return link, creds, nil
}

// CAFile is the lab controller's CA certificate, which signs the
// console's certificate.
func (e *Env) CAFile() string { return filepath.Join(e.Dir, "controller", pki.CACertFile) }
