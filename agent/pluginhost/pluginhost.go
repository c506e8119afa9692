// Package pluginhost loads the agent's response-action plugins through
// hashicorp/go-plugin, with the checks that make running them safe: a
// root-owned (or agent-owned) directory that nobody else can write, absolute
// paths, a SHA-256 match against the manifest at load and at every launch,
// no inherited environment, gRPC only, and a start timeout. A plugin that
// dies is rebuilt on its next use.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/firebreak-ir/firebreak/internal/rpcbuf"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// ManifestFile is the manifest's name inside the plugin directory.
const ManifestFile = "manifest.json"

// FilePrefix starts every plugin binary's name; the rest is the action.
const FilePrefix = "firebreak-plugin-"

// Manifest lists the plugin binaries and their SHA-256 sums.
type Manifest struct {
	// Version is the manifest format version (1).
	Version int `json:"version"`
	// Plugins are the binaries.
	Plugins []ManifestEntry `json:"plugins"`
}

// ManifestEntry is one plugin binary.
type ManifestEntry struct {
	// File is the binary's name inside the directory, no path.
	File string `json:"file"`
	// SHA256 is the hex SHA-256 of the binary.
	SHA256 string `json:"sha256"`
}

// ReadManifest reads and checks a plugin manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("reading the plugin manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("the plugin manifest is not valid JSON: %w", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("the plugin manifest has version %d; this agent reads version 1", m.Version)
	}
	return &m, nil
}

// ScanDir builds the manifest of every firebreak-plugin-* regular file in
// dir, hashing each.
func ScanDir(dir string) (*Manifest, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Version: 1, Plugins: []ManifestEntry{}}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), FilePrefix) || !e.Type().IsRegular() {
			continue
		}
		sum, err := FileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		m.Plugins = append(m.Plugins, ManifestEntry{File: e.Name(), SHA256: sum})
	}
	sort.Slice(m.Plugins, func(i, j int) bool { return m.Plugins[i].File < m.Plugins[j].File })
	return m, nil
}

// WriteManifest writes dir/manifest.json atomically.
func WriteManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, ManifestFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Config configures the host.
type Config struct {
	// Dir is the plugin directory; empty means no external plugins.
	Dir string
	// Logger receives the host's and the plugins' logs.
	Logger *slog.Logger
	// IdleTimeout stops a plugin process unused for this long (default 2m).
	IdleTimeout time.Duration
	// StartTimeout bounds a plugin's start (default 10s).
	StartTimeout time.Duration
	// Role is the agent's role; plugins that do not list it are not loaded.
	Role string
	// SocketDir is where plugin processes create their gRPC sockets: a
	// directory only the agent can enter, so no other user sees them and
	// none are left in /tmp, the place a collection looks for intruders'
	// files, by plugins that died without removing theirs. Empty: the
	// system's temporary directory, as go-plugin does by default.
	SocketDir string
}

// Host runs the agent's plugins.
type Host struct {
	cfg     Config
	mu      sync.Mutex
	plugins map[string]*entry
	skipped []string
	stop    chan struct{}
}

type entry struct {
	name   string
	path   string
	sha256 string
	desc   *pluginv1.ActionDescription

	mu       sync.Mutex
	client   *plugin.Client
	action   *sdk.Client
	lastUsed time.Time
	running  int
	builtin  func()
}

// New loads and verifies every plugin in the manifest. A plugin that fails
// a check is skipped, logged and listed by Skipped; the agent runs without it.
func New(cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	h := &Host{cfg: cfg, plugins: map[string]*entry{}, stop: make(chan struct{})}
	if cfg.SocketDir != "" && len(cfg.SocketDir)+len("/plugin4294967295") >= maxSocketPath {
		cfg.Logger.Warn("the plugin socket directory's path is too long for a Unix socket; plugins use the system's temporary directory",
			"dir", cfg.SocketDir)
		cfg.SocketDir = ""
		h.cfg.SocketDir = ""
	}
	if cfg.SocketDir != "" {
		if err := prepareSocketDir(cfg.SocketDir, cfg.Logger); err != nil {
			return nil, err
		}
	}
	if cfg.Dir != "" {
		if err := h.loadDir(); err != nil {
			return nil, err
		}
	}
	go h.reapIdle()
	return h, nil
}

