package operator

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// WatchRun implements operatorv1.OperatorServiceServer. Each operator may
// hold a bounded number of watches open (Config.Watches); past it the call
// is refused with RESOURCE_EXHAUSTED. A watcher that reads slowly gets a
// fresh snapshot in place of the updates it missed, and always the end.
func (s *Service) WatchRun(req *operatorv1.WatchRunRequest, stream operatorv1.OperatorService_WatchRunServer) error {
	ctx := stream.Context()
	release, err := s.cfg.Watches.Acquire(caller(ctx).Name)
	if err != nil {
		return err
	}
	defer release()
	return s.watch(ctx, req.GetRunId(), stream.Send, true)
}

// watch sends a run's events until it ends: from this controller's
// dispatcher, from the run's owner in the cluster (when forward is set and
// another controller holds it), or, for a run no dispatcher holds, as
// stored.
func (s *Service) watch(ctx context.Context, runID string, send func(*operatorv1.WatchRunResponse) error, forward bool) error {
	snap, sub, err := s.cfg.Dispatcher.Watch(ctx, runID)
	if err != nil {
		return err
	}
	if sub == nil {
		if forward && s.cfg.Owners != nil {
			if handled, err := s.cfg.Owners.Watch(ctx, runID, caller(ctx).Name, send); handled {
				return err
			}
		}
		r, err := s.storedRun(ctx, runID)
		if err != nil {
			return err
		}
		if forward && s.cfg.Owners != nil && active(r.GetStatus()) {
			// Between owners: the controller that drove the run died and
			// no other has adopted it yet (it does once the dead one's
			// heartbeat is cluster.LiveWithin old). Ending the watch with
			// the run as stored would show a run that goes on as if it had
			// stopped; the caller watches again instead.
			return status.Errorf(codes.Unavailable, "run %s is between controllers: its owner stopped and another adopts it within seconds; watch again", runID)
		}
		if err := send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Snapshot{Snapshot: r}}); err != nil {
			return err
		}
		return send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Done{Done: r}})
	}
	defer s.cfg.Dispatcher.Unwatch(sub)
	if err := send(&operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Snapshot{Snapshot: runView(snap)}}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-sub.C:
			if !ok {
				return nil
			}
			if m.Kind == dispatch.EventDone && forward && s.cfg.Owners != nil && m.Run != nil && active(m.Run.Run.Status) {
				// The run did not end: another controller of the cluster
				// claimed it while this one could not reach the store.
				// The watch goes on through its new owner.
				if handled, err := s.cfg.Owners.Watch(ctx, runID, caller(ctx).Name, send); handled {
					return err
				}
			}
			if err := send(watchResponse(m)); err != nil {
				return err
			}
			if m.Kind == dispatch.EventDone {
				return nil
			}
		}
	}
}

// runView is the dispatcher's view of a run on the wire (nil: none).
func runView(v *dispatch.RunView) *operatorv1.Run {
	if v == nil {
		return nil
	}
	return storeview.RunWithCounts(v.Run, v.Tasks, v.Approvals, v.Counts)
}

// watchResponse is one dispatcher event on the wire.
func watchResponse(ev dispatch.Event) *operatorv1.WatchRunResponse {
	switch ev.Kind {
	case dispatch.EventTask:
		return &operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Task{Task: storeview.Task(ev.Task)}}
	case dispatch.EventRun:
		return &operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Run{Run: runView(ev.Run)}}
	case dispatch.EventSnapshot:
		return &operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Snapshot{Snapshot: runView(ev.Run)}}
	default:
		return &operatorv1.WatchRunResponse{Event: &operatorv1.WatchRunResponse_Done{Done: runView(ev.Run)}}
	}
}

// active reports whether a run has not ended.
func active(st operatorv1.RunStatus) bool {
	return st == operatorv1.RunStatus_RUN_STATUS_RUNNING || st == operatorv1.RunStatus_RUN_STATUS_AWAITING_APPROVAL
}
