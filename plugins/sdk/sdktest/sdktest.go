// Package sdktest runs a Firebreak action in-process over the real go-plugin
// gRPC transport, for the action's own tests.
package sdktest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Start serves the action through plugin.TestPluginGRPCConn and returns the
// agent-side client. Everything is closed when the test ends.
func Start(t testing.TB, a sdk.Action) *sdk.Client {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{sdk.PluginName: &sdk.GRPCPlugin{Impl: a}})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispensing the action: %v", err)
	}
	return raw.(*sdk.Client)
}

// Outcome is everything one Execute call produced.
type Outcome struct {
	// Result is the final result, nil when Err is set.
	Result *pluginv1.Result
	// Err is the call's error.
	Err error
	// Progress, Logs and Artifacts are the streamed messages in order.
	Progress []*pluginv1.Progress
	// Logs are the action's log lines.
	Logs []*pluginv1.LogLine
	// Artifacts maps an artifact name to its reassembled bytes.
	Artifacts map[string][]byte
	// Closed lists artifacts whose end was marked.
	Closed []string
}

// Output decodes the result's JSON output into v, failing the test on error.
func (o *Outcome) Output(t testing.TB, v any) {
	t.Helper()
	if o.Result == nil {
		t.Fatalf("no result: %v", o.Err)
	}
	if err := json.Unmarshal(o.Result.GetOutputJson(), v); err != nil {
		t.Fatalf("decoding the result %s: %v", o.Result.GetOutputJson(), err)
	}
}

// Execute runs the action with params (marshalled to JSON) and collects the
// outcome. req may carry host or AWS context; its params are replaced.
func Execute(ctx context.Context, t testing.TB, c *sdk.Client, req *pluginv1.ExecuteRequest, params any) *Outcome {
	t.Helper()
	if req == nil {
		req = &pluginv1.ExecuteRequest{}
	}
	b, err := json.Marshal(params)
	if err != nil {
		t.Fatalf("encoding params: %v", err)
	}
	req.ParamsJson = b
	o := &Outcome{Artifacts: map[string][]byte{}}
	o.Result, o.Err = c.Execute(ctx, req, func(m *pluginv1.ExecuteResponse) error {
		switch e := m.Event.(type) {
		case *pluginv1.ExecuteResponse_Progress:
			o.Progress = append(o.Progress, e.Progress)
		case *pluginv1.ExecuteResponse_Log:
			o.Logs = append(o.Logs, e.Log)
		case *pluginv1.ExecuteResponse_Artifact:
			o.Artifacts[e.Artifact.GetName()] = append(o.Artifacts[e.Artifact.GetName()], e.Artifact.GetData()...)
			if e.Artifact.GetEof() {
				o.Closed = append(o.Closed, e.Artifact.GetName())
			}
		}
		return nil
	})
	return o
}
