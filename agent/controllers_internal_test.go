package agent

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// peerStream is a client stream whose context names the peer dialled.
type peerStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s peerStream) Context() context.Context { return s.ctx }

type mapResolver map[string][]string

func (m mapResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if ips, ok := m[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestIsolationKeepsEveryControllerReachable: the controller addresses an
// action receives (host isolation keeps them open) are every address the
// list resolves to and the one connected, so an isolated host can still
// fail over; the port is the connected controller's.
func TestIsolationKeepsEveryControllerReachable(t *testing.T) {
	tests := []struct {
		name      string
		list      string
		connected string
		peer      string
		wantIPs   []string
		wantPort  uint32
	}{
		{name: "list of IPs", list: "10.0.1.10:7443,10.0.2.10:7443,10.0.3.10:7443", connected: "10.0.2.10:7443", peer: "10.0.2.10",
			wantIPs: []string{"10.0.1.10", "10.0.2.10", "10.0.3.10"}, wantPort: 7443},
		{name: "dns name with several records", list: "controllers.example:7443", connected: "10.0.3.10:7443", peer: "10.0.3.10",
			wantIPs: []string{"10.0.1.10", "10.0.2.10", "10.0.3.10"}, wantPort: 7443},
		{name: "peer seen through a translation", list: "10.0.1.10:8443", connected: "10.0.1.10:8443", peer: "192.0.2.7",
			wantIPs: []string{"10.0.1.10", "192.0.2.7"}, wantPort: 8443},
		{name: "unresolved name keeps the connected address", list: "gone.example:7443,10.0.1.10:7443", connected: "10.0.1.10:7443", peer: "10.0.1.10",
			wantIPs: []string{"10.0.1.10"}, wantPort: 7443},
	}
	res := mapResolver{"controllers.example": {"10.0.1.10", "10.0.2.10", "10.0.3.10"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := ctrladdr.Parse(tt.list)
			if err != nil {
				t.Fatal(err)
			}
			picker, err := ctrladdr.NewPicker(ctrladdr.PickerConfig{List: list, Resolver: res})
			if err != nil {
				t.Fatal(err)
			}
			a := &Agent{cfg: Config{Logger: slog.New(slog.DiscardHandler)}, controllers: picker, facts: &agentv1.AgentFacts{}}
			var connected ctrladdr.Target
			targets, _ := picker.Resolve(context.Background())
			for _, tg := range targets {
				if tg.Addr == tt.connected {
					connected = tg
				}
			}
			if connected.Addr == "" {
				t.Fatalf("%s is not among the resolved %v", tt.connected, targets)
			}
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(tt.peer), Port: 7443}})
			a.rememberController(context.Background(), peerStream{ctx: ctx}, connected)
			req := a.executeRequest(&agentv1.TaskSpec{TaskId: "task-1"})
			got := slices.Sorted(slices.Values(req.GetHost().GetControllerAddresses()))
			if !slices.Equal(got, tt.wantIPs) {
				t.Errorf("controller addresses %v, want %v", got, tt.wantIPs)
			}
			if p := req.GetHost().GetControllerPort(); p != tt.wantPort {
				t.Errorf("controller port %d, want %d", p, tt.wantPort)
			}
		})
	}
}
