package agent

import (
	"context"
	"encoding/json"
	"path/filepath"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// afterTask updates what the agent reports about its host after actions
// that change it.
func (a *Agent) afterTask(spec *agentv1.TaskSpec, out *pluginv1.Result) {
	if out.GetError() != "" {
		return
	}
	switch spec.GetAction() {
	case hostisolate.IsolateName:
		a.SetIsolated(true)
	case hostisolate.UnisolateName:
		a.SetIsolated(false)
	default:
		return
	}
	a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{
		Isolated: a.Isolated(), RunningTaskIds: a.runningIDs()}}})
}

// reconcileIsolation restores a recorded host isolation at start: nftables
// rules do not survive a reboot, and an attacker may have deleted the table.
// It runs before the agent connects, so the host is contained again even
// when the controller is unreachable.
func (a *Agent) reconcileIsolation(ctx context.Context) {
	if a.cfg.DataDir == "" {
		return
	}
	dir := filepath.Join(a.cfg.DataDir, "state")
	recorded, err := hostisolate.Recorded(dir)
	if err != nil {
		a.cfg.Logger.Error("reading the isolation record", "error", err)
		return
	}
	a.SetIsolated(recorded)
	if !recorded {
		return
	}
	if !a.plugins.Has(hostisolate.IsolateName) {
		a.cfg.Logger.Error("the host is recorded as isolated but the host-isolate plugin is not loaded: the isolation cannot be checked")
		return
	}
	params, _ := json.Marshal(map[string]bool{"reconcile": true})
	out, err := a.plugins.Execute(ctx, hostisolate.IsolateName, &pluginv1.ExecuteRequest{
		Task:       &pluginv1.TaskContext{TaskId: "reconcile-at-start", AgentId: a.id.AgentID},
		ParamsJson: params,
		Host:       &pluginv1.HostContext{StateDir: dir, Hostname: a.facts.GetHostname(), InstanceId: a.facts.GetInstanceId(), OnEc2: a.facts.GetInstanceId() != ""},
	}, nil)
	switch {
	case err != nil:
		a.cfg.Logger.Error("re-applying the recorded isolation failed", "error", err)
	case out.GetError() != "":
		a.cfg.Logger.Error("re-applying the recorded isolation failed", "error", out.GetError())
	default:
		a.cfg.Logger.Warn("the host is isolated (recorded); isolation checked at start", "result", string(out.GetOutputJson()))
	}
}
