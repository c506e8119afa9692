package hostisolate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the version of host-isolate, host-unisolate and
// host-isolate-sim.
const Version = "1.0.0"

// The actions' names.
const (
	IsolateName    = "host-isolate"
	UnisolateName  = "host-unisolate"
	SimulatedName  = "host-isolate-sim"
	isolateSummary = "Isolates the host in its own nftables table (inet firebreak): drops everything but loopback, the controller's channel, " +
		"the allowed networks and optionally DHCP, and cuts existing TCP sessions with resets"
)

// IsolateParams are host-isolate's parameters.
type IsolateParams struct {
	// Allow lists networks the host may still talk to, both ways:
	// CIDR[:PORT[/tcp|/udp]], bare addresses allowed, IPv6 with a port in
	// brackets.
	Allow []string `json:"allow,omitempty"`
	// AllowDHCP keeps DHCP lease renewal open; when absent, it is true on
	// EC2 and false elsewhere.
	AllowDHCP *bool `json:"allow_dhcp,omitempty"`
	// Reason says why the host is isolated; it is recorded.
	Reason string `json:"reason,omitempty"`
	// Reconcile re-applies the recorded isolation if its table is missing,
	// and does nothing at all when no isolation is recorded. The agent
	// calls it at start. It takes no other parameter.
	Reconcile bool `json:"reconcile,omitempty"`
}

