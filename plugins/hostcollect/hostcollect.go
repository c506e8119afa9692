// Package hostcollect is the host-collect action: in-guest forensic
// collection from a live Linux host into one evidence bundle
// (internal/bundle) streamed to the agent as it is produced.
//
// It reads the host directly from /proc, /sys, /etc, /var and the
// filesystem, with no external tools. It lowers its own CPU and IO priority,
// honours a total byte cap, a per-file cap and a time budget, follows no
// symbolic link out of a tree it was asked to read, opens evidence read-only
// without updating access times where the kernel allows, and records every
// item it could not read rather than stopping.
package hostcollect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "host-collect"

// Version is the action's version, recorded in every bundle's manifest.
const Version = "1.0.0"

// DefaultIMDSEndpoint is the EC2 instance metadata service.
const DefaultIMDSEndpoint = "http://169.254.169.254"

// Default caps per profile.
const (
	DefaultTriageMaxBytes     = 2 << 30
	DefaultTriageMaxFileBytes = 64 << 20
	DefaultTriageMaxLogBytes  = 16 << 20
	DefaultTriageTimeBudget   = 5 * time.Minute
	DefaultFullMaxBytes       = 16 << 30
	DefaultFullMaxFileBytes   = 512 << 20
	DefaultFullMaxLogBytes    = 256 << 20
	DefaultFullTimeBudget     = time.Hour
	DefaultRecentDays         = 7
)

// Params are the action's parameters.
type Params struct {
	// Profile is "triage" (default) or "full".
	Profile string `json:"profile"`
	// Artifacts names the artifacts to collect, overriding the profile.
	Artifacts []string `json:"artifacts,omitempty"`
	// Paths are the roots for the bodyfile and hashes artifacts.
	Paths []string `json:"paths,omitempty"`
	// PID is the process whose memory to dump (process_memory).
	PID int `json:"pid,omitempty"`
	// MaxBytes caps the uncompressed size of the bundle.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// MaxFileBytes caps one copied file or memory region.
	MaxFileBytes int64 `json:"max_file_bytes,omitempty"`
	// MaxLogBytes caps one copied log; the newest bytes are kept.
	MaxLogBytes int64 `json:"max_log_bytes,omitempty"`
	// TimeBudget bounds the collection, as a Go duration.
	TimeBudget string `json:"time_budget,omitempty"`
	// RecentDays is the window of recently_modified.
	RecentDays int `json:"recent_days,omitempty"`
	// Compression is "gzip" (default) or "zstd".
	Compression string `json:"compression,omitempty"`
	// BodyfileMD5 fills the bodyfile's MD5 column (costly: reads every file).
	BodyfileMD5 bool `json:"bodyfile_md5,omitempty"`
	// IMDSEndpoint is the instance metadata endpoint, after the SDK's
	// AWS_EC2_METADATA_SERVICE_ENDPOINT convention (plugins get no
	// environment, so it comes as a parameter). Giving it also makes the
	// collector query it off EC2.
	IMDSEndpoint string `json:"imds_endpoint,omitempty"`

	budget      time.Duration
	imdsAlways  bool
	compression bundle.Compression
}

