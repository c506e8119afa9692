package agent

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	"github.com/firebreak-ir/firebreak/agent/journal"
	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// forgetfulController welcomes an agent with a one-second heartbeat and
// takes results in without acknowledging them, as a controller does whose
// store is restarting, until ack is closed; then it acknowledges each
// result it receives.
type forgetfulController struct {
	agentv1.UnimplementedAgentServiceServer
	agentID string
	ack     chan struct{}

	mu         sync.Mutex
	results    map[string]int // task id → times received
	heartbeats int
	received   chan string
}

func (c *forgetfulController) Connect(stream agentv1.AgentService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Welcome{Welcome: &agentv1.Welcome{
		AgentId: c.agentID, ServerTime: timestamppb.Now(), HeartbeatSeconds: 1}}}); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		c.mu.Lock()
		if m.GetHeartbeat() != nil {
			c.heartbeats++
		}
		c.mu.Unlock()
		r := m.GetTaskResult()
		if r == nil {
			continue
		}
		c.mu.Lock()
		c.results[r.GetTaskId()]++
		c.mu.Unlock()
		c.received <- r.GetTaskId()
		select {
		case <-c.ack:
			if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_ResultAck{ResultAck: &agentv1.ResultAck{TaskId: r.GetTaskId()}}}); err != nil {
				return err
			}
		default:
		}
	}
}

func (c *forgetfulController) count() (results map[string]int, heartbeats int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.results {
		out[k] = v
	}
	return out, c.heartbeats
}

// TestUnacknowledgedResultsGoAgain: a result the controller took in but
// never acknowledged is sent when the stream opens, and again on the same
// stream a heartbeat after it was seen still unacknowledged; once
// acknowledged it is journalled as such and not sent again.
func TestUnacknowledgedResultsGoAgain(t *testing.T) {
	ctl := &forgetfulController{agentID: "agt-resend", ack: make(chan struct{}), results: map[string]int{}, received: make(chan string, 64)}
	addr, id := serveController(t, "agt-resend", func(srv *grpc.Server) { agentv1.RegisterAgentServiceServer(srv, ctl) })

	j := journal.OpenMemory()
	for _, id := range []string{"tsk-a", "tsk-b"} {
		if err := j.Start(id, []byte("nonce-"+id), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := j.Finish(&agentv1.TaskResult{TaskId: id}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := ctrladdr.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	picker, err := ctrladdr.NewPicker(ctrladdr.PickerConfig{List: list})
	if err != nil {
		t.Fatal(err)
	}
	plugins, err := pluginhost.New(pluginhost.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Logger: slog.New(slog.DiscardHandler), Clock: time.Now},
		id:      id,
		facts:   &agentv1.AgentFacts{Hostname: "resend"},
		journal: j, plugins: plugins, controllers: picker, running: map[string]context.CancelFunc{}}
	targets, err := picker.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := a.session(ctx, targets[0]); done <- err }()

	// Each result once at the start of the stream, then each once more
	// after a heartbeat, on the same stream.
	want := map[string]int{"tsk-a": 2, "tsk-b": 2}
	for got := map[string]int{}; !equalCounts(got, want); {
		select {
		case id := <-ctl.received:
			got[id]++
			if got[id] > want[id] {
				t.Fatalf("result %s sent %d times before a second heartbeat passed: %v", id, got[id], got)
			}
		case err := <-done:
			t.Fatalf("the session ended: %v", err)
		case <-ctx.Done():
			results, hb := ctl.count()
			t.Fatalf("results received %v after %d heartbeats, want each twice on one stream", results, hb)
		}
	}
	if _, hb := ctl.count(); hb < 1 {
		t.Fatalf("the results went again before any heartbeat")
	}
	// The controller now acknowledges: the next re-send is acknowledged
	// and journalled, and nothing is sent after that.
	close(ctl.ack)
	for len(j.Unacked()) > 0 {
		select {
		case <-ctl.received:
		case err := <-done:
			t.Fatalf("the session ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("still unacknowledged: %d", len(j.Unacked()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	settled, hb := ctl.count()
	// Two more heartbeats pass with nothing left to send.
	for _, after := ctl.count(); after < hb+2; _, after = ctl.count() {
		select {
		case id := <-ctl.received:
			t.Fatalf("result %s sent again after its acknowledgement", id)
		case err := <-done:
			t.Fatalf("the session ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no heartbeats")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if final, _ := ctl.count(); !equalCounts(final, settled) {
		t.Fatalf("results after acknowledgement: %v, want %v", final, settled)
	}
	cancel()
	<-done
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
