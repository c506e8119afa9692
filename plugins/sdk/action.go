package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Action is a response action.
type Action interface {
	// Describe returns the action's name, version, domain and parameter schema.
	Describe(ctx context.Context) (*pluginv1.ActionDescription, error)
	// Execute runs the action once. It reports progress, log lines and
	// artifacts through emit and returns the JSON-serialisable result.
	Execute(ctx context.Context, req *Request, emit Emitter) (any, error)
}

// HostStateReporter is implemented by an action's result when the action
// changes host state that the agent reports to the controller (see
// pluginv1.HostState). The SDK puts the answer in the result's host_state;
// the agent applies it, and records it in its own data directory, only
// when the action succeeded. The agent never checks which action ran: an
// action says what it changed.
type HostStateReporter interface {
	// HostState returns what the action changed, or nil for nothing.
	HostState() *pluginv1.HostState
}

// Request is one task's input to an action.
type Request struct {
	// Task identifies the task, run, case and operator.
	Task *pluginv1.TaskContext
	// Params is the JSON object of parameters, checked against the schema
	// by the controller and with defaults applied.
	Params json.RawMessage
	// Host is set for in-guest actions.
	Host *pluginv1.HostContext
	// AWS is set for service-domain actions run by a worker.
	AWS *pluginv1.AWSCredentials
}

// Decode unmarshals the parameters into v, refusing unknown fields so that a
// misspelt parameter is an error rather than silently ignored.
func (r *Request) Decode(v any) error {
	if len(r.Params) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(codes.InvalidArgument, "decoding parameters: %v", err)
	}
	return nil
}

// Emitter carries what a running action reports before its result.
type Emitter interface {
	// Progress reports how far the action has got; percent is 0..100 or -1.
	Progress(percent int, message string) error
	// Log reports a log line ("debug", "info", "warn", "error"). It must not
	// contain secrets.
	Log(level, message string) error
	// Artifact opens an artifact stream; the bytes written reach the agent in
	// order and Close marks the end. Only one artifact may be open at a time.
	Artifact(name, mediaType string) io.WriteCloser
}

// Errorf returns an error with a gRPC status code, so the agent and the
// operator see both the class of failure and the message.
func Errorf(code codes.Code, format string, args ...any) error {
	return status.Error(code, fmt.Sprintf(format, args...))
}
