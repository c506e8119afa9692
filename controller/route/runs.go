package route

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/store"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// RunService answers, on a run's owner, the operator requests another
// controller forwards (*operator.Service).
type RunService interface {
	DecideLocal(ctx context.Context, runID, operator string, approve bool, comment string) (*operatorv1.Run, error)
	CancelLocal(ctx context.Context, runID, operator, reason string) (*operatorv1.Run, error)
	WatchLocal(ctx context.Context, runID string, send func(*operatorv1.WatchRunResponse) error) error
}

// SetRunService gives the router the operator service that answers
// forwarded requests. Call it once, before the controller serves.
func (r *Router) SetRunService(rs RunService) { r.runs = rs }

// ownerPeer returns the link to the live controller that owns an active
// run, or nil when the run is this controller's, not active, unknown, or
// its owner is not live (its runs are adopted soon).
func (r *Router) ownerPeer(ctx context.Context, runID string) *link {
	if !r.shared {
		return nil
	}
	owner, active, err := r.cfg.Store.RunOwner(ctx, runID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.cfg.Logger.Warn("looking up a run's owner failed; answering from this controller", "run", runID, "error", err)
		}
		return nil
	}
	if !active || owner == r.cfg.ID {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[owner]
}

// Decide implements operator.RunOwners.
func (r *Router) Decide(ctx context.Context, runID, operator string, approve bool, comment string) (*operatorv1.Run, bool, error) {
	l := r.ownerPeer(ctx, runID)
	if l == nil {
		return nil, false, nil
	}
	resp, err := l.peer.DecideRun(ctx, &clusterv1.DecideRunRequest{RunId: runID, Operator: operator, Approve: approve, Comment: comment})
	if err != nil {
		return nil, true, err
	}
	return resp.GetRun(), true, nil
}

// Cancel implements operator.RunOwners.
func (r *Router) Cancel(ctx context.Context, runID, operator, reason string) (*operatorv1.Run, bool, error) {
	l := r.ownerPeer(ctx, runID)
	if l == nil {
		return nil, false, nil
	}
	resp, err := l.peer.CancelRun(ctx, &clusterv1.CancelRunRequest{RunId: runID, Operator: operator, Reason: reason})
	if err != nil {
		return nil, true, err
	}
	return resp.GetRun(), true, nil
}

// Watch implements operator.RunOwners: the owner's events are relayed as
// they come. When the owner dies mid-watch the watch ends with an error;
// the watcher watches again and reaches the run's adopter.
func (r *Router) Watch(ctx context.Context, runID, operator string, send func(*operatorv1.WatchRunResponse) error) (bool, error) {
	l := r.ownerPeer(ctx, runID)
	if l == nil {
		return false, nil
	}
	stream, err := l.peer.WatchRun(ctx, &clusterv1.WatchRunRequest{RunId: runID, Operator: operator})
	if err != nil {
		return true, err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			if status.Code(err) == codes.Unavailable {
				return true, status.Errorf(codes.Unavailable, "the controller driving run %s went away; watch again to follow the run from the controller that takes it over: %v", runID, err)
			}
			return true, err
		}
		if err := send(m.GetEvent()); err != nil {
			return true, err
		}
	}
}

// DecideRun implements clusterv1.PeerServiceServer.
func (s *Server) DecideRun(ctx context.Context, req *clusterv1.DecideRunRequest) (*clusterv1.DecideRunResponse, error) {
	if _, err := s.caller(ctx); err != nil {
		return nil, err
	}
	if s.r.runs == nil || req.GetOperator() == "" {
		return nil, status.Error(codes.FailedPrecondition, "a forwarded decision needs this controller's run service and the operator's name")
	}
	run, err := s.r.runs.DecideLocal(ctx, req.GetRunId(), req.GetOperator(), req.GetApprove(), req.GetComment())
	if err != nil {
		return nil, err
	}
	return &clusterv1.DecideRunResponse{Run: run}, nil
}

// CancelRun implements clusterv1.PeerServiceServer.
func (s *Server) CancelRun(ctx context.Context, req *clusterv1.CancelRunRequest) (*clusterv1.CancelRunResponse, error) {
	if _, err := s.caller(ctx); err != nil {
		return nil, err
	}
	if s.r.runs == nil || req.GetOperator() == "" {
		return nil, status.Error(codes.FailedPrecondition, "a forwarded cancellation needs this controller's run service and the operator's name")
	}
	run, err := s.r.runs.CancelLocal(ctx, req.GetRunId(), req.GetOperator(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &clusterv1.CancelRunResponse{Run: run}, nil
}

// WatchRun implements clusterv1.PeerServiceServer.
func (s *Server) WatchRun(req *clusterv1.WatchRunRequest, stream clusterv1.PeerService_WatchRunServer) error {
	if _, err := s.caller(stream.Context()); err != nil {
		return err
	}
	if s.r.runs == nil {
		return status.Error(codes.FailedPrecondition, "this controller has no run service")
	}
	return s.r.runs.WatchLocal(stream.Context(), req.GetRunId(), func(ev *operatorv1.WatchRunResponse) error {
		return stream.Send(&clusterv1.WatchRunResponse{Event: ev})
	})
}