// CheckAndSetDefaults checks the parameters and fills in the profile's
// defaults. Its errors name the parameter and what to give instead.
func (p *Params) CheckAndSetDefaults() error {
	if p.Profile == "" {
		p.Profile = ProfileTriage
	}
	var maxBytes, maxFile, maxLog int64
	var budget time.Duration
	switch p.Profile {
	case ProfileTriage:
		maxBytes, maxFile, maxLog, budget = DefaultTriageMaxBytes, DefaultTriageMaxFileBytes, DefaultTriageMaxLogBytes, DefaultTriageTimeBudget
	case ProfileFull:
		maxBytes, maxFile, maxLog, budget = DefaultFullMaxBytes, DefaultFullMaxFileBytes, DefaultFullMaxLogBytes, DefaultFullTimeBudget
	default:
		return fmt.Errorf("profile %q is not known: use triage or full", p.Profile)
	}
	for _, a := range p.Artifacts {
		if _, ok := lookupArtifact(a); !ok {
			return fmt.Errorf("artifact %q is not in the catalogue (see `firebreak artifacts list`)", a)
		}
	}
	for _, root := range p.Paths {
		if !strings.HasPrefix(root, "/") {
			return fmt.Errorf("paths: %q is not an absolute path", root)
		}
	}
	if p.PID < 0 {
		return fmt.Errorf("pid %d is not a process id", p.PID)
	}
	for _, c := range []struct {
		name string
		v    *int64
		def  int64
	}{{"max_bytes", &p.MaxBytes, maxBytes}, {"max_file_bytes", &p.MaxFileBytes, maxFile}, {"max_log_bytes", &p.MaxLogBytes, maxLog}} {
		switch {
		case *c.v < 0:
			return fmt.Errorf("%s is %d: give a positive number of bytes", c.name, *c.v)
		case *c.v == 0:
			*c.v = c.def
		}
	}
	p.MaxFileBytes = min(p.MaxFileBytes, p.MaxBytes)
	p.MaxLogBytes = min(p.MaxLogBytes, p.MaxFileBytes)
	p.budget = budget
	if p.TimeBudget != "" {
		d, err := time.ParseDuration(p.TimeBudget)
		if err != nil || d <= 0 {
			return fmt.Errorf("time_budget %q is not a positive duration such as 90s or 10m", p.TimeBudget)
		}
		p.budget = d
	}
	p.TimeBudget = p.budget.String()
	switch {
	case p.RecentDays < 0:
		return fmt.Errorf("recent_days is %d: give a number of days", p.RecentDays)
	case p.RecentDays == 0:
		p.RecentDays = DefaultRecentDays
	}
	switch p.Compression {
	case "", "gzip":
		p.compression = bundle.Gzip
	case "zstd":
		p.compression = bundle.Zstd
	default:
		return fmt.Errorf("compression %q is not known: use gzip or zstd", p.Compression)
	}
	p.Compression = string(p.compression)
	p.imdsAlways = p.IMDSEndpoint != ""
	if p.IMDSEndpoint == "" {
		p.IMDSEndpoint = DefaultIMDSEndpoint
	}
	if !strings.HasPrefix(p.IMDSEndpoint, "http://") && !strings.HasPrefix(p.IMDSEndpoint, "https://") {
		return fmt.Errorf("imds_endpoint %q is not an http(s) URL", p.IMDSEndpoint)
	}
	p.IMDSEndpoint = strings.TrimRight(p.IMDSEndpoint, "/")
	return nil
}

// Result is the action's result.
type Result struct {
	Profile string `json:"profile"`
	// Archive describes the streamed bundle.
	Archive ArchiveInfo `json:"archive"`
	// Artifacts is the outcome of each artifact, in collection order.
	Artifacts []ArtifactResult `json:"artifacts"`
	// Truncated is true when a cap or the time budget cut the collection short.
	Truncated        bool      `json:"truncated"`
	TruncatedReasons []string  `json:"truncated_reasons,omitempty"`
	StartedAt        time.Time `json:"started_at"`
	FinishedAt       time.Time `json:"finished_at"`
	ElapsedSeconds   float64   `json:"elapsed_seconds"`
	// Priority is the CPU and IO priority the collector ran at.
	Priority Priority `json:"priority"`
	// Errors lists artifacts that failed, with the reason.
	Errors []string `json:"errors,omitempty"`
}

// ArchiveInfo describes the bundle as streamed.
type ArchiveInfo struct {
	Name        string `json:"name"`
	MediaType   string `json:"media_type"`
	Compression string `json:"compression"`
	// SHA256 is the SHA-256 of the compressed stream, as the evidence store
	// receives it.
	SHA256 string `json:"sha256"`
	// Bytes is the compressed size.
	Bytes int64 `json:"bytes"`
	// PayloadBytes is the uncompressed size of all members but the manifest.
	PayloadBytes int64 `json:"payload_bytes"`
	// Members counts the members, the manifest included.
	Members int `json:"members"`
}

