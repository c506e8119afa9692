package hostisolate

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// UnisolateParams are host-unisolate's parameters.
type UnisolateParams struct {
	// Reason says why the isolation ends; it is logged with the result.
	Reason string `json:"reason,omitempty"`
}

// UnisolateResult is host-unisolate's result.
type UnisolateResult struct {
	// Table is "inet firebreak".
	Table string `json:"table"`
	// Removed is true when this task deleted the table.
	Removed bool `json:"removed"`
	// NotIsolated is true when there was no table to delete.
	NotIsolated bool `json:"not_isolated"`
	// RuleCount is the number of rules the deleted table held.
	RuleCount int `json:"rule_count"`
	// RecordRemoved is true when an isolation record was removed; Record
	// says where it was.
	RecordRemoved bool   `json:"record_removed"`
	Record        string `json:"record,omitempty"`
	// Controller, ControllerPort, Allow and DHCP are what the removed
	// isolation kept open, from its record.
	Controller     []string `json:"controller"`
	ControllerPort uint16   `json:"controller_port,omitempty"`
	Allow          []string `json:"allow"`
	DHCP           bool     `json:"dhcp"`
	// IsolatedSince is when the removed isolation was applied.
	IsolatedSince time.Time `json:"isolated_since,omitzero"`
	// IsolationReason is the removed isolation's recorded reason; Reason
	// is this task's.
	IsolationReason string `json:"isolation_reason,omitempty"`
	Reason          string `json:"reason,omitempty"`
	// Stopped counts what the removed isolation stopped.
	Stopped *PacketCounts `json:"stopped,omitempty"`
	// ElapsedMS is how long the task took, in milliseconds.
	ElapsedMS float64 `json:"elapsed_ms"`
}

// HostState implements sdk.HostStateReporter: a successful host-unisolate
// leaves the host not isolated.
func (r *UnisolateResult) HostState() *pluginv1.HostState {
	if r == nil {
		return nil
	}
	return &pluginv1.HostState{Isolated: proto.Bool(false)}
}

// Unisolate is the host-unisolate action: it deletes table inet firebreak,
// and nothing else, and removes the isolation record.
type Unisolate struct{ cfg config }

// NewUnisolate returns host-unisolate acting on the kernel's nf_tables.
func NewUnisolate(opts ...Option) *Unisolate { return &Unisolate{cfg: newConfig(opts)} }

// Describe implements sdk.Action.
func (a *Unisolate) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:           UnisolateName,
		Version:        Version,
		Domain:         pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description:    "Ends a host isolation: deletes the nftables table inet firebreak, and nothing else, and its record",
		Destructive:    true,
		RollbackAction: IsolateName,
		Roles:          []string{"host"},
		Params: []*pluginv1.ParamSpec{
			{Name: "reason", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "why the isolation ends"},
		},
	}, nil
}

// Execute implements sdk.Action.
func (a *Unisolate) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	start := a.cfg.now()
	var p UnisolateParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	// Without a state directory the table is still removed: restoring the
	// host's network matters more than the record, which cannot exist.
	var store recordStore
	if dir := req.Host.GetStateDir(); dir != "" {
		if !filepath.IsAbs(dir) {
			return nil, sdk.Errorf(codes.FailedPrecondition, "the agent's state directory %q is not an absolute path", dir)
		}
		store = fileStore{dir: dir}
	}
	res, err := a.cfg.unisolate(ctx, emit, store, p)
	if res == nil {
		return nil, err
	}
	res.ElapsedMS = millis(a.cfg.now().Sub(start))
	return res, err
}

func (c config) unisolate(ctx context.Context, emit sdk.Emitter, store recordStore, p UnisolateParams) (*UnisolateResult, error) {
	res := &UnisolateResult{Table: TableDisplay, Reason: p.Reason, Controller: []string{}, Allow: []string{}}
	var rec *Record
	if store != nil {
		unlock, err := store.lock(ctx)
		if err != nil {
			return nil, sdk.Errorf(codes.Aborted, "%v", err)
		}
		defer unlock()
		res.Record = store.location()
		if rec, err = store.load(); err != nil {
			_ = emit.Log("warn", fmt.Sprintf("the isolation record is unreadable and will be removed: %v", err))
		}
	}
	if rec != nil {
		res.Controller, res.ControllerPort, res.Allow, res.DHCP = rec.ControllerAddresses, rec.ControllerPort, rec.Allow, rec.DHCP
		res.IsolatedSince, res.IsolationReason = rec.AppliedAt, rec.Reason
	}

	conn, err := c.dial()
	if err != nil {
		return nil, netfilterError("opening netlink to nf_tables", err)
	}
	defer func() { _ = conn.CloseLasting() }()
	live, err := readLive(conn)
	if err != nil {
		return nil, err
	}
	if live.present {
		counts := live.counts()
		res.Stopped, res.RuleCount = &counts, live.ruleCount()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := deleteTable(conn); err != nil {
			return nil, describeBatchError("deleting table "+TableDisplay, err)
		}
		res.Removed = true
		_ = emit.Log("info", fmt.Sprintf("removed table %s (%d rules; it had reset %d and dropped %d packets)", TableDisplay, res.RuleCount, counts.Reset, counts.Dropped))
	} else {
		res.NotIsolated = true
		if rec != nil {
			_ = emit.Log("warn", "an isolation was recorded but its table was not in place (a reboot before reconcile?); removing the record")
		}
	}

	if store != nil {
		removed, err := store.remove()
		if err != nil {
			// The host is open again, but the record would make reconcile
			// isolate it again when the agent next starts.
			return res, fmt.Errorf("the isolation is removed but its record at %s could not be: remove that file, or the agent will isolate the host again when it next starts: %w", store.location(), err)
		}
		res.RecordRemoved = removed
	}
	return res, nil
}
