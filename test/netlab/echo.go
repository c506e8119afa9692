package netlab

import (
	"net"

	"github.com/firebreak-ir/firebreak/internal/netns"
)

// EchoServer is a TCP server in a host's namespace that writes back every
// byte it reads.
type EchoServer = netns.EchoServer

// RoundTrip writes msg on conn and reads it back from an echo server,
// within timeout. It returns the write or read error (a reset is
// syscall.ECONNRESET), a timeout, or a mismatch.
var RoundTrip = netns.RoundTrip

// ListenEcho starts an echo server on a host's port (0 picks a free one),
// stopped when the test ends. It fails the test on error.
func (l *Lab) ListenEcho(host string, port uint16) *EchoServer {
	l.t.Helper()
	s, err := l.Lab.ListenEcho(host, port)
	if err != nil {
		l.t.Fatal(err)
	}
	return s
}

// ListenTCP listens on a host's port (0 picks a free one), closed when the
// test ends. It fails the test on error.
func (l *Lab) ListenTCP(host string, port uint16) *net.TCPListener {
	l.t.Helper()
	ln, err := l.Lab.ListenTCP(host, port)
	if err != nil {
		l.t.Fatal(err)
	}
	return ln
}
