package rpcbuf

import (
	"testing"

	"google.golang.org/grpc/mem"
)

func TestPoolSizes(t *testing.T) {
	tests := []struct {
		size, wantCap int
	}{
		{0, 256},
		{1, 256},
		{256, 256},
		{257, 512},
		{16 << 10, 16 << 10},
		{16<<10 + 1, 32 << 10},
		{1 << 20, 1 << 20},
		{4 << 20, 4 << 20},
		{4<<20 + 1, 4<<20 + 1},
	}
	var p Pool
	for _, tt := range tests {
		b := p.Get(tt.size)
		if len(*b) != tt.size || cap(*b) != tt.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tt.size, len(*b), cap(*b), tt.size, tt.wantCap)
		}
		p.Put(b)
	}
}

func TestPoolReuses(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop a random share of what it is given, so reuse cannot be measured under -race")
	}
	var p Pool
	b := p.Get(1000)
	(*b)[0] = 7
	p.Put(b)
	c := p.Get(700)
	if len(*c) != 700 || cap(*c) != 1024 {
		t.Fatalf("len %d cap %d", len(*c), cap(*c))
	}
	p.Put(c)
	// A pool that never reuses allocates a buffer on every Get. sync.Pool
	// may drop what it holds at a garbage collection, so a rare allocation
	// is allowed, but the average over many round trips must be near zero.
	for _, size := range []int{1, 700, 16 << 10, 1 << 20} {
		allocs := testing.AllocsPerRun(200, func() {
			b := p.Get(size)
			(*b)[0] = 1
			p.Put(b)
		})
		if allocs > 0.1 {
			t.Errorf("Get/Put of %d bytes: %.2f allocations per round trip, want reuse (about 0)", size, allocs)
		}
	}
	// Above the largest tier nothing is pooled: each Get allocates.
	if allocs := testing.AllocsPerRun(20, func() { p.Put(p.Get(4<<20 + 1)) }); allocs < 1 {
		t.Errorf("a buffer beyond the largest tier was reused (%.2f allocations per Get)", allocs)
	}
}

func TestPutForeignBuffer(t *testing.T) {
	var p Pool
	odd := make([]byte, 300) // not a tier's capacity
	p.Put(&odd)
	b := p.Get(300)
	if cap(*b) != 512 {
		t.Fatalf("a buffer of capacity %d came back from the 512 tier", cap(*b))
	}
}

func TestSharedIsTheDefault(t *testing.T) {
	if mem.DefaultBufferPool() != mem.BufferPool(Shared) {
		t.Fatal("importing rpcbuf did not make Shared gRPC's default buffer pool")
	}
}
