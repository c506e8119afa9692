package route

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/internal/pki"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
)

// Server is the PeerService the other controllers of the cluster call.
type Server struct {
	clusterv1.UnimplementedPeerServiceServer
	r *Router
}

// Server returns the router's PeerService.
func (r *Router) Server() *Server { return &Server{r: r} }

// PeerPolicy names the PeerService methods: only a controller certificate
// may call them (auth.Policy.Controller).
func PeerPolicy() map[string]bool {
	return map[string]bool{
		clusterv1.PeerService_Deliver_FullMethodName:   true,
		clusterv1.PeerService_Report_FullMethodName:    true,
		clusterv1.PeerService_Presence_FullMethodName:  true,
		clusterv1.PeerService_DecideRun_FullMethodName: true,
		clusterv1.PeerService_CancelRun_FullMethodName: true,
		clusterv1.PeerService_WatchRun_FullMethodName:  true,
	}
}

// caller returns the calling controller's id.
func (s *Server) caller(ctx context.Context) (string, error) {
	id, ok := auth.IdentityFrom(ctx)
	// Security-critical: the authenticator already refused any other kind;
	// this keeps the handler safe if it is ever registered without it.
	if !ok || id.Kind != pki.KindController || id.Name == "" {
		return "", status.Error(codes.PermissionDenied, "the peer service is for the controllers of the cluster")
	}
	if !s.r.shared {
		return "", status.Error(codes.FailedPrecondition, "this controller's store is not shared: it has no peers")
	}
	if s.r.disp == nil || s.r.fleet == nil {
		return "", status.Error(codes.Unavailable, "this controller is starting")
	}
	return id.Name, nil
}

// Deliver implements clusterv1.PeerServiceServer.
func (s *Server) Deliver(ctx context.Context, req *clusterv1.DeliverRequest) (*clusterv1.DeliverResponse, error) {
	from, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	out := &clusterv1.DeliverResponse{Pushed: make([]bool, len(req.GetDeliveries()))}
	for i, d := range req.GetDeliveries() {
		msg := d.GetMsg()
		s.r.mu.Lock()
		if t := msg.GetTask(); t != nil {
			// Before the push, so that a fast result finds its owner.
			if id := taskID(t); id != "" {
				s.r.owners[id] = from
			}
		} else if ack := msg.GetResultAck(); ack != nil {
			delete(s.r.owners, ack.GetTaskId())
		}
		s.r.mu.Unlock()
		out.Pushed[i] = s.r.fleet.Push(d.GetAgentId(), msg)
	}
	return out, nil
}

// Report implements clusterv1.PeerServiceServer: the caller holds the
// agents, and authenticated them; this controller owns the tasks. The
// dispatcher checks, as for its own agents, that each task is the agent's.
func (s *Server) Report(ctx context.Context, req *clusterv1.ReportRequest) (*clusterv1.ReportResponse, error) {
	if _, err := s.caller(ctx); err != nil {
		return nil, err
	}
	for _, rep := range req.GetReports() {
		switch {
		case rep.GetResult() != nil:
			s.r.disp.TaskResult(rep.GetAgentId(), rep.GetResult())
		case rep.GetEvent() != nil:
			s.r.disp.TaskEvent(rep.GetAgentId(), rep.GetEvent())
		}
	}
	return &clusterv1.ReportResponse{}, nil
}

// Presence implements clusterv1.PeerServiceServer.
func (s *Server) Presence(ctx context.Context, req *clusterv1.PresenceRequest) (*clusterv1.PresenceResponse, error) {
	from, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	ss := make([]session, 0, len(req.GetSessions()))
	for _, x := range req.GetSessions() {
		ss = append(ss, session{agentID: x.GetAgentId(), epoch: x.GetEpoch(), open: x.GetOpen(), factsChanged: x.GetFactsChanged()})
	}
	s.r.applyPresence(from, ss)
	return &clusterv1.PresenceResponse{}, nil
}
