package sdk_test

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// lockResult reports that the host is isolated.
type lockResult struct {
	Done bool `json:"done"`
}

func (lockResult) HostState() *pluginv1.HostState {
	return &pluginv1.HostState{Isolated: proto.Bool(true)}
}

// stateAction returns its configured result and error.
type stateAction struct {
	out any
	err error
}

func (a stateAction) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{Name: "state", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE}, nil
}

func (a stateAction) Execute(context.Context, *sdk.Request, sdk.Emitter) (any, error) {
	return a.out, a.err
}

// TestResultCarriesHostState checks that a result implementing
// HostStateReporter reaches the agent as the result's host_state, beside
// the error of an action that failed part-way, and that other results
// carry none.
func TestResultCarriesHostState(t *testing.T) {
	tests := []struct {
		name      string
		action    stateAction
		wantState bool
		wantError bool
	}{
		{name: "reporter", action: stateAction{out: lockResult{Done: true}}, wantState: true},
		{name: "reporter that failed part-way", action: stateAction{out: lockResult{}, err: errors.New("half done")}, wantState: true, wantError: true},
		{name: "plain result", action: stateAction{out: map[string]bool{"done": true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := sdktest.Execute(context.Background(), t, sdktest.Start(t, tc.action), nil, map[string]any{})
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if got := o.Result.GetHostState().GetIsolated(); got != tc.wantState || (o.Result.GetHostState() != nil) != tc.wantState {
				t.Fatalf("host_state %v, want isolated=%t", o.Result.GetHostState(), tc.wantState)
			}
			if (o.Result.GetError() != "") != tc.wantError {
				t.Fatalf("error %q", o.Result.GetError())
			}
		})
	}
}
