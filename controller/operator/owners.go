package operator

import (
	"context"
	"errors"

	"github.com/firebreak-ir/firebreak/controller/dispatch"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// RunOwners reaches the controller of the cluster that owns a run this
// controller's dispatcher does not hold (route.Router), so that an
// operator's decision, cancellation or watch works through any controller.
// Each method reports handled=false when the run has no other live owner,
// and the caller answers from its own dispatcher and the store.
type RunOwners interface {
	// Decide forwards an approval or a rejection to the run's owner.
	Decide(ctx context.Context, runID, operator string, approve bool, comment string) (run *operatorv1.Run, handled bool, err error)
	// Cancel forwards a cancellation to the run's owner.
	Cancel(ctx context.Context, runID, operator, reason string) (run *operatorv1.Run, handled bool, err error)
	// Watch follows the run through its owner, sending each event.
	Watch(ctx context.Context, runID, operator string, send func(*operatorv1.WatchRunResponse) error) (handled bool, err error)
}

// DecideLocal decides on a run this controller's dispatcher holds, for an
// operator another controller of the cluster authenticated and authorised
// (route.RunService). The two-person rule applies here, in the owner's
// dispatcher, as for a local call.
func (s *Service) DecideLocal(ctx context.Context, runID, operator string, approve bool, comment string) (*operatorv1.Run, error) {
	r, err := s.cfg.Dispatcher.Decide(ctx, runID, operator, approve, comment)
	if err != nil {
		return nil, s.decisionError(ctx, err, runID)
	}
	return runView(r), nil
}

// CancelLocal cancels a run this controller's dispatcher holds, for an
// operator another controller authenticated and authorised.
func (s *Service) CancelLocal(ctx context.Context, runID, operator, reason string) (*operatorv1.Run, error) {
	r, err := s.cfg.Dispatcher.Cancel(ctx, runID, operator, reason)
	if err != nil {
		return nil, s.decisionError(ctx, err, runID)
	}
	return runView(r), nil
}

// WatchLocal follows a run for a watcher on another controller: the same
// events WatchRun sends.
func (s *Service) WatchLocal(ctx context.Context, runID string, send func(*operatorv1.WatchRunResponse) error) error {
	return s.watch(ctx, runID, send, false)
}

// forwardable reports whether a dispatcher's answer means that the run is
// not held here, so its owner elsewhere may hold it.
func forwardable(err error) bool {
	return errors.Is(err, dispatch.ErrRunNotFound) || errors.Is(err, dispatch.ErrRunNotRunning)
}
