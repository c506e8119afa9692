// Package noop is the noop action. It does nothing on the host and answers at
// once, which makes it the probe for dispatch latency (`firebreak bench
// fleet --action noop`) and a cheap reachability check of a fleet.
package noop

import (
	"context"
	"time"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the action's version.
const Version = "1.0.0"

// Action is the noop action.
type Action struct{}

// Result echoes the message and says when the action ran.
type Result struct {
	OK      bool      `json:"ok"`
	Message string    `json:"message,omitempty"`
	At      time.Time `json:"at"`
}

// Describe implements sdk.Action.
func (Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:        "noop",
		Version:     Version,
		Domain:      pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "Does nothing and answers at once: a reachability and latency probe",
		Roles:       []string{"host", "worker"},
		Params: []*pluginv1.ParamSpec{{
			Name: "message", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "text echoed in the result",
		}},
	}, nil
}

// Execute implements sdk.Action.
func (Action) Execute(ctx context.Context, req *sdk.Request, _ sdk.Emitter) (any, error) {
	var p struct {
		Message string `json:"message"`
	}
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	return &Result{OK: true, Message: p.Message, At: time.Now().UTC()}, ctx.Err()
}
