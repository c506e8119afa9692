package agent_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// namesResolver resolves names from a map, and counts lookups.
type namesResolver struct {
	names   map[string][]string
	lookups atomic.Int64
}

func (r *namesResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	r.lookups.Add(1)
	if ips, ok := r.names[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestAgentControllerNameWithSeveralRecords gives the agent a DNS name
// whose records are a loopback address where nothing listens and the
// controller's: the agent enrolls and connects through the record that
// answers, whichever it tries first, and the controller's certificate
// verifies although the agent dials an IP the name resolved to.
func TestAgentControllerNameWithSeveralRecords(t *testing.T) {
	c := playbookruntest.StartController(t, playbookruntest.Options{})
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Operator.CreateJoinToken(playbookruntest.Admin(context.Background()),
		&operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole_AGENT_ROLE_HOST, Uses: 4})
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.2 is loopback too, and nothing listens on it: a dial there
	// is refused at once.
	res := &namesResolver{names: map[string][]string{"controllers.firebreak.test": {"127.0.0.2", host}}}
	for i := range 4 {
		connected := make(chan struct{}, 1)
		a, err := agent.New(context.Background(), agent.Config{
			Controller: "controllers.firebreak.test:" + port, CAFile: filepath.Join(c.DataDir, "ca.pem"), JoinToken: tok.GetToken(),
			DataDir: filepath.Join(t.TempDir(), "agent"), Hostname: "dns-" + string(rune('a'+i)), Resolver: res,
			Connected: func() {
				select {
				case connected <- struct{}{}:
				default:
				}
			}})
		if err != nil {
			t.Fatalf("agent %d: New: %v", i, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		<-connected
		playbookruntest.WaitFor(t, 30*time.Second, "the controller to see the agent connected", func() bool { return c.Fleet.Connected(a.ID()) })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("agent %d: Run: %v", i, err)
		}
	}
	if res.lookups.Load() == 0 {
		t.Fatal("the agent never resolved the controller name")
	}
}

// TestAgentControllerListRefused: a malformed --controller list is refused
// before anything is done, naming the bad entry.
func TestAgentControllerListRefused(t *testing.T) {
	tests := []struct {
		name, list, want string
	}{
		{"empty entry", "127.0.0.1:7443,,127.0.0.1:7444", "is empty"},
		{"no port", "127.0.0.1:7443,ctl.example", `"ctl.example": want HOST:PORT`},
		{"bad port", "127.0.0.1:99999", `port "99999"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "agent")
			_, err := agent.New(context.Background(), agent.Config{Controller: tt.list, DataDir: dir, CAFile: "/nonexistent/ca.pem"})
			if err == nil || !strings.Contains(err.Error(), "--controller") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New with --controller %q: %v, want an error naming --controller and %q", tt.list, err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the data dir was made although the configuration was refused: %v", err)
			}
		})
	}
}
