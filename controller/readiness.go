package controller

import (
	"context"
	"time"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/operator"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// readinessSchedule is the --readiness-every job: it reviews every known
// account and stores the report whenever the newest stored report is a
// period old, so a controller that takes the lease over keeps the schedule
// of the one that held it. A review that fails is logged and retried at
// the next period; only the lease's end stops the job.
func (c *Controller) readinessSchedule(ctx context.Context) error {
	every := c.cfg.ReadinessEvery
	for {
		var last time.Time
		if rs, err := c.Store.ListReadinessReports(ctx, 1); err == nil && len(rs) > 0 {
			last = rs[0].GeneratedAt
		} else if err != nil {
			c.cfg.Logger.Warn("readiness schedule: reading the last report", "error", err)
		}
		wait := nextReadiness(last, every, c.cfg.Clock())
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		r, err := c.Operator.ReviewReadiness(ctx, operator.ReadinessActor, &operatorv1.ReadinessRequest{Accounts: "all", Save: true})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.cfg.Logger.Warn("readiness schedule: the review failed; retrying next period", "error", err)
			t := time.NewTimer(every)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		default:
			c.cfg.Logger.Info("readiness schedule: review stored", "report", r.ID, "score", r.Score, "run", r.RunID)
		}
	}
}

// nextReadiness is how long to wait before the next scheduled review,
// given when the newest stored report was made: none, or one a period
// old, is due now.
func nextReadiness(last time.Time, every time.Duration, now time.Time) time.Duration {
	if last.IsZero() {
		return 0
	}
	return max(last.Add(every).Sub(now), 0)
}

// evidenceProber is the evidence store a readiness review probes, or nil
// when its backend cannot be probed.
func evidenceProber(s *evidence.Service) evidence.Prober {
	if p, ok := s.Backend().(evidence.Prober); ok {
		return p
	}
	return nil
}
