package e2e_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"database/sql"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite"

	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// rogue is a controller impostor: it holds a server certificate from the
// real CA (an attacker on the network with a stolen CA key, or a
// compromised controller host) and pushes whatever tasks the test gives it.
type rogue struct {
	agentv1.UnimplementedAgentServiceServer
	addr    string
	agentID string
	tasks   []*agentv1.SignedTask

	mu      sync.Mutex
	results map[string]*agentv1.TaskResult
}

func startRogue(t *testing.T, controllerDir, agentID string, tasks []*agentv1.SignedTask) *rogue {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(controllerDir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	cert, err := ca.IssueServer(key.Public(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{addr: lis.Addr().String(), agentID: agentID, tasks: tasks, results: map[string]*agentv1.TaskResult{}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS(ca, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}))))
	agentv1.RegisterAgentServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r
}

func (r *rogue) Connect(stream agentv1.AgentService_ConnectServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Welcome{Welcome: &agentv1.Welcome{
		AgentId: r.agentID, ServerTime: timestamppb.Now(), HeartbeatSeconds: 30}}}); err != nil {
		return err
	}
	for _, st := range r.tasks {
		if err := stream.Send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Task{Task: st}}); err != nil {
			return err
		}
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if res := m.GetTaskResult(); res != nil {
			r.mu.Lock()
			r.results[res.GetTaskId()] = res
			r.mu.Unlock()
		}
	}
}

func (r *rogue) result(id string) *agentv1.TaskResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.results[id]
}