func (h *Host) loadDir() error {
	dir, err := filepath.Abs(h.cfg.Dir)
	if err != nil {
		return err
	}
	if err := CheckOwnership(dir, true); err != nil {
		return err
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	if err := CheckOwnership(filepath.Join(dir, ManifestFile), false); err != nil {
		return err
	}
	// Each plugin is started once to describe itself; a few at a time keeps
	// an agent with many plugins quick to start.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for _, pe := range m.Plugins {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := h.loadOne(dir, pe)
			switch {
			case errors.Is(err, errOtherRole):
				h.cfg.Logger.Debug("plugin is for agents of another role", "file", pe.File, "error", err)
			case err != nil:
				h.mu.Lock()
				h.skipped = append(h.skipped, fmt.Sprintf("%s: %v", pe.File, err))
				h.mu.Unlock()
				h.cfg.Logger.Error("plugin refused", "file", pe.File, "error", err)
			}
		}()
	}
	wg.Wait()
	sort.Strings(h.skipped)
	return nil
}

func (h *Host) loadOne(dir string, pe ManifestEntry) error {
	// Security-critical: a manifest entry names a file directly inside the
	// plugin directory; no path may lead elsewhere.
	if pe.File == "" || strings.ContainsAny(pe.File, `/\`) || pe.File == "." || pe.File == ".." || !strings.HasPrefix(pe.File, FilePrefix) {
		return fmt.Errorf("manifest entry %q is not a plugin file name (%s<action>)", pe.File, FilePrefix)
	}
	path := filepath.Join(dir, pe.File)
	if err := CheckOwnership(path, false); err != nil {
		return err
	}
	want, err := hex.DecodeString(pe.SHA256)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("manifest SHA-256 %q is not valid", pe.SHA256)
	}
	got, err := FileSHA256(path)
	if err != nil {
		return err
	}
	// Security-critical: the binary must be exactly the one the manifest
	// names; go-plugin checks it again at every launch.
	if got != strings.ToLower(pe.SHA256) {
		return fmt.Errorf("SHA-256 mismatch: the manifest says %s, the file is %s: the binary was changed", pe.SHA256, got)
	}
	e := &entry{name: strings.TrimPrefix(pe.File, FilePrefix), path: path, sha256: got}
	desc, err := h.describe(e)
	if err != nil {
		return err
	}
	if desc.GetName() != e.name {
		return fmt.Errorf("the plugin calls itself %q but its file names %q", desc.GetName(), e.name)
	}
	if h.cfg.Role != "" && len(desc.GetRoles()) > 0 && !contains(desc.GetRoles(), h.cfg.Role) {
		return fmt.Errorf("%w: action %q runs on %v agents, not %s", errOtherRole, desc.GetName(), desc.GetRoles(), h.cfg.Role)
	}
	e.desc = desc
	h.mu.Lock()
	h.plugins[e.name] = e
	h.mu.Unlock()
	h.cfg.Logger.Info("plugin loaded", "action", e.name, "version", desc.GetVersion(), "sha256", got)
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// describe starts the plugin once to read its description, then stops it:
// processes start on demand, so an idle agent holds none.
func (h *Host) describe(e *entry) (*pluginv1.ActionDescription, error) {
	c, err := h.start(e)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.StartTimeout)
	defer cancel()
	d, err := c.Describe(ctx)
	h.kill(e)
	if err != nil {
		return nil, fmt.Errorf("describing the plugin: %w", err)
	}
	return d, nil
}

// AddBuiltin serves an in-process action over the same gRPC contract
// (used by the lab and benchmarks).
func (h *Host) AddBuiltin(a sdk.Action) error {
	c, stop, err := sdk.ServeInMemory(a)
	if err != nil {
		return err
	}
	return h.AddBuiltinClient(c, stop)
}

// AddBuiltinClient registers an already-served in-memory action, which
// several simulated agents may share.
func (h *Host) AddBuiltinClient(c *sdk.Client, stop func()) error {
	d, err := c.Describe(context.Background())
	if err != nil {
		stop()
		return err
	}
	h.mu.Lock()
	h.plugins[d.GetName()] = &entry{name: d.GetName(), sha256: "builtin", desc: d, action: c, builtin: stop}
	h.mu.Unlock()
	return nil
}

// Plugins returns the loaded plugins for the agent's hello, by name.
func (h *Host) Plugins() []*agentv1.PluginInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*agentv1.PluginInfo, 0, len(h.plugins))
	for _, e := range h.plugins {
		out = append(out, &agentv1.PluginInfo{Description: e.desc, Sha256: e.sha256})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetDescription().GetName() < out[j].GetDescription().GetName() })
	return out
}

// Skipped lists the plugins refused at load, with reasons.
func (h *Host) Skipped() []string { return h.skipped }

// Has reports whether the host offers an action.
func (h *Host) Has(action string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.plugins[action] != nil
}

// Describe returns an action's description.
func (h *Host) Describe(action string) (*pluginv1.ActionDescription, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.plugins[action]; e != nil {
		return e.desc, true
	}
	return nil, false
}

// errOtherRole marks a plugin made for agents of another role; it is left
// out quietly.
var errOtherRole = errors.New("plugin for another role")

// ErrUnknownAction means the agent has no plugin for an action.
var ErrUnknownAction = errors.New("this agent has no plugin for the action")

// Execute runs an action, starting its plugin if needed. When the plugin
// process dies during the call, the error says so and the next call starts
// a fresh process.
func (h *Host) Execute(ctx context.Context, action string, req *pluginv1.ExecuteRequest, handle func(*pluginv1.ExecuteResponse) error) (*pluginv1.Result, error) {
	h.mu.Lock()
	e := h.plugins[action]
	h.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownAction, action)
	}
	ctx, span := telemetry.Tracer().Start(ctx, "plugin.execute "+action, trace.WithAttributes(telemetry.NonEmpty(
		telemetry.AttrAction.String(action), telemetry.AttrTaskID.String(req.GetTask().GetTaskId()), telemetry.AttrRunID.String(req.GetTask().GetRunId()),
		telemetry.AttrAgentID.String(req.GetTask().GetAgentId()), attribute.String("firebreak.plugin.sha256", e.sha256))...))
	defer span.End()
	c, err := h.acquire(ctx, e)
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
		return nil, err
	}
	defer h.release(e)
	res, err := c.Execute(ctx, req, handle)
	if errors.Is(err, sdk.ErrPluginExited) && ctx.Err() == nil {
		h.kill(e)
		err = fmt.Errorf("the %s plugin exited during the task (it crashed or was killed); it will be restarted for the next task: %w", action, err)
	}
	if err != nil && ctx.Err() == nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	return res, err
}

func (h *Host) acquire(ctx context.Context, e *entry) (*sdk.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.action != nil && e.client != nil && e.client.Exited() {
		e.client.Kill()
		e.client, e.action = nil, nil
	}
	if e.action == nil {
		// A launch is its own span in the task's trace; the go-plugin
		// start-up calls under it are not traced (sdk.TraceFilter).
		_, span := telemetry.Tracer().Start(ctx, "plugin.launch "+e.name)
		_, err := h.startLocked(e)
		if err != nil {
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
		if err != nil {
			return nil, err
		}
	}
	e.running++
	e.lastUsed = time.Now()
	return e.action, nil
}

func (h *Host) release(e *entry) {
	e.mu.Lock()
	e.running--
	e.lastUsed = time.Now()
	e.mu.Unlock()
}

func (h *Host) start(e *entry) (*sdk.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return h.startLocked(e)
}

func (h *Host) startLocked(e *entry) (*sdk.Client, error) {
	sum, _ := hex.DecodeString(e.sha256)
	cmd := exec.Command(e.path)
	// Plugins get no environment but the telemetry settings; go-plugin adds
	// its own handshake variables.
	for _, k := range telemetry.OTLPEnv {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	if h.cfg.SocketDir != "" {
		cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+h.cfg.SocketDir)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap,
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		SkipHostEnv:      true,
		Managed:          true,
		AutoMTLS:         true,
		StartTimeout:     h.cfg.StartTimeout,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "plugin." + e.name,
			Output:     os.Stderr,
			JSONFormat: true,
			Level:      hclog.Warn,
		}),
		SyncStdout: io.Discard,
		SyncStderr: os.Stderr,
		// The task's trace continues into the plugin through the gRPC
		// metadata, so its spans join the controller's and the agent's.
		GRPCDialOptions: []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithFilter(sdk.TraceFilter))), experimental.WithBufferPool(rpcbuf.Shared)},
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) || strings.Contains(err.Error(), "checksum") {
			return nil, fmt.Errorf("refusing to start the %s plugin: its binary no longer matches the manifest's SHA-256", e.name)
		}
		return nil, fmt.Errorf("starting the %s plugin: %w", e.name, err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("starting the %s plugin: %w", e.name, err)
	}
	e.client, e.action = client, raw.(*sdk.Client)
	return e.action, nil
}

func (h *Host) kill(e *entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		e.client.Kill()
	}
	if e.builtin == nil {
		e.client, e.action = nil, nil
	}
}

func (h *Host) reapIdle() {
	t := time.NewTicker(h.cfg.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.stopIdle(func(e *entry) bool { return time.Since(e.lastUsed) > h.cfg.IdleTimeout })
		}
	}
}

// StopIdle stops every plugin process that runs no action now. The agent
// calls it once its start-up reconciliation has run the plugins that ask
// for it, so an agent at rest holds no plugin process, rather than one
// for IdleTimeout after each start; the next task starts the plugin again.
func (h *Host) StopIdle() { h.stopIdle(func(*entry) bool { return true }) }

// stopIdle stops the plugin processes that run no action and that also
// pass old; the check and the stop hold the entry's lock together, so a
// task acquiring the plugin meanwhile keeps it.
func (h *Host) stopIdle(old func(*entry) bool) {
	h.mu.Lock()
	list := make([]*entry, 0, len(h.plugins))
	for _, e := range h.plugins {
		list = append(list, e)
	}
	h.mu.Unlock()
	for _, e := range list {
		e.mu.Lock()
		if e.client != nil && e.running == 0 && old(e) {
			e.client.Kill()
			if e.builtin == nil {
				e.client, e.action = nil, nil
			}
		}
		e.mu.Unlock()
	}
}

// Close stops every plugin process.
func (h *Host) Close() {
	close(h.stop)
	h.mu.Lock()
	list := make([]*entry, 0, len(h.plugins))
	for _, e := range h.plugins {
		list = append(list, e)
	}
	h.mu.Unlock()
	for _, e := range list {
		h.kill(e)
		if e.builtin != nil {
			e.builtin()
		}
	}
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CheckOwnership refuses a plugin file or directory that someone other
// than root (or, when the agent is not root, the agent's own user) could
// have written: a symlink, a file owned by another user, or one writable by
// group or others.
func CheckOwnership(path string, wantDir bool) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	// Security-critical: each of these would let another user swap the code
	// the agent runs as root.
	if st.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink; plugins must be real files in the plugin directory", path)
	}
	if wantDir != st.IsDir() || (!wantDir && !st.Mode().IsRegular()) {
		return fmt.Errorf("%s is not a regular %s", path, map[bool]string{true: "directory", false: "file"}[wantDir])
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %v): run chmod go-w", path, st.Mode().Perm())
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	euid := uint32(os.Geteuid())
	if sys.Uid != 0 && sys.Uid != euid {
		return fmt.Errorf("%s is owned by uid %d; it must be owned by root or the agent's user", path, sys.Uid)
	}
	if euid == 0 && sys.Uid != 0 {
		return fmt.Errorf("%s is owned by uid %d; an agent running as root loads only root-owned plugins", path, sys.Uid)
	}
	return nil
}

// maxSocketPath is the room for a Unix socket's path on Linux (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// prepareSocketDir creates the plugins' socket directory, owned by the
// agent and closed to everyone else, and removes the sockets that plugins
// of an earlier agent process left when they were killed: no plugin of
// this process runs yet.
func prepareSocketDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the plugin socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("securing the plugin socket directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("reading the plugin socket directory: %w", err)
	}
	removed := 0
	for _, e := range ents {
		if e.Type()&fs.ModeSocket == 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			removed++
		}
	}
	if removed > 0 {
		log.Info("removed the sockets of plugins an earlier agent process left", "dir", dir, "count", removed)
	}
	return nil
}
