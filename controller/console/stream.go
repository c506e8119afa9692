package console

import (
	"context"
	"fmt"

	"google.golang.org/grpc/metadata"
)

// localStream is a server stream served in process: the service sends
// its messages to send, and sees an ordinary grpc.ServerStreamingServer
// whose context carries the console's operator.
type localStream[T any] struct {
	ctx  context.Context
	send func(*T) error
}

// Send implements grpc.ServerStreamingServer.
func (s *localStream[T]) Send(m *T) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	return s.send(m)
}

func (s *localStream[T]) Context() context.Context     { return s.ctx }
func (s *localStream[T]) SetHeader(metadata.MD) error  { return nil }
func (s *localStream[T]) SendHeader(metadata.MD) error { return nil }
func (s *localStream[T]) SetTrailer(metadata.MD)       {}
func (s *localStream[T]) SendMsg(m any) error {
	if t, ok := m.(*T); ok {
		return s.Send(t)
	}
	return fmt.Errorf("console: unexpected message %T on a stream", m)
}
func (s *localStream[T]) RecvMsg(any) error {
	return fmt.Errorf("console: a server stream receives nothing")
}
