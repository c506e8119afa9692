// Package noop is the noop action. It does nothing on the host and answers at
// once, which makes it the probe for dispatch latency (`firebreak bench
// fleet --action noop`) and a cheap reachability check of a fleet. Its
// delay and fail parameters let a drill rehearse slow or failing targets
// (deadlines, max-errors) without touching anything.
package noop

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

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
		Params: []*pluginv1.ParamSpec{
			{Name: "message", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Description: "text echoed in the result"},
			{Name: "delay", Type: pluginv1.ParamType_PARAM_TYPE_DURATION, Description: "wait this long before answering (rehearses slow targets)"},
			{Name: "fail", Type: pluginv1.ParamType_PARAM_TYPE_BOOL, Description: "answer with an error (rehearses failing targets)"},
		},
	}, nil
}

// Execute implements sdk.Action.
func (Action) Execute(ctx context.Context, req *sdk.Request, _ sdk.Emitter) (any, error) {
	var p struct {
		Message string `json:"message"`
		Delay   string `json:"delay"`
		Fail    bool   `json:"fail"`
	}
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	if p.Delay != "" {
		d, err := time.ParseDuration(p.Delay)
		if err != nil {
			return nil, sdk.Errorf(codes.InvalidArgument, "delay %q: %v", p.Delay, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	if p.Fail {
		return nil, errors.New("noop was asked to fail (fail=true)")
	}
	return &Result{OK: true, Message: p.Message, At: time.Now().UTC()}, ctx.Err()
}
