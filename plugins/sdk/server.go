package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// ChunkSize is the largest artifact chunk sent in one message.
const ChunkSize = 256 << 10

// server is the plugin-side gRPC adapter around an Action.
type server struct {
	pluginv1.UnimplementedActionPluginServiceServer
	action Action
}

func (s *server) Describe(ctx context.Context, _ *pluginv1.DescribeRequest) (*pluginv1.DescribeResponse, error) {
	d, err := s.action.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginv1.DescribeResponse{Description: d}, nil
}

func (s *server) Execute(req *pluginv1.ExecuteRequest, stream pluginv1.ActionPluginService_ExecuteServer) (err error) {
	em := &streamEmitter{send: stream.Send}
	r := &Request{Task: req.GetTask(), Params: req.GetParamsJson(), Host: req.GetHost(), AWS: req.GetAws()}
	defer func() {
		// A panicking action must not take the plugin process down with a
		// half-written stream; the agent gets a clear error instead.
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "action panicked: %v\n%s", p, debug.Stack())
		}
	}()
	out, execErr := s.action.Execute(stream.Context(), r, em)
	if cerr := em.closeOpenArtifact(); cerr != nil && execErr == nil {
		execErr = cerr
	}
	res := &pluginv1.Result{}
	if out != nil {
		b, merr := json.Marshal(out)
		if merr != nil {
			return status.Errorf(codes.Internal, "encoding the action's result: %v", merr)
		}
		res.OutputJson = b
		if hs, ok := out.(HostStateReporter); ok {
			res.HostState = hs.HostState()
		}
	}
	if execErr != nil {
		if out == nil {
			return toStatus(execErr)
		}
		// The action failed part-way and says what it did: report both.
		res.Error = execErr.Error()
	}
	return em.sendLocked(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Result{Result: res}})
}

func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "the task's deadline passed")
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "the task was cancelled")
	}
	return status.Error(codes.Unknown, err.Error())
}

// streamEmitter serialises sends on one Execute stream.
type streamEmitter struct {
	mu   sync.Mutex
	send func(*pluginv1.ExecuteResponse) error
	open *artifactWriter
}

func (e *streamEmitter) sendLocked(m *pluginv1.ExecuteResponse) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.send(m)
}

func (e *streamEmitter) Progress(percent int, message string) error {
	return e.sendLocked(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Progress{
		Progress: &pluginv1.Progress{Percent: int32(percent), Message: message}}})
}

func (e *streamEmitter) Log(level, message string) error {
	return e.sendLocked(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Log{
		Log: &pluginv1.LogLine{Level: level, Message: message}}})
}

func (e *streamEmitter) Artifact(name, mediaType string) io.WriteCloser {
	w := &artifactWriter{em: e, name: name, mediaType: mediaType}
	e.mu.Lock()
	e.open = w
	e.mu.Unlock()
	return w
}

func (e *streamEmitter) closeOpenArtifact() error {
	e.mu.Lock()
	w := e.open
	e.mu.Unlock()
	if w == nil || w.closed {
		return nil
	}
	return w.Close()
}

// artifactWriter turns writes into ordered artifact chunks.
type artifactWriter struct {
	em        *streamEmitter
	name      string
	mediaType string
	closed    bool
}

func (w *artifactWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, fmt.Errorf("artifact %q: write after close", w.name)
	}
	n := 0
	for len(p) > 0 {
		c := p
		if len(c) > ChunkSize {
			c = c[:ChunkSize]
		}
		// The stream marshals the message before Send returns, so c may be
		// reused by the caller afterwards.
		if err := w.em.sendLocked(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Artifact{
			Artifact: &pluginv1.ArtifactChunk{Name: w.name, MediaType: w.mediaType, Data: c}}}); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

func (w *artifactWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	return w.em.sendLocked(&pluginv1.ExecuteResponse{Event: &pluginv1.ExecuteResponse_Artifact{
		Artifact: &pluginv1.ArtifactChunk{Name: w.name, MediaType: w.mediaType, Eof: true}}})
}
