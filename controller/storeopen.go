package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// OpenStore opens and migrates the store o names. A PostgreSQL store that
// cannot be reached (down, starting, or the network in between) is tried
// again with exponential backoff, each attempt logged, until timeout has
// passed (an attempt under way then ends by the connect timeout of the
// DSN, 10s by default); then, or at once for any other error (a refused password, a
// missing database, a newer schema), it fails naming the DSN without its
// password.
func OpenStore(ctx context.Context, o store.Options, timeout time.Duration, log *slog.Logger) (*store.SQL, error) {
	if o.DSN == "" {
		return store.Open(ctx, o)
	}
	shown := store.RedactDSN(o.DSN)
	deadline := time.Now().Add(timeout)
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := store.Open(ctx, o)
		if err == nil {
			if m := s.Migrated(); len(m.Applied) > 0 {
				log.Info("store migrated", "store", shown, "applied", m.Applied, "migrations", m.Total)
			}
			return s, nil
		}
		if !errors.Is(err, store.ErrUnreachable) || ctx.Err() != nil {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("the store %s could not be reached within --store-connect-timeout %s (%d attempts): %w", shown, timeout, attempt, err)
		}
		wait = min(wait, left)
		log.Warn("store unreachable; trying again", "store", shown, "attempt", attempt, "retry_in", wait.Round(time.Millisecond).String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening the store %s: %w", shown, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
