package netns

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// EchoServer is a TCP server in a host's namespace that writes back every
// byte it reads, on every address of the host (IPv4 and IPv6).
type EchoServer struct {
	ln       net.Listener
	port     uint16
	accepted chan net.Conn

	mu    sync.Mutex
	conns []net.Conn
	done  bool
	wg    sync.WaitGroup
}

// ListenEcho starts an echo server on a host's port (0 picks a free one).
// It stops when the lab closes. The listening socket is made in the host's
// namespace, so its connections are the host's.
func (l *Lab) ListenEcho(host string, port uint16) (*EchoServer, error) {
	var ln net.Listener
	err := l.Do(host, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listening on %s port %d: %w", host, port, err)
	}
	s := &EchoServer{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), accepted: make(chan net.Conn, 64)}
	s.wg.Add(1)
	go s.serve()
	l.OnClose(s.Close)
	return s, nil
}

// Port is the port the server listens on.
func (s *EchoServer) Port() uint16 { return s.port }

// Accepted delivers the server's side of each connection as it is
// accepted, for tests that write from the server's side; the server keeps
// echoing on it. Connections beyond 64 not taken are not delivered.
func (s *EchoServer) Accepted() <-chan net.Conn { return s.accepted }

// Close stops the server and closes its connections.
func (s *EchoServer) Close() {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	conns := s.conns
	s.mu.Unlock()
	_ = s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
}

func (s *EchoServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		select {
		case s.accepted <- c:
		default:
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(c, c)
		}()
	}
}

// ListenTCP listens on a host's port (0 picks a free one) on every address
// of the host, for callers that accept and drive connections themselves.
// The listener is closed when the lab closes; accepted connections are the
// caller's to close.
func (l *Lab) ListenTCP(host string, port uint16) (*net.TCPListener, error) {
	var ln net.Listener
	err := l.Do(host, func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: listening on %s port %d: %w", host, port, err)
	}
	l.OnClose(func() { _ = ln.Close() })
	return ln.(*net.TCPListener), nil
}

// DialTCP connects from a host's namespace to addr, giving up after
// timeout. The connection is the host's and may be used from any goroutine.
func (l *Lab) DialTCP(host string, addr netip.AddrPort, timeout time.Duration) (*net.TCPConn, error) {
	var conn net.Conn
	err := l.Do(host, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr.String(), timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// RoundTrip writes msg on conn and reads it back from an echo server,
// within timeout. It returns the write or read error (a reset is
// syscall.ECONNRESET), a timeout, or a mismatch.
func RoundTrip(conn net.Conn, msg []byte, timeout time.Duration) error {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %q, want %q", got, msg)
	}
	return nil
}