// IsolateResult is host-isolate's result.
type IsolateResult struct {
	// Table is "inet firebreak".
	Table string `json:"table"`
	// Applied is true when this task changed the ruleset.
	Applied bool `json:"applied"`
	// AlreadyIsolated is true when the same isolation was already in place
	// and nothing was changed.
	AlreadyIsolated bool `json:"already_isolated"`
	// Replaced is true when a different firebreak isolation was swapped for
	// this one.
	Replaced bool `json:"replaced"`
	// Reconcile echoes the parameter; Reapplied is true when reconcile
	// restored the recorded isolation.
	Reconcile bool `json:"reconcile,omitempty"`
	Reapplied bool `json:"reapplied"`
	// Recorded is true when an isolation is recorded after the task.
	Recorded bool `json:"recorded"`
	// Record is where the record lives.
	Record string `json:"record,omitempty"`
	// RuleCount is the number of rules in table inet firebreak.
	RuleCount int `json:"rule_count"`
	// RuleDigest identifies the ruleset (Ruleset.Digest).
	RuleDigest string `json:"rule_digest,omitempty"`
	// Controller lists the controller addresses kept reachable on
	// ControllerPort.
	Controller     []string `json:"controller"`
	ControllerPort uint16   `json:"controller_port,omitempty"`
	// Allow lists the allowed networks in canonical form.
	Allow []string `json:"allow"`
	// DHCP and NeighbourDiscovery say what else stays open.
	DHCP               bool `json:"dhcp"`
	NeighbourDiscovery bool `json:"neighbour_discovery"`
	// Reason is the recorded reason.
	Reason string `json:"reason,omitempty"`
	// AppliedAt is when the isolation in place was applied.
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Stopped counts what the isolation in place has stopped so far, when
	// it was already in place.
	Stopped *PacketCounts `json:"stopped,omitempty"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
	// Simulated is true for host-isolate-sim.
	Simulated bool `json:"simulated,omitempty"`
}

// HostState implements sdk.HostStateReporter: a successful host-isolate
// leaves the host isolated, and a reconcile that found an isolation
// recorded confirms it (in place already, or re-applied). A reconcile with
// nothing recorded says nothing, so the agent's own record stands.
// host-isolate-sim changes no real host and says nothing.
func (r *IsolateResult) HostState() *pluginv1.HostState {
	if r == nil || r.Simulated || (r.Reconcile && !r.Recorded) {
		return nil
	}
	return &pluginv1.HostState{Isolated: proto.Bool(true)}
}

// Option configures the actions.
type Option func(*config)

type config struct {
	dial Dialer
	now  func() time.Time
}

// WithDialer makes the actions reach nf_tables through d instead of the
// kernel of the plugin's own network namespace.
func WithDialer(d Dialer) Option { return func(c *config) { c.dial = d } }

// WithClock sets the clock used for timestamps and elapsed times.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

func newConfig(opts []Option) config {
	c := config{dial: KernelDialer(0), now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Isolate is the host-isolate action.
type Isolate struct{ cfg config }

// NewIsolate returns host-isolate acting on the kernel's nf_tables.
func NewIsolate(opts ...Option) *Isolate { return &Isolate{cfg: newConfig(opts)} }

// Describe implements sdk.Action.
func (a *Isolate) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	d := isolateDescription(IsolateName, isolateSummary, true, UnisolateName)
	// nftables rules do not survive a reboot, and an attacker may delete
	// the table: every agent that loads host-isolate runs it with
	// reconcile=true at start, before it connects, so the host is contained
	// again even when the controller is unreachable.
	d.ReconcileAtStart = &pluginv1.ReconcileAtStart{ParamsJson: `{"reconcile":true}`}
	return d, nil
}

func isolateDescription(name, summary string, destructive bool, rollback string) *pluginv1.ActionDescription {
	return &pluginv1.ActionDescription{
		Name:           name,
		Version:        Version,
		Domain:         pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description:    summary,
		Destructive:    destructive,
		RollbackAction: rollback,
		Roles:          []string{"host"},
		Params: []*pluginv1.ParamSpec{
			{Name: "allow", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]",
				Description: "networks the host may still reach, both ways: CIDR[:PORT[/tcp|/udp]], e.g. 10.0.0.0/8, 10.1.2.3:443/tcp, [2001:db8::/32]:53"},
			{Name: "allow_dhcp", Type: pluginv1.ParamType_PARAM_TYPE_BOOL,
				Description: "keep DHCP and DHCPv6 lease renewal open (default: true on EC2, false elsewhere)"},
			{Name: "reason", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
				Description: "why the host is isolated; recorded with the isolation"},
			{Name: "reconcile", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, DefaultJson: "false",
				Description: "re-apply the recorded isolation if its table is missing (the agent calls this at start); does nothing when no isolation is recorded"},
		},
	}
}

// Execute implements sdk.Action.
func (a *Isolate) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p IsolateParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	var store recordStore
	if dir := req.Host.GetStateDir(); dir != "" {
		if !filepath.IsAbs(dir) {
			return nil, sdk.Errorf(codes.FailedPrecondition, "refusing to isolate: the agent's state directory %q is not an absolute path", dir)
		}
		store = fileStore{dir: dir}
	}
	start := a.cfg.now()
	res, err := a.cfg.run(ctx, req, emit, store, p)
	if res == nil {
		return nil, err
	}
	res.ElapsedMS = millis(a.cfg.now().Sub(start))
	return res, err
}

// millis is a duration in milliseconds with microsecond precision.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// run is host-isolate (and host-isolate-sim) against a dialer and a record
// store.
func (c config) run(ctx context.Context, req *sdk.Request, emit sdk.Emitter, store recordStore, p IsolateParams) (*IsolateResult, error) {
	if p.Reconcile {
		return c.reconcile(ctx, req, emit, store, p)
	}
	spec, err := specFromRequest(req.Host, p)
	if err != nil {
		return nil, err
	}
	if store == nil {
		// Security-critical for the exact rollback: an isolation that is not
		// recorded would silently vanish at the next reboot.
		return nil, sdk.Errorf(codes.FailedPrecondition, "refusing to isolate: the agent gave no state directory, so the isolation could not be recorded or restored after a reboot")
	}
	rs, err := BuildRuleset(spec)
	if err != nil {
		return nil, sdk.Errorf(codes.Internal, "building the ruleset: %v", err)
	}

	unlock, err := store.lock(ctx)
	if err != nil {
		return nil, sdk.Errorf(codes.Aborted, "%v", err)
	}
	defer unlock()
	conn, err := c.dial()
	if err != nil {
		return nil, netfilterError("opening netlink to nf_tables", err)
	}
	defer func() { _ = conn.CloseLasting() }()
	live, err := readLive(conn)
	if err != nil {
		return nil, err
	}
	rec, recErr := store.load()
	if recErr != nil {
		_ = emit.Log("warn", fmt.Sprintf("ignoring the unreadable isolation record, which this task replaces: %v", recErr))
		rec = nil
	}

	res := newIsolateResult(spec, rs, p.Reason)
	res.Record = store.location()
	if live.matches(rs) {
		res.AlreadyIsolated = true
		counts := live.counts()
		res.Stopped = &counts
		if rec != nil && rec.RuleDigest == rs.Digest {
			res.Recorded, res.AppliedAt, res.Reason = true, rec.AppliedAt, rec.Reason
			_ = emit.Log("info", "the same isolation is already in place; nothing changed")
			return res, nil
		}
		// The table is right but its record is missing or stale (say the
		// state directory was restored from a backup): record what is in
		// force, so that the agent reports it and reconcile restores it.
		res.AppliedAt = c.now().UTC()
		if err := store.save(newRecord(spec, rs, p, req.Task, res.AppliedAt)); err != nil {
			return res, fmt.Errorf("the isolation is in place but could not be recorded at %s, so it would not be restored after a reboot: %w", store.location(), err)
		}
		res.Recorded = true
		_ = emit.Log("warn", "the same isolation was already in place but not recorded; recorded it")
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := rs.Apply(conn, live.present); err != nil {
		return nil, describeBatchError("applying the isolation ruleset", err)
	}
	res.Applied, res.Replaced = true, live.present
	res.AppliedAt = c.now().UTC()
	_ = emit.Log("info", fmt.Sprintf("isolated: table %s with %d rules; kept controller %s port %d, allow %s, dhcp %t",
		TableDisplay, len(rs.Rules), strings.Join(res.Controller, ","), spec.ControllerPort, listOrNone(res.Allow), spec.DHCP))
	if err := store.save(newRecord(spec, rs, p, req.Task, res.AppliedAt)); err != nil {
		return res, fmt.Errorf("the isolation is in place but could not be recorded at %s, so it would not be restored after a reboot: %w", store.location(), err)
	}
	res.Recorded = true
	return res, nil
}

// reconcile restores the recorded isolation when its table is missing or
// differs. With nothing recorded it does nothing at all: no netlink socket
// is opened and nothing is written.
func (c config) reconcile(ctx context.Context, req *sdk.Request, emit sdk.Emitter, store recordStore, p IsolateParams) (*IsolateResult, error) {
	if len(p.Allow) > 0 || p.AllowDHCP != nil || p.Reason != "" {
		return nil, sdk.Errorf(codes.InvalidArgument, "reconcile re-applies the recorded isolation and takes no other parameter; drop allow, allow_dhcp and reason")
	}
	res := &IsolateResult{Table: TableDisplay, Reconcile: true, Controller: []string{}, Allow: []string{}}
	if store == nil {
		return res, nil
	}
	res.Record = store.location()
	if rec, err := store.load(); err != nil {
		return nil, sdk.Errorf(codes.FailedPrecondition, "%v", err)
	} else if rec == nil {
		return res, nil
	}

	unlock, err := store.lock(ctx)
	if err != nil {
		return nil, sdk.Errorf(codes.Aborted, "%v", err)
	}
	defer unlock()
	rec, err := store.load() // again, under the lock: an unisolate may have just finished
	if err != nil {
		return nil, sdk.Errorf(codes.FailedPrecondition, "%v", err)
	}
	if rec == nil {
		return res, nil
	}
	spec, err := rec.Spec()
	if err != nil {
		return nil, sdk.Errorf(codes.FailedPrecondition, "%v: run host-unisolate to clear it, or host-isolate to replace it", err)
	}
	rs, err := BuildRuleset(spec)
	if err != nil {
		return nil, sdk.Errorf(codes.Internal, "building the ruleset: %v", err)
	}
	res = newIsolateResult(spec, rs, rec.Reason)
	res.Reconcile, res.Record, res.Recorded, res.AppliedAt = true, store.location(), true, rec.AppliedAt
	warnControllerDrift(emit, req.Host, spec)

	conn, err := c.dial()
	if err != nil {
		return nil, netfilterError("opening netlink to nf_tables", err)
	}
	defer func() { _ = conn.CloseLasting() }()
	live, err := readLive(conn)
	if err != nil {
		return nil, err
	}
	if live.matches(rs) {
		res.AlreadyIsolated = true
		counts := live.counts()
		res.Stopped = &counts
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := rs.Apply(conn, live.present); err != nil {
		return nil, describeBatchError("re-applying the recorded isolation", err)
	}
	res.Applied, res.Reapplied, res.Replaced = true, true, live.present
	how := "its table was missing"
	if live.present {
		how = "its table had been changed"
	}
	_ = emit.Log("warn", fmt.Sprintf("re-applied the recorded isolation (%s): table %s with %d rules", how, TableDisplay, len(rs.Rules)))
	now := c.now().UTC()
	rec.ReappliedAt, rec.RuleDigest, rec.RuleCount = &now, rs.Digest, len(rs.Rules)
	if err := store.save(rec); err != nil {
		return res, fmt.Errorf("the isolation was re-applied but its record at %s could not be updated: %w", store.location(), err)
	}
	return res, nil
}

// warnControllerDrift tells the operator when the agent now dials a
// controller address that the recorded isolation does not keep open.
func warnControllerDrift(emit sdk.Emitter, host *pluginv1.HostContext, spec Spec) {
	var missing []string
	for _, s := range host.GetControllerAddresses() {
		a, err := netip.ParseAddr(s)
		if err == nil && !slices.Contains(spec.Controllers, a.Unmap()) {
			missing = append(missing, s)
		}
	}
	if host.GetControllerPort() != 0 && host.GetControllerPort() != uint32(spec.ControllerPort) {
		missing = append(missing, fmt.Sprintf("port %d", host.GetControllerPort()))
	}
	if len(missing) > 0 {
		_ = emit.Log("warn", fmt.Sprintf("the agent now reaches the controller at %s, which the recorded isolation does not keep open; run host-isolate again to update it",
			strings.Join(missing, ", ")))
	}
}

// specFromRequest builds the spec from the host context and parameters,
// refusing before anything is touched.
func specFromRequest(host *pluginv1.HostContext, p IsolateParams) (Spec, error) {
	var spec Spec
	if len(host.GetControllerAddresses()) == 0 || host.GetControllerPort() == 0 {
		return Spec{}, sdk.Errorf(codes.FailedPrecondition, "%v", ErrControllerUnknown)
	}
	if host.GetControllerPort() > 65535 {
		return Spec{}, sdk.Errorf(codes.FailedPrecondition, "%v (the agent reported port %d)", ErrControllerUnknown, host.GetControllerPort())
	}
	spec.ControllerPort = uint16(host.GetControllerPort())
	for _, s := range host.GetControllerAddresses() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Spec{}, sdk.Errorf(codes.FailedPrecondition, "%v (the agent reported %q, which is not an IP address)", ErrControllerUnknown, s)
		}
		if a.Zone() != "" {
			return Spec{}, sdk.Errorf(codes.FailedPrecondition, "refusing to isolate: the controller address %s has an IPv6 zone, which nftables rules cannot match, so isolation would cut the responder's channel", s)
		}
		spec.Controllers = append(spec.Controllers, a)
	}
	var bad []string
	for _, s := range p.Allow {
		a, err := ParseAllow(s)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		spec.Allow = append(spec.Allow, a)
	}
	if len(bad) > 0 {
		return Spec{}, sdk.Errorf(codes.InvalidArgument, "%s", strings.Join(bad, "; "))
	}
	spec.DHCP = host.GetOnEc2()
	if p.AllowDHCP != nil {
		spec.DHCP = *p.AllowDHCP
	}
	if err := spec.CheckAndSetDefaults(); err != nil {
		code := codes.InvalidArgument
		if errors.Is(err, ErrControllerUnknown) {
			code = codes.FailedPrecondition
		}
		return Spec{}, sdk.Errorf(code, "%v", err)
	}
	return spec, nil
}

func newIsolateResult(spec Spec, rs *Ruleset, reason string) *IsolateResult {
	return &IsolateResult{
		Table:              TableDisplay,
		RuleCount:          len(rs.Rules),
		RuleDigest:         rs.Digest,
		Controller:         spec.ControllerStrings(),
		ControllerPort:     spec.ControllerPort,
		Allow:              spec.AllowStrings(),
		DHCP:               spec.DHCP,
		NeighbourDiscovery: spec.NeighbourDiscovery(),
		Reason:             reason,
	}
}

func newRecord(spec Spec, rs *Ruleset, p IsolateParams, task *pluginv1.TaskContext, at time.Time) *Record {
	r := &Record{
		Version:             recordVersion,
		Table:               TableDisplay,
		Params:              p,
		ControllerAddresses: spec.ControllerStrings(),
		ControllerPort:      spec.ControllerPort,
		Allow:               spec.AllowStrings(),
		DHCP:                spec.DHCP,
		RuleDigest:          rs.Digest,
		RuleCount:           len(rs.Rules),
		AppliedAt:           at,
		Reason:              p.Reason,
	}
	if task != nil {
		r.Task = &TaskRef{TaskID: task.GetTaskId(), RunID: task.GetRunId(), CaseID: task.GetCaseId(),
			Operator: task.GetOperator(), AgentID: task.GetAgentId()}
	}
	return r
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ",")
}