// ArtifactResult is the outcome of one artifact.
type ArtifactResult struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	Items     int64  `json:"items"`
	Files     int64  `json:"files"`
	Bytes     int64  `json:"bytes"`
	Skipped   int64  `json:"skipped"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Action is the host-collect action.
type Action struct {
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// New returns the action reading the live host.
func New() *Action { return &Action{} }

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	names := make([]string, len(catalogue))
	for i, d := range catalogue {
		names[i] = d.Name
	}
	str, i64, list := pluginv1.ParamType_PARAM_TYPE_STRING, pluginv1.ParamType_PARAM_TYPE_INT, pluginv1.ParamType_PARAM_TYPE_STRING_LIST
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: Version,
		Domain:  pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "Forensic collection from the live host (processes with executable hashes, sockets, users and logins, " +
			"persistence, shell histories, logs, system state, file timelines, process memory) into one hashed evidence bundle",
		Roles: []string{"host"},
		Params: []*pluginv1.ParamSpec{
			{Name: "profile", Type: str, Description: "triage (seconds; default) or full (adds filesystem walks)", DefaultJson: `"triage"`, Allowed: []string{ProfileTriage, ProfileFull}},
			{Name: "artifacts", Type: list, Description: "artifacts to collect instead of the profile's", Allowed: names},
			{Name: "paths", Type: list, Description: "absolute roots for the bodyfile and hashes artifacts (default / and the binary directories)"},
			{Name: "pid", Type: i64, Description: "process whose memory to dump (adds process_memory)"},
			{Name: "max_bytes", Type: i64, Description: "cap on the uncompressed bundle (default 2 GiB triage, 16 GiB full)"},
			{Name: "max_file_bytes", Type: i64, Description: "cap on one copied file or memory region (default 64 MiB triage, 512 MiB full)"},
			{Name: "max_log_bytes", Type: i64, Description: "cap on one copied log, newest bytes kept (default 16 MiB triage, 256 MiB full)"},
			{Name: "time_budget", Type: pluginv1.ParamType_PARAM_TYPE_DURATION, Description: "time budget; the bundle is closed cleanly and marked truncated when it is spent (default 5m triage, 1h full)"},
			{Name: "recent_days", Type: i64, Description: "window for recently_modified, in days", DefaultJson: "7"},
			{Name: "compression", Type: str, Description: "archive compression", DefaultJson: `"gzip"`, Allowed: []string{"gzip", "zstd"}},
			{Name: "bodyfile_md5", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, Description: "fill the bodyfile's MD5 column (reads every file)"},
			{Name: "imds_endpoint", Type: str, Description: "EC2 instance metadata endpoint (AWS_EC2_METADATA_SERVICE_ENDPOINT); queried on EC2, or whenever given", DefaultJson: `"` + DefaultIMDSEndpoint + `"`},
		},
	}, nil
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p Params
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	// A default applied by the controller counts as "given"; only an
	// endpoint other than the real one makes the collector query off EC2.
	explicitIMDS := p.IMDSEndpoint != "" && strings.TrimRight(p.IMDSEndpoint, "/") != DefaultIMDSEndpoint
	if err := p.CheckAndSetDefaults(); err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "host-collect: %v", err)
	}
	p.imdsAlways = explicitIMDS
	clock := a.Clock
	if clock == nil {
		clock = time.Now
	}
	started := clock()
	prio := lowerPriority()

	budgetCtx, cancel := context.WithTimeout(ctx, p.budget)
	defer cancel()

	c := &collection{ctx: budgetCtx, p: &p, emit: emit, now: clock, host: req.Host, hashes: map[fileKey]hashResult{}}
	ident := c.identity(req)
	archiveName := "host-collect-" + p.Profile + p.compression.Extension()
	out := emit.Artifact(archiveName, p.compression.MediaType())
	w := bundle.NewWriter(out, p.compression, bundle.Meta{
		Collector: bundle.Collector{Name: Name, Version: Version},
		Profile:   p.Profile,
		Host:      ident,
		Task: bundle.TaskIdentity{TaskID: req.Task.GetTaskId(), RunID: req.Task.GetRunId(),
			CaseID: req.Task.GetCaseId(), Operator: req.Task.GetOperator()},
		Limits: bundle.Limits{MaxBytes: p.MaxBytes, MaxFileBytes: p.MaxFileBytes, MaxLogBytes: p.MaxLogBytes,
			TimeBudget: p.TimeBudget, RecentDays: p.RecentDays},
		StartedAt: started,
		Clock:     clock,
		// Security-critical: secrets of the host (a join token, operator
		// keys, AWS credentials) must not become readable to whoever can
		// read the evidence.
		Redactor: redactor{},
	})
	c.w = w

	selected := selectArtifacts(p.Profile, p.Artifacts, p.PID)
	res := &Result{Profile: p.Profile, StartedAt: started.UTC(), Priority: prio}
	for i, def := range selected {
		_ = emit.Progress(i*100/len(selected), "collecting "+def.Name)
		aw := &artifact{ArtifactWriter: w.Artifact(def.Name), c: c, redactCopies: redactedCopies[def.Name]}
		switch {
		case ctx.Err() != nil:
			aw.Fail("not collected: the task was cancelled")
		case budgetCtx.Err() != nil:
			reason := fmt.Sprintf("not collected: the time budget of %s was spent", p.TimeBudget)
			aw.Fail(reason)
			w.MarkTruncated(fmt.Sprintf("time budget of %s spent", p.TimeBudget))
		case w.Remaining() == 0:
			aw.Fail("not collected: the bundle's byte cap was reached")
			w.MarkTruncated("byte cap reached")
		default:
			c.run(def, aw)
		}
		st, err := aw.Close()
		if err != nil && !errors.Is(err, bundle.ErrCapReached) {
			// The stream to the agent is broken: nothing more can be sent.
			return nil, fmt.Errorf("writing the bundle: %w", err)
		}
		if st.Status == bundle.StatusError {
			res.Errors = append(res.Errors, def.Name+": "+st.Reason)
			_ = emit.Log("warn", fmt.Sprintf("artifact %s: %s", def.Name, st.Reason))
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("finishing the bundle: %w", err)
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("ending the artifact stream: %w", err)
	}
	_ = emit.Progress(100, "bundle complete")

	man := w.Manifest()
	stats := w.Stats()
	res.Archive = ArchiveInfo{Name: archiveName, MediaType: p.compression.MediaType(), Compression: string(p.compression),
		SHA256: stats.SHA256, Bytes: stats.CompressedBytes, PayloadBytes: stats.PayloadBytes, Members: stats.Members}
	for _, st := range man.Artifacts {
		res.Artifacts = append(res.Artifacts, ArtifactResult{Name: st.Name, Status: st.Status, Reason: st.Reason,
			Items: st.Items, Files: st.Files, Bytes: st.Bytes, Skipped: st.SkippedCount, Truncated: st.Truncated})
	}
	res.Truncated, res.TruncatedReasons = man.Truncated, man.TruncatedReasons
	res.FinishedAt = man.FinishedAt
	res.ElapsedSeconds = res.FinishedAt.Sub(res.StartedAt).Seconds()
	return res, ctx.Err()
}

// run collects one artifact, turning a spent cap or budget into a truncated
// artifact rather than a failure.
func (c *collection) run(def artifactDef, aw *artifact) {
	defer func() {
		// A parser bug on hostile content must cost one artifact, not the
		// whole bundle.
		if r := recover(); r != nil {
			aw.Fail(fmt.Sprintf("collector failed: %v", r))
		}
	}()
	err := def.collect(c, aw)
	switch {
	case err == nil:
	case errors.Is(err, bundle.ErrCapReached):
		c.w.MarkTruncated("byte cap reached")
	case errors.Is(err, context.DeadlineExceeded) || c.ctx.Err() != nil:
		aw.Truncate(fmt.Sprintf("the time budget of %s was spent", c.p.TimeBudget))
		c.w.MarkTruncated(fmt.Sprintf("time budget of %s spent", c.p.TimeBudget))
	default:
		aw.Fail(err.Error())
	}
}

// collection is the state of one Execute call shared by the collectors.
type collection struct {
	ctx  context.Context
	p    *Params
	w    *bundle.Writer
	emit sdk.Emitter
	now  func() time.Time
	host *pluginv1.HostContext

	accountsLoaded bool
	accounts       []PasswdEntry
	sockets        []Socket
	socketsLoaded  bool
	hashes         map[fileKey]hashResult
}

// identity gathers what the manifest records about the host.
func (c *collection) identity(req *sdk.Request) bundle.HostIdentity {
	id := bundle.HostIdentity{AgentID: req.Task.GetAgentId(), InstanceID: req.Host.GetInstanceId()}
	id.Hostname, _ = os.Hostname()
	if b, _, err := readBounded("/proc/sys/kernel/random/boot_id", 64); err == nil {
		id.BootID = strings.TrimSpace(string(b))
	}
	if b, _, err := readBounded("/etc/machine-id", 64); err == nil {
		id.MachineID = strings.TrimSpace(string(b))
	}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		id.Kernel = unix.ByteSliceToString(uts.Release[:])
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			id.Addresses = append(id.Addresses, a.String())
		}
	}
	return id
}

// redactedCopies are the artifacts whose raw file copies are redacted
// (records always are): text a person or a program wrote, where secrets
// are typed or logged. Executables stay byte-exact for analysis.
var redactedCopies = map[string]bool{"shell_history": true, "persistence": true, "logs": true}

// artifact is one artifact being collected, with the helpers collectors share.
type artifact struct {
	*bundle.ArtifactWriter
	c *collection
	// redactCopies passes the artifact's file copies through the redactor.
	redactCopies bool
}

// stop returns the context's error once the time budget is spent.
func (a *artifact) stop() error { return a.c.ctx.Err() }

// copyFile copies an absolute path into the bundle. A missing file is not
// an error; an unreadable one is recorded and collection goes on. Only
// ErrCapReached and write errors are returned.
func (a *artifact) copyFile(path string, opt bundle.FileOptions) (*bundle.Member, error) { //nolint:unparam // the member is returned for callers that record it
	f, err := openSystemFile(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Skip(path, describeOpenError(path, err))
		}
		return nil, nil
	}
	defer f.Close()
	return a.addOpen(f.Name(), f, opt)
}

// systemTrees are where a symlink among fixed system paths may lead (as
// /etc/os-release → /usr/lib/os-release does); a link into a tree that users
// can write is not followed.
var systemTrees = []string{"/etc/", "/usr/", "/lib/", "/lib64/", "/var/lib/", "/var/log/", "/var/spool/", "/run/", "/var/run/", "/opt/", "/boot/"}

// openSystemFile opens a fixed, root-owned system path. A symlink at the
// path is followed only when it resolves inside systemTrees, and the
// resolved file is then opened without following links; the returned file's
// Name is the resolved path, which is what the bundle records as its source.
func openSystemFile(path string) (*os.File, error) {
	f, err := openRegular(path)
	if !errors.Is(err, errSymlink) {
		return f, err
	}
	real, rerr := filepath.EvalSymlinks(path)
	if rerr != nil {
		return nil, err
	}
	for _, t := range systemTrees {
		if strings.HasPrefix(real, t) {
			return openRegular(real)
		}
	}
	return nil, err
}

func (a *artifact) addOpen(path string, f *os.File, opt bundle.FileOptions) (*bundle.Member, error) {
	if opt.MaxBytes == 0 {
		opt.MaxBytes = a.c.p.MaxFileBytes
	}
	opt.Redact = opt.Redact || a.redactCopies
	m, err := a.AddFile(path, f, opt)
	if err != nil {
		if errors.Is(err, bundle.ErrCapReached) || a.c.w.Err() != nil {
			return nil, err
		}
		a.Skip(path, err.Error())
		return nil, nil
	}
	return m, nil
}

// copyProcFile stores a bounded read of a /proc or /sys file.
func (a *artifact) copyProcFile(path string, limit int64) ([]byte, error) {
	b, more, err := readBounded(path, limit)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.Skip(path, err.Error())
		}
		return nil, nil
	}
	if more {
		a.Skip(path, fmt.Sprintf("longer than %d bytes; the rest was not read", limit))
	}
	_, err = a.AddBytes(path, b, 0o444, time.Time{})
	return b, err
}

// globSorted returns the matches of a pattern, sorted, ignoring bad patterns.
func globSorted(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	slices.Sort(m)
	return m
}
