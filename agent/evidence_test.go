package agent

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/bandwidth/bandwidthtest"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// TestWindowKeepsUnacknowledgedBytes streams through a small window with
// acknowledgements lagging behind, and checks that every byte read back,
// including after a rewind to an acknowledged offset, is the byte written.
func TestWindowKeepsUnacknowledgedBytes(t *testing.T) {
	src := make([]byte, 10_000)
	for i := range src {
		src[i] = byte(rand.IntN(256))
	}
	tests := []struct {
		name   string
		window int
		write  int
		read   int
	}{
		{"aligned", 64, 16, 16},
		{"writes wrap", 100, 37, 11},
		{"reads wrap", 97, 5, 60},
		{"whole window", 50, 50, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWindow(tt.window)
			var sent, written int64
			var got bytes.Buffer
			for sent < int64(len(src)) {
				for written < int64(len(src)) && w.free() > 0 {
					n := min(int64(tt.write), w.free(), int64(len(src))-written)
					w.fill(w.end, src[written:written+n])
					w.end += n
					written += n
				}
				n := min(int64(tt.read), w.end-sent)
				// slice may return less: up to the end of the ring.
				b := w.slice(sent, n)
				got.Write(b)
				sent += int64(len(b))
				// The controller acknowledges half of what was sent; a
				// resume rewinds to that offset.
				acked := w.base + (sent-w.base)/2
				w.release(acked)
				if rand.IntN(4) == 0 {
					got.Truncate(int(acked))
					sent = acked
				}
			}
			if !bytes.Equal(got.Bytes(), src) {
				t.Fatal("the bytes read back differ from the bytes written")
			}
			if w.free() < 0 || w.free() > int64(tt.window) {
				t.Fatalf("free %d", w.free())
			}
		})
	}
}

func TestWindowReleaseNeverPassesTheEnd(t *testing.T) {
	w := newWindow(10)
	w.fill(w.end, []byte("abcdef"))
	w.end += 6
	w.release(100)
	if w.base != 6 || w.free() != 10 {
		t.Fatalf("base %d free %d", w.base, w.free())
	}
	w.release(2)
	if w.base != 6 {
		t.Fatalf("release went backwards to %d", w.base)
	}
}

// TestUploadPacing paces a 4 MiB upload on a virtual clock under the
// agent's --bandwidth and the run's cap, through the pacer an upload
// takes: the lower cap sets the pace and the chunk size, and the agent's
// cap is shared by the agent's uploads.
func TestUploadPacing(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		agentCap int64
		runCap   uint64
		// wantChunk is the chunk an upload sends; wantTime the virtual
		// time its 4 MiB take (the first chunk goes at once).
		wantChunk int
		wantTime  time.Duration
	}{
		{name: "no cap", wantChunk: 1 << 20},
		{name: "agent cap only", agentCap: 2 * mib, wantChunk: 512 << 10, wantTime: 1750 * time.Millisecond},
		{name: "run cap only", runCap: 1 * mib, wantChunk: 256 << 10, wantTime: 3750 * time.Millisecond},
		{name: "both, the run's lower", agentCap: 4 * mib, runCap: 1 * mib, wantChunk: 256 << 10, wantTime: 3750 * time.Millisecond},
		{name: "both, the agent's lower", agentCap: 1 * mib, runCap: 4 * mib, wantChunk: 256 << 10, wantTime: 3750 * time.Millisecond},
		{name: "a run cap past int64 is no cap", agentCap: 2 * mib, runCap: 1 << 63, wantChunk: 512 << 10, wantTime: 1750 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			a := &Agent{cfg: Config{Bandwidth: tt.agentCap, PaceClock: clock}}
			spec := &agentv1.TaskSpec{TaskId: "tsk-1", UploadBytesPerSecond: tt.runCap}
			upload := func() time.Duration {
				p := a.uploadPacer(spec)
				if p.Chunk() != tt.wantChunk {
					t.Fatalf("chunk %d, want %d", p.Chunk(), tt.wantChunk)
				}
				start := clock.Now()
				for sent := 0; sent < 4*mib; sent += p.Chunk() {
					if err := p.Wait(context.Background(), p.Chunk()); err != nil {
						t.Fatal(err)
					}
				}
				return clock.Now().Sub(start)
			}
			if got := upload(); (got - tt.wantTime).Abs() > time.Millisecond {
				t.Fatalf("4 MiB took %v of virtual time; want %v", got, tt.wantTime)
			}
			// A second upload finds the agent's cap drained by the first
			// (it is shared), and a fresh run cap.
			want := tt.wantTime
			if tt.agentCap > 0 && (tt.runCap == 0 || int64(tt.runCap) >= tt.agentCap || tt.runCap >= 1<<62) {
				want += time.Duration(tt.wantChunk) * time.Second / time.Duration(tt.agentCap)
			}
			if got := upload(); (got - want).Abs() > time.Millisecond {
				t.Fatalf("a second upload of 4 MiB took %v of virtual time; want %v", got, want)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		chunkFailures int
		want          bool
	}{
		{"connection lost", status.Error(codes.Unavailable, "x"), 0, true},
		{"superseded", status.Error(codes.Aborted, "x"), 0, true},
		{"transport error", errors.New("EOF"), 0, true},
		{"corrupted chunk", status.Error(codes.DataLoss, "x"), 1, true},
		{"corrupted chunks again and again", status.Error(codes.DataLoss, "x"), maxChunkRetries + 1, false},
		{"not this agent's task", status.Error(codes.PermissionDenied, "x"), 0, false},
		{"task ended", status.Error(codes.FailedPrecondition, "x"), 0, false},
		{"too large", status.Error(codes.ResourceExhausted, "x"), 0, false},
		{"whole hash refused", &errPermanent{status.Error(codes.DataLoss, "x")}, 0, false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err, tt.chunkFailures); got != tt.want {
			t.Errorf("%s: retryable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestEvidenceWindowCoversTwoCheckpoints keeps the agent's unacknowledged
// window at twice each checkpoint size of the controller
// (controller/evidence: DefaultCheckpointBytes for a local store,
// S3CheckpointBytes, one S3 part, for an upload staged in S3), so the
// agent keeps sending while the controller commits a checkpoint.
func TestEvidenceWindowCoversTwoCheckpoints(t *testing.T) {
	tests := []struct {
		name       string
		checkpoint int64
	}{
		{"local store", 4 << 20},
		{"S3 staging", 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if evidenceWindow < 2*tt.checkpoint {
				t.Fatalf("the evidence window is %d bytes, less than twice the controller's checkpoint of %d bytes", evidenceWindow, tt.checkpoint)
			}
		})
	}
}
