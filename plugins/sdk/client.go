package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// ErrPluginExited is returned (wrapped) when the plugin process went away
// during a call. The caller must rebuild the plugin client before the next
// call.
var ErrPluginExited = errors.New("the plugin process exited")

// Client is the agent-side view of an action, whether it runs in a plugin
// process or in memory.
type Client struct {
	c pluginv1.ActionPluginServiceClient
}

// NewClient wraps a gRPC client of the action service.
func NewClient(c pluginv1.ActionPluginServiceClient) *Client { return &Client{c: c} }

// Describe asks the action for its description.
func (c *Client) Describe(ctx context.Context) (*pluginv1.ActionDescription, error) {
	resp, err := c.c.Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return nil, classify(err)
	}
	if err := CheckDescription(resp.GetDescription()); err != nil {
		return nil, err
	}
	return resp.GetDescription(), nil
}

// Execute runs the action and passes every progress, log and artifact
// message to handle in order. It returns the final result. A result with a
// non-empty Error is a failure that still carries the action's output.
func (c *Client) Execute(ctx context.Context, req *pluginv1.ExecuteRequest, handle func(*pluginv1.ExecuteResponse) error) (*pluginv1.Result, error) {
	// Leaving early (a handler error) cancels the call, so the stream and
	// its client span end then and there.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Execute(ctx, req)
	if err != nil {
		return nil, classify(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the plugin ended the stream without a result")
		}
		if err != nil {
			return nil, classify(err)
		}
		if r := msg.GetResult(); r != nil {
			drain(stream)
			return r, nil
		}
		if handle != nil {
			if err := handle(msg); err != nil {
				return nil, err
			}
		}
	}
}

// drain reads the stream to its end after the result, so the call ends
// with the plugin's OK status (and its client span with it) instead of
// being cancelled. The plugin returns right after sending the result; a
// plugin that sends more is cut off when Execute's context is cancelled.
func drain(stream pluginv1.ActionPluginService_ExecuteClient) {
	for i := 0; i < 16; i++ {
		if _, err := stream.Recv(); err != nil {
			return
		}
	}
}

// TraceFilter selects the plugin calls that make spans: Execute only, on
// both sides. Describe and go-plugin's own services (broker, stdio,
// controller) are start-up plumbing that would otherwise make a root trace
// each.
func TraceFilter(info *stats.RPCTagInfo) bool {
	return info.FullMethodName == pluginv1.ActionPluginService_Execute_FullMethodName
}

// classify turns a transport failure into ErrPluginExited, so callers can
// tell a dead plugin from an action error (compare Nomad's grpcutils).
func classify(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch {
	case st.Code() == codes.Unavailable,
		st.Code() == codes.Canceled && strings.Contains(st.Message(), "transport is closing"),
		st.Code() == codes.Internal && strings.Contains(st.Message(), "connection"):
		return fmt.Errorf("%w: %s", ErrPluginExited, st.Message())
	}
	return err
}
