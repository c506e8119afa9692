// Package rpcbuf is the gRPC buffer pool for connections that carry bulk
// data: evidence uploads to the controller and artifact streams from
// plugins to the agent.
//
// gRPC's default pool clears every buffer it hands out, so each byte
// received is written twice: once by the clear and once by the read that
// fills the buffer. On the evidence path that clear cost as much CPU as
// TLS decryption. gRPC fills the buffers it gets from a pool before
// reading them (the contract of mem.BufferPool), so this pool hands them
// out as they are.
//
// gRPC's protobuf codec takes its buffers from the process's default pool,
// not from a connection's, so importing this package makes Shared the
// default pool of the whole process.
package rpcbuf

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

// minShift and maxShift bound the pooled sizes: 256 B to 4 MiB. Larger
// buffers are allocated and left to the garbage collector.
const (
	minShift = 8
	maxShift = 22
)

// Pool is a mem.BufferPool with one tier per power of two that does not
// clear what it hands out. The zero value is ready to use.
type Pool struct {
	tiers [maxShift - minShift + 1]sync.Pool
}

var _ mem.BufferPool = (*Pool)(nil)

// Shared is the pool the controller, the agent and plugins use.
var Shared = new(Pool)

func init() { experimental.SetDefaultBufferPool(Shared) }

// tier returns the index of the smallest tier holding size bytes, or -1
// when size is beyond the largest.
func tier(size int) int {
	if size <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(size - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}

// Get returns a buffer of length size. Its contents are whatever an
// earlier user left: the caller writes before it reads.
func (p *Pool) Get(size int) *[]byte {
	t := tier(size)
	if t < 0 {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<(t+minShift))
	return &b
}

// Put returns a buffer to the tier its capacity fills exactly; any other
// buffer is left to the garbage collector.
func (p *Pool) Put(b *[]byte) {
	c := cap(*b)
	t := tier(c)
	if t < 0 || c != 1<<(t+minShift) {
		return
	}
	p.tiers[t].Put(b)
}
