package bandwidth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/bandwidth/bandwidthtest"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// send pushes total bytes through p in its chunks, spending perChunk of
// virtual time sending each, and returns the virtual time the flow took.
func send(t *testing.T, clock *bandwidthtest.Clock, p *bandwidth.Pacer, total int, perChunk time.Duration) time.Duration {
	t.Helper()
	start := clock.Now()
	for sent := 0; sent < total; {
		n := min(p.Chunk(), total-sent)
		if err := p.Wait(context.Background(), n); err != nil {
			t.Fatalf("Wait(%d) after %d bytes: %v", n, sent, err)
		}
		clock.Advance(perChunk)
		sent += n
	}
	return clock.Now().Sub(start)
}

// near reports whether two virtual durations agree to within the
// rounding of the limiter's float arithmetic (a microsecond per chunk).
func near(got, want time.Duration, chunks int) bool {
	d := got - want
	return d <= time.Duration(chunks)*time.Microsecond && -d <= time.Duration(chunks)*time.Microsecond
}

// TestPacer sends 4 MiB under zero, one or two caps on a virtual clock
// and checks the time the flow takes: the first chunk goes at once (the
// cap's burst), the rest at the lowest cap's rate.
func TestPacer(t *testing.T) {
	tests := []struct {
		name      string
		caps      []int64
		perChunk  time.Duration
		wantRate  int64
		wantChunk int
		wantTime  time.Duration
		wantWaits int
	}{
		{name: "no cap", caps: nil, wantRate: bandwidth.Unlimited, wantChunk: bandwidth.MaxChunk},
		{name: "unlimited caps are no caps", caps: []int64{0, bandwidth.Unlimited}, wantRate: bandwidth.Unlimited, wantChunk: bandwidth.MaxChunk},
		{name: "one cap", caps: []int64{2 * mib}, wantRate: 2 * mib, wantChunk: 512 * kib,
			wantTime: 1750 * time.Millisecond, wantWaits: 7},
		{name: "two caps, the first lower", caps: []int64{1 * mib, 4 * mib}, wantRate: 1 * mib, wantChunk: 256 * kib,
			wantTime: 3750 * time.Millisecond, wantWaits: 15},
		{name: "two caps, the second lower", caps: []int64{4 * mib, 1 * mib}, wantRate: 1 * mib, wantChunk: 256 * kib,
			wantTime: 3750 * time.Millisecond, wantWaits: 15},
		{name: "a low cap sends the smallest chunks", caps: []int64{16 * kib}, wantRate: 16 * kib, wantChunk: bandwidth.MinChunk,
			wantTime: 255 * time.Second, wantWaits: 255},
		{name: "a sender slower than its cap never waits", caps: []int64{1 * mib}, perChunk: 300 * time.Millisecond, wantRate: 1 * mib,
			wantChunk: 256 * kib, wantTime: 16 * 300 * time.Millisecond},
		{name: "a sender a little faster than its cap waits the difference", caps: []int64{1 * mib}, perChunk: 200 * time.Millisecond,
			wantRate: 1 * mib, wantChunk: 256 * kib, wantTime: 16*200*time.Millisecond + 15*50*time.Millisecond, wantWaits: 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			var caps []*bandwidth.Limiter
			for _, c := range tt.caps {
				caps = append(caps, bandwidth.NewLimiter(c))
			}
			p := bandwidth.NewPacer(clock, caps...)
			if p.Rate() != tt.wantRate || p.Chunk() != tt.wantChunk {
				t.Fatalf("rate %d, chunk %d; want %d, %d", p.Rate(), p.Chunk(), tt.wantRate, tt.wantChunk)
			}
			took := send(t, clock, p, 4*mib, tt.perChunk)
			_, waits := clock.Slept()
			if !near(took, tt.wantTime, 4*mib/tt.wantChunk) || waits != tt.wantWaits {
				t.Fatalf("4 MiB took %v of virtual time in %d waits; want %v in %d", took, waits, tt.wantTime, tt.wantWaits)
			}
		})
	}
}

// TestSharedLimiter runs two flows one after the other under one shared
// cap and a cap of each flow's own: the shared cap counts both flows'
// bytes, so the second flow finds no burst left.
func TestSharedLimiter(t *testing.T) {
	clock := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	shared := bandwidth.NewLimiter(1 * mib)
	first := send(t, clock, bandwidth.NewPacer(clock, shared, bandwidth.NewLimiter(8*mib)), 1*mib, 0)
	second := send(t, clock, bandwidth.NewPacer(clock, shared, nil), 1*mib, 0)
	if !near(first, 750*time.Millisecond, 4) || !near(second, time.Second, 4) {
		t.Fatalf("the flows took %v and %v; want 750ms (the first chunk in the burst) and 1s (no burst left)", first, second)
	}
}

// TestPacerRefusals checks the errors of Wait: a chunk larger than the
// pacer's, and an ended context, which gives the reservation back so the
// next flow under the same cap does not pay for bytes never sent.
func TestPacerRefusals(t *testing.T) {
	clock := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	shared := bandwidth.NewLimiter(1 * mib)
	p := bandwidth.NewPacer(clock, shared)
	if err := p.Wait(context.Background(), p.Chunk()+1); err == nil || !strings.Contains(err.Error(), "the most is") {
		t.Fatalf("Wait past the chunk: %v", err)
	}
	if err := p.Wait(context.Background(), p.Chunk()); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ended, p.Chunk()); err != context.Canceled {
		t.Fatalf("Wait on an ended context: %v", err)
	}
	// The cancelled chunk's tokens were returned: the next chunk waits a
	// quarter of a second, not half.
	took := send(t, clock, bandwidth.NewPacer(clock, shared), p.Chunk(), 0)
	if !near(took, 250*time.Millisecond, 1) {
		t.Fatalf("the next chunk waited %v; want 250ms", took)
	}
}

// TestChunkFor checks the chunk sizes and that a cap's burst holds a
// chunk, so Wait never refuses one.
func TestChunkFor(t *testing.T) {
	tests := []struct {
		bps  int64
		want int
	}{
		{0, bandwidth.MaxChunk},
		{1 << 30, bandwidth.MaxChunk},
		{4 << 20, bandwidth.MaxChunk},
		{1 << 20, 256 << 10},
		{10_000, bandwidth.MinChunk},
	}
	for _, tt := range tests {
		if got := bandwidth.ChunkFor(tt.bps); got != tt.want {
			t.Errorf("ChunkFor(%d) = %d, want %d", tt.bps, got, tt.want)
		}
		clock := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		p := bandwidth.NewPacer(clock, bandwidth.NewLimiter(tt.bps))
		for range 3 {
			if err := p.Wait(context.Background(), bandwidth.ChunkFor(tt.bps)); err != nil {
				t.Errorf("a chunk of %d under a cap of %d: %v", bandwidth.ChunkFor(tt.bps), tt.bps, err)
			}
		}
	}
}
