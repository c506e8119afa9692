package route

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/firebreak-ir/firebreak/internal/telemetry"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
)

// Peer is a connection to another controller's PeerService.
type Peer interface {
	clusterv1.PeerServiceClient
	// Close closes the connection.
	Close() error
}

// link sends to one other controller. Messages queue without blocking
// the caller (the dispatcher's loop, an agent's stream) and one goroutine
// sends them in batches: while one batch is on the wire the next gathers.
type link struct {
	id, addr string
	peer     Peer
	logger   *slog.Logger

	mu       sync.Mutex
	delivers []*clusterv1.Delivery
	reports  []*clusterv1.AgentReport
	sessions []*clusterv1.Session
	closed   bool
	wake     chan struct{}
	done     chan struct{}
	// unsent, when set, takes back the results of a report batch the peer
	// did not take, so the router holds them instead of losing them.
	unsent func([]*clusterv1.AgentReport)
}

// maxQueued bounds each of a link's queues; past it a delivery is refused
// (the task stays pending) and a report or presence is dropped (the agent
// re-sends, the sweep corrects).
const maxQueued = 1 << 16

// maxBatch bounds one RPC's messages.
const maxBatch = 4096

// newLink starts a link to controller id at addr; unsent (nil: dropped)
// takes back the reports of a batch the peer did not take.
func newLink(id, addr string, p Peer, logger *slog.Logger, unsent func([]*clusterv1.AgentReport)) *link {
	l := &link{id: id, addr: addr, peer: p, logger: logger, wake: make(chan struct{}, 1), done: make(chan struct{}), unsent: unsent}
	go l.run()
	return l
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// deliver queues a message for an agent the peer holds.
func (l *link) deliver(agentID string, msg *agentv1.ConnectResponse) bool {
	l.mu.Lock()
	if l.closed || len(l.delivers) >= maxQueued {
		l.mu.Unlock()
		return false
	}
	l.delivers = append(l.delivers, &clusterv1.Delivery{AgentId: agentID, Msg: msg})
	l.mu.Unlock()
	l.signal()
	return true
}

// report queues an agent's report for the peer, the task's owner, and
// reports whether it was queued (not: the link is closed or full).
func (l *link) report(agentID string, ev *agentv1.TaskEvent, res *agentv1.TaskResult) bool {
	rep := &clusterv1.AgentReport{AgentId: agentID}
	if res != nil {
		rep.Report = &clusterv1.AgentReport_Result{Result: res}
	} else {
		rep.Report = &clusterv1.AgentReport_Event{Event: ev}
	}
	l.mu.Lock()
	if l.closed || len(l.reports) >= maxQueued {
		l.mu.Unlock()
		return false
	}
	l.reports = append(l.reports, rep)
	l.mu.Unlock()
	l.signal()
	return true
}

// presence queues session changes for the peer.
func (l *link) presence(ss []session) {
	if len(ss) == 0 {
		return
	}
	l.mu.Lock()
	if l.closed || len(l.sessions) >= maxQueued {
		l.mu.Unlock()
		return
	}
	for _, s := range ss {
		l.sessions = append(l.sessions, &clusterv1.Session{AgentId: s.agentID, Epoch: s.epoch, Open: s.open, FactsChanged: s.factsChanged})
	}
	l.mu.Unlock()
	l.signal()
}

// close stops the link and returns the reports it had not sent yet.
func (l *link) close() []*clusterv1.AgentReport {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	left := l.reports
	l.reports = nil
	l.mu.Unlock()
	close(l.done)
	_ = l.peer.Close()
	return left
}

// take removes up to maxBatch queued messages of each kind.
func (l *link) take() (d []*clusterv1.Delivery, r []*clusterv1.AgentReport, s []*clusterv1.Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := func(n int) int { return min(n, maxBatch) }
	n := cut(len(l.delivers))
	d, l.delivers = l.delivers[:n:n], l.delivers[n:]
	n = cut(len(l.reports))
	r, l.reports = l.reports[:n:n], l.reports[n:]
	n = cut(len(l.sessions))
	s, l.sessions = l.sessions[:n:n], l.sessions[n:]
	return d, r, s
}

func (l *link) run() {
	for {
		select {
		case <-l.done:
			return
		case <-l.wake:
		}
		for {
			d, r, s := l.take()
			if len(d) == 0 && len(r) == 0 && len(s) == 0 {
				break
			}
			// Presence first: an owner learns that an agent is here
			// before that agent's reports arrive.
			if len(s) > 0 {
				l.send("presence", len(s), func(ctx context.Context) error {
					_, err := l.peer.Presence(ctx, &clusterv1.PresenceRequest{Sessions: s})
					return err
				})
			}
			if len(r) > 0 {
				ok := l.send("report", len(r), func(ctx context.Context) error {
					_, err := l.peer.Report(ctx, &clusterv1.ReportRequest{Reports: r})
					return err
				})
				if !ok && l.unsent != nil {
					// Sent again later, to whichever controller owns
					// the tasks then; the owner takes a result twice
					// as once.
					l.unsent(r)
				}
			}
			if len(d) > 0 {
				l.send("deliver", len(d), func(ctx context.Context) error {
					resp, err := l.peer.Deliver(ctx, &clusterv1.DeliverRequest{Deliveries: d})
					if err == nil {
						missed := 0
						for _, ok := range resp.GetPushed() {
							if !ok {
								missed++
							}
						}
						if missed > 0 {
							// The agents left that controller meanwhile: each
							// task is sent again where the agent reconnects.
							l.logger.Debug("another controller no longer held some agents", "controller_id", l.id, "missed", missed)
						}
					}
					return err
				})
			}
		}
	}
}

// send makes one RPC with a bounded wait and reports whether it went
// through. A failure is logged; a report batch goes back to the router
// (link.unsent), and what else it carried is recovered by the agents (a
// result is re-sent until acknowledged, a task delivered again when its
// agent reconnects) and by the sweep.
func (l *link) send(kind string, n int, call func(ctx context.Context) error) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call(ctx); err != nil {
		telemetry.RouteSent(kind, "error", n)
		l.logger.Warn("sending to another controller failed", "controller_id", l.id, "address", l.addr, "kind", kind, "messages", n, "error", err)
		return false
	}
	telemetry.RouteSent(kind, "ok", n)
	return true
}
