package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// flakyStore is a store whose Ping fails while an error is set.
type flakyStore struct {
	mu  sync.Mutex
	err error
}

func (f *flakyStore) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *flakyStore) Ping(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func servingStatus(t *testing.T, h *health.Server) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	return resp.GetStatus()
}

// TestStoreHealthFlips: the health service reports NOT_SERVING while the
// store does not answer and SERVING again once it does, check by check.
func TestStoreHealthFlips(t *testing.T) {
	const (
		serving    = healthpb.HealthCheckResponse_SERVING
		notServing = healthpb.HealthCheckResponse_NOT_SERVING
	)
	down := errors.New("connection refused")
	tests := []struct {
		name  string
		steps []error
		want  []healthpb.HealthCheckResponse_ServingStatus
	}{
		{name: "up", steps: []error{nil, nil}, want: []healthpb.HealthCheckResponse_ServingStatus{serving, serving}},
		{name: "down at start", steps: []error{down, nil}, want: []healthpb.HealthCheckResponse_ServingStatus{notServing, serving}},
		{name: "down then back", steps: []error{nil, down, down, nil, down},
			want: []healthpb.HealthCheckResponse_ServingStatus{serving, notServing, notServing, serving, notServing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &flakyStore{}
			h := &storeHealth{ping: st.Ping, health: health.NewServer(), interval: time.Second,
				logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			for i, err := range tt.steps {
				st.set(err)
				if got := h.check(context.Background()); got != (err == nil) {
					t.Fatalf("step %d: check = %v, want %v", i, got, err == nil)
				}
				if got := servingStatus(t, h.health); got != tt.want[i] {
					t.Fatalf("step %d: health %s, want %s", i, got, tt.want[i])
				}
				if h.Up() != (err == nil) {
					t.Fatalf("step %d: Up() = %v, want %v (firebreak_store_up)", i, h.Up(), err == nil)
				}
			}
		})
	}
}

// TestStoreHealthSQLite: the SQLite store answers a ping while open and
// fails it once closed, and the health service follows.
func TestStoreHealthSQLite(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "firebreak.db"))
	if err != nil {
		t.Fatal(err)
	}
	h := &storeHealth{ping: st.Ping, health: health.NewServer(), interval: time.Second,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if !h.check(context.Background()) || servingStatus(t, h.health) != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("an open SQLite store is not reported SERVING")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if h.check(context.Background()) || servingStatus(t, h.health) != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatal("a closed SQLite store is not reported NOT_SERVING")
	}
}

// TestStoreHealthStoppingLeavesStatus: a check cut short because the
// controller is stopping changes nothing; the shutdown sets the status.
func TestStoreHealthStoppingLeavesStatus(t *testing.T) {
	st := &flakyStore{}
	h := &storeHealth{ping: st.Ping, health: health.NewServer(), interval: time.Second,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.check(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st.set(context.Canceled)
	h.check(ctx)
	if got := servingStatus(t, h.health); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health %s after a check cut short by the stop, want SERVING until the shutdown", got)
	}
}
