package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/firebreak-ir/firebreak/internal/actionschema"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// hostStateFile, in the data directory, is the agent's own record of the
// host state it reports (whether the host is isolated).
const hostStateFile = "host-state.json"

// hostStateVersion is the record format the agent writes and reads.
const hostStateVersion = 1

// reconcileTaskID is the task id of the actions run at start.
const reconcileTaskID = "reconcile-at-start"

// hostStateRecord is the agent's record of the host state it reports. It
// is the agent's own: an action's result changes it only through the
// result's host state, and only when the action succeeded.
type hostStateRecord struct {
	// Version is the record format, 1.
	Version int `json:"version"`
	// Isolated says whether the host's network is isolated by Firebreak.
	Isolated bool `json:"isolated"`
	// UpdatedAt is when the record last changed.
	UpdatedAt time.Time `json:"updated_at"`
	// Action and TaskID name the result that last changed it.
	Action string `json:"action,omitempty"`
	TaskID string `json:"task_id,omitempty"`
}

// afterTask applies the host state a successful action says it changed,
// and reports it to the controller at once. The agent never checks which
// action ran: the action's result says what it changed.
func (a *Agent) afterTask(spec *agentv1.TaskSpec, out *pluginv1.Result) {
	// An action that failed part-way leaves the record as it was.
	if out.GetError() != "" || out.GetHostState() == nil {
		return
	}
	a.applyHostState(spec.GetAction(), spec.GetTaskId(), out.GetHostState())
	a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{
		Isolated: a.Isolated(), RunningTaskIds: a.runningIDs()}}})
}

// applyHostState sets what the agent reports and, when that changes,
// writes its record.
func (a *Agent) applyHostState(action, taskID string, hs *pluginv1.HostState) {
	if hs.Isolated == nil {
		return
	}
	a.hostState.Lock()
	defer a.hostState.Unlock()
	a.mu.Lock()
	changed := a.isolated != hs.GetIsolated()
	a.isolated = hs.GetIsolated()
	a.mu.Unlock()
	if !changed || a.cfg.DataDir == "" {
		return
	}
	rec := hostStateRecord{Version: hostStateVersion, Isolated: hs.GetIsolated(), UpdatedAt: a.cfg.Clock().UTC(), Action: action, TaskID: taskID}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = pki.WriteFileAtomic(a.path(hostStateFile), append(b, '\n'), 0o600)
	}
	if err != nil {
		a.cfg.Logger.Error("recording the host state failed; it is reported, but after a restart the agent starts from its previous record",
			"action", action, "isolated", hs.GetIsolated(), "error", err)
	}
}

// readHostState reads the agent's host-state record; no record is the
// zero state (not isolated).
func (a *Agent) readHostState() (hostStateRecord, error) {
	var rec hostStateRecord
	b, err := os.ReadFile(a.path(hostStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("reading the host-state record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return hostStateRecord{}, fmt.Errorf("the host-state record %s is not valid JSON: %w", a.path(hostStateFile), err)
	}
	if rec.Version != hostStateVersion {
		return hostStateRecord{}, fmt.Errorf("the host-state record %s has format version %d; this agent reads version %d",
			a.path(hostStateFile), rec.Version, hostStateVersion)
	}
	return rec, nil
}

// reconcileAtStart restores recorded host state at start: the agent reports
// the state its own record holds, then runs every loaded action whose
// description asks to be reconciled at start and applies what each says.
// An isolation's nftables rules, for one, do not survive a reboot, and an
// attacker may have deleted the table. It runs before the agent connects,
// so the host is contained again even when the controller is unreachable.
//
// Security-critical: only actions the agent itself loaded run here (plugins
// checksummed from its plugin directory, or built in), with the parameters
// their own description gives, checked against their schema; nothing from
// the network reaches them. A reconcile that fails, or says nothing, leaves
// the agent's record as it was: the host stays reported as isolated rather
// than silently reported open.
func (a *Agent) reconcileAtStart(ctx context.Context) {
	if a.cfg.DataDir == "" {
		return
	}
	rec, err := a.readHostState()
	if err != nil {
		a.cfg.Logger.Error("reading the host-state record", "error", err)
	}
	a.SetIsolated(rec.Isolated)
	dir := filepath.Join(a.cfg.DataDir, "state")
	confirmed, reconcilers := false, 0
	// The plugins started here are not kept for their idle timeout: an
	// agent at rest runs no plugin process.
	defer a.plugins.StopIdle()
	// The reconciliation is one trace of the agent's own, rooted here: the
	// plugins' Execute spans are its children, never stray roots.
	var span trace.Span
	defer func() {
		if span != nil {
			span.SetAttributes(attribute.Bool("firebreak.host.isolated", a.Isolated()), attribute.Bool("firebreak.host.isolation_confirmed", confirmed))
			span.End()
		}
	}()
	for _, p := range a.plugins.Plugins() {
		d := p.GetDescription()
		if d.GetReconcileAtStart() == nil {
			continue
		}
		if span == nil {
			ctx, span = telemetry.Tracer().Start(ctx, "agent.reconcile_at_start", trace.WithAttributes(telemetry.AttrAgentID.String(a.id.AgentID)))
		}
		reconcilers++
		params, err := actionschema.ReconcileParams(d)
		if err != nil {
			a.cfg.Logger.Error("an action asks to be reconciled at start with parameters its schema refuses; not run", "action", d.GetName(), "error", err)
			continue
		}
		out, err := a.plugins.Execute(ctx, d.GetName(), &pluginv1.ExecuteRequest{
			Task:       &pluginv1.TaskContext{TaskId: reconcileTaskID, AgentId: a.id.AgentID},
			ParamsJson: params,
			Host:       &pluginv1.HostContext{StateDir: dir, Hostname: a.facts.GetHostname(), InstanceId: a.facts.GetInstanceId(), OnEc2: a.facts.GetInstanceId() != ""},
		}, nil)
		switch {
		case err != nil:
			a.cfg.Logger.Error("reconciling host state at start failed", "action", d.GetName(), "error", err)
		case out.GetError() != "":
			a.cfg.Logger.Error("reconciling host state at start failed", "action", d.GetName(), "error", out.GetError())
		case out.GetHostState() != nil:
			a.applyHostState(d.GetName(), reconcileTaskID, out.GetHostState())
			if out.GetHostState().GetIsolated() {
				confirmed = true
				a.cfg.Logger.Warn("the host is isolated (recorded); isolation checked at start", "action", d.GetName(), "result", string(out.GetOutputJson()))
			}
		}
	}
	if a.Isolated() && !confirmed {
		if reconcilers == 0 {
			a.cfg.Logger.Error("the host is recorded as isolated but no loaded action reconciles host state at start: the isolation cannot be checked")
		} else {
			a.cfg.Logger.Error("the host is recorded as isolated but no action confirmed the isolation at start: check the host")
		}
	}
}
