package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultStoreCheckInterval is how often the controller pings its store
// for the health service and the firebreak_store_up gauge.
const DefaultStoreCheckInterval = 5 * time.Second

// storeHealth turns the store's reachability into the gRPC health
// service's overall status (""): SERVING while the store answers a ping,
// NOT_SERVING while it does not, so a load balancer's health check sends
// no agent or operator to a controller that cannot store what they send.
type storeHealth struct {
	ping     func(context.Context) error
	health   *health.Server
	interval time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	checked bool
	up      bool
}

// check pings the store once (bounded by the interval), sets the health
// status and logs a change. It returns whether the store answered.
func (h *storeHealth) check(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, h.interval)
	err := h.ping(pctx)
	cancel()
	if ctx.Err() != nil {
		// Stopping: the controller's shutdown sets the status.
		return err == nil
	}
	up := err == nil
	h.mu.Lock()
	first, was := !h.checked, h.up
	h.checked, h.up = true, up
	h.mu.Unlock()
	if up {
		h.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	} else {
		h.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	switch {
	case !up && (first || was):
		h.logger.Error("the store is unreachable: the health service reports NOT_SERVING until it answers", "error", err)
	case up && !first && !was:
		h.logger.Info("the store answers again: the health service reports SERVING")
	}
	return up
}

// Up reports whether the store answered the last check.
func (h *storeHealth) Up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up
}

// run checks the store every interval until ctx ends.
func (h *storeHealth) run(ctx context.Context) error {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			h.check(ctx)
		}
	}
}
