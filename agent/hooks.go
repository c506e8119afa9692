package agent

import (
	"context"
	"errors"

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
	case "host-isolate":
		a.SetIsolated(true)
	case "host-unisolate":
		a.SetIsolated(false)
	default:
		return
	}
	a.report(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{Heartbeat: &agentv1.Heartbeat{
		Isolated: a.Isolated(), RunningTaskIds: a.runningIDs()}}})
}

// onArtifact receives artifact chunks from a plugin.
func (a *Agent) onArtifact(context.Context, *agentv1.TaskSpec, *pluginv1.ArtifactChunk, *agentv1.TaskResult) error {
	return errors.New("this agent build cannot upload evidence")
}

func (a *Agent) closeArtifacts(context.Context, *agentv1.TaskSpec, *agentv1.TaskResult) error {
	return nil
}