func journalStarts(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"op":"start"`)
}

// TestAgentRefusesForgedReplayedAndMisaddressedTasks drives a real agent
// from an impostor controller: every task that is unsigned, signed by
// another key, addressed to another agent, expired, or a replay of a task
// the agent already ran is refused and reported, and none of them runs.
func TestAgentRefusesForgedReplayedAndMisaddressedTasks(t *testing.T) {
	c, agents, ids := fleet(t, 1)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
	if run.Succeeded != 1 {
		t.Fatalf("setup run %+v", run)
	}
	// Capture the real signed task, as an eavesdropper could.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(c.DataDir, "firebreak.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := db.QueryRow(`SELECT signed_task FROM tasks WHERE run_id = ?`, run.RunID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	db.Close()
	captured := &agentv1.SignedTask{}
	if err := proto.Unmarshal(raw, captured); err != nil {
		t.Fatal(err)
	}
	capturedSpec := &agentv1.TaskSpec{}
	_ = proto.Unmarshal(captured.GetSpec(), capturedSpec)

	realKey, err := tasksign.LoadOrCreateKey(filepath.Join(c.DataDir, "task-signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	forger := tasksign.NewSigner(otherPriv)
	now := time.Now()
	spec := func(id, agent string, expires time.Time) *agentv1.TaskSpec {
		return &agentv1.TaskSpec{TaskId: id, RunId: "run-rogue", AgentId: agent, Action: "noop", ParamsJson: []byte(`{}`),
			IssuedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(expires)}
	}
	sign := func(s *tasksign.Signer, sp *agentv1.TaskSpec) *agentv1.SignedTask {
		st, err := s.Sign(sp)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	unsigned := sign(realKey, spec("tsk-unsigned", ids[0], now.Add(time.Hour)))
	unsigned.Signature = nil
	tests := []struct {
		id   string
		task *agentv1.SignedTask
		want string
	}{
		{"tsk-forged", sign(forger, spec("tsk-forged", ids[0], now.Add(time.Hour))), "signature does not verify"},
		{"tsk-unsigned", unsigned, "not signed"},
		{"tsk-other-agent", sign(realKey, spec("tsk-other-agent", "agt-someoneelse00000", now.Add(time.Hour))), "addressed to agent"},
		{"tsk-expired", sign(realKey, spec("tsk-expired", ids[0], now.Add(-time.Minute))), "expired"},
		{capturedSpec.GetTaskId(), captured, "replay"},
	}
	var tasks []*agentv1.SignedTask
	for _, tt := range tests {
		tasks = append(tasks, tt.task)
	}
	before := journalStarts(t, agents[0].DataDir)
	if err := agents[0].Stop(); err != nil {
		t.Logf("agent stop: %v", err)
	}
	rg := startRogue(t, c.DataDir, ids[0], tasks)
	impostor := c.StartAgent(t, e2e.AgentOptions{Name: "host0-again", DataDir: agents[0].DataDir, Controller: rg.addr})
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			e2e.WaitFor(t, 30*time.Second, "the agent's answer to "+tt.id, func() bool { return rg.result(tt.id) != nil })
			res := rg.result(tt.id)
			if res.GetStatus() != agentv1.TaskStatus_TASK_STATUS_REFUSED || !strings.Contains(res.GetError(), tt.want) {
				t.Fatalf("result %v %q; want refused with %q", res.GetStatus(), res.GetError(), tt.want)
			}
		})
	}
	impostor.Stop()
	if after := journalStarts(t, agents[0].DataDir); after != before {
		t.Fatalf("the journal has %d task starts after the attack, %d before: a refused task ran", after, before)
	}
}

// TestEnrollmentAndPluginRefusals covers a reused token, an expired token
// and a plugin binary changed after the manifest was written.
func TestEnrollmentAndPluginRefusals(t *testing.T) {
	c, _, _ := fleet(t, 0)
	once := c.Token(t, "host", 1)
	first := c.StartAgent(t, e2e.AgentOptions{Name: "first", Token: once})
	c.WaitConnected(t, first.AgentID(t))
	reused := c.StartAgent(t, e2e.AgentOptions{Name: "reused", Token: once})
	e2e.WaitFor(t, 20*time.Second, "the agent with a used-up token to exit", func() bool { return !reused.Running() })
	if !strings.Contains(reused.Log(), "no uses left") {
		t.Fatalf("reused token log:\n%s", reused.Log())
	}

	short := c.Token(t, "host", 5, "--ttl", "1s")
	time.Sleep(1500 * time.Millisecond)
	late := c.StartAgent(t, e2e.AgentOptions{Name: "late", Token: short})
	e2e.WaitFor(t, 20*time.Second, "the agent with an expired token to exit", func() bool { return !late.Running() })
	if !strings.Contains(late.Log(), "expired") {
		t.Fatalf("expired token log:\n%s", late.Log())
	}
	if n := len(c.Agents(t)); n != 1 {
		t.Fatalf("%d agents enrolled, want 1", n)
	}

	// A plugin binary changed after the manifest was written is refused at
	// its next launch, and not loaded at the agent's next start.
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(c.Bins.PluginDir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(c.Bins.PluginDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tok := c.Token(t, "host", 1)
	victim := c.StartAgent(t, e2e.AgentOptions{Name: "victim", Token: tok, PluginDir: dir})
	id := victim.AgentID(t)
	c.WaitConnected(t, id)
	f, err := os.OpenFile(filepath.Join(dir, "firebreak-plugin-noop"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\x00tampered")
	f.Close()
	r := c.CLI(t, "run", "noop", "--select", "id="+id, "--wait", "--json")
	if r.Exit != 3 || !strings.Contains(r.Stdout, "no longer matches the manifest") {
		t.Fatalf("tampered plugin run: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if err := victim.Stop(); err != nil {
		t.Logf("agent stop: %v", err)
	}
	victim.Start(t)
	e2e.WaitFor(t, 20*time.Second, "the restarted agent to refuse the tampered plugin", func() bool {
		return strings.Contains(victim.Log(), "SHA-256 mismatch")
	})
	c.WaitConnected(t, id)
	r = c.CLI(t, "run", "noop", "--select", "id="+id)
	if r.Exit != 2 || !strings.Contains(r.Stderr, `unknown action "noop"`) {
		t.Fatalf("after restart: exit %d %s", r.Exit, r.Stderr)
	}
}
