package e2e_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
// Every listener is open at once, so the ports differ.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// healthStatus asks the controller's gRPC health service for its overall
// status, as a load balancer's health check would (no client certificate).
func healthStatus(t *testing.T, c *e2e.Controller) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	return healthStatusCA(t, c, filepath.Join(c.DataDir, "ca.pem"))
}

// healthStatusCA is healthStatus for a controller whose CA is at caFile
// (a cluster's, in its --pki-dir).
func healthStatusCA(t *testing.T, c *e2e.Controller, caFile string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	b, err := os.ReadFile(caFile) //nolint:gosec // G304: the test's own CA file
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	conn, err := grpc.NewClient("passthrough:///"+c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientTLS(pool, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health check of %s: %v", c.Addr, err)
	}
	return resp.GetStatus()
}

// journalTaskStarts counts the start records of each task in an agent's
// journal.
func journalTaskStarts(t *testing.T, a *e2e.Agent) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.DataDir, "journal.jsonl"))
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]int{}
		}
		t.Fatal(err)
	}
	starts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Op   string `json:"op"`
			Task string `json:"task"`
		}
		if line == "" || json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Op == "start" {
			starts[rec.Task]++
		}
	}
	return starts
}

// TestAgentFailsOverBetweenControllers gives one agent three controller
// addresses of which only the middle one serves. The agent finds it and
// runs a task. Then, while a second task runs on the agent, the controller
// is killed (SIGKILL) and a new controller process starts on the same data
// dir (same CA, same database) at the third address: the same agent
// process reconnects there on its own, the task in flight completes, a
// third task runs, and the journal shows each task started once.
func TestAgentFailsOverBetweenControllers(t *testing.T) {
	b := e2e.Build(t)
	ports := freePorts(t, 3)
	addrs := make([]string, 3)
	for i, p := range ports {
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	c := e2e.StartController(t, b, e2e.ControllerOptions{Listen: addrs[1], Args: []string{"--metrics-listen", "127.0.0.1:0"}})
	if got := healthStatus(t, c); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of a controller with its store: %s, want SERVING", got)
	}
	if v, ok := sample(scrape(t, c), "firebreak_store_up"); !ok || v != 1 {
		t.Fatalf("firebreak_store_up = %v (found %v), want 1", v, ok)
	}

	a := c.StartAgent(t, e2e.AgentOptions{Name: "failover", Token: c.Token(t, "host", 1), Controller: strings.Join(addrs, ",")})
	id := a.AgentID(t)
	c.WaitConnected(t, id)
	pid := a.Pid()

	var first e2e.RunJSON
	c.MustJSON(t, &first, 0, "run", "noop", "--select", "all", "--wait")
	if first.Status != "succeeded" || first.Succeeded != 1 {
		t.Fatalf("first run, before the failover: %+v", first)
	}

	// The second task runs for a while; the controller dies under it once
	// the agent has journalled its start (never guessed with a sleep).
	var second struct {
		RunID string `json:"run_id"`
	}
	c.MustJSON(t, &second, 0, "run", "noop", "--select", "all", "--param", "delay=4s", "--param", "message=in flight")
	e2e.WaitFor(t, 30*time.Second, "the agent to start the second task", func() bool { return len(journalTaskStarts(t, a)) == 2 })
	c.Kill()
	c.StartAt(t, addrs[2])
	if c.Addr != addrs[2] {
		t.Fatalf("the new controller serves on %s, want %s", c.Addr, addrs[2])
	}
	c.WaitConnected(t, id)
	if !a.Running() || a.Pid() != pid {
		t.Fatal("the agent process did not survive the failover: it must reconnect on its own")
	}

	var inFlight e2e.RunJSON
	c.MustJSON(t, &inFlight, 0, "runs", "show", second.RunID, "--wait")
	if inFlight.Status != "succeeded" || inFlight.Succeeded != 1 {
		t.Fatalf("the run in flight when the controller died: %+v", inFlight)
	}
	var third e2e.RunJSON
	c.MustJSON(t, &third, 0, "run", "noop", "--select", "all", "--wait")
	if third.Status != "succeeded" || third.Succeeded != 1 {
		t.Fatalf("third run, after the failover: %+v", third)
	}

	// Each task started exactly once, the one in flight included.
	starts := journalTaskStarts(t, a)
	if len(starts) != 3 {
		t.Errorf("the journal holds %d tasks, want 3: %v", len(starts), starts)
	}
	for task, n := range starts {
		if n != 1 {
			t.Errorf("task %s started %d times, want once", task, n)
		}
	}
	// The agent logged its reconnects with the address and the delay, and
	// connected to the new controller.
	log := a.Log()
	if !strings.Contains(log, "reconnecting") || !strings.Contains(log, `"next":"`) || !strings.Contains(log, `"in":"`) {
		t.Errorf("the agent's log has no reconnect line with the next address and the delay:\n%s", log)
	}
	if !strings.Contains(log, `"msg":"connected","controller":"`+addrs[2]+`"`) {
		t.Errorf("the agent's log does not show it connected to %s:\n%s", addrs[2], log)
	}
	if got := healthStatus(t, c); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of the new controller: %s, want SERVING", got)
	}
}
