package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

func TestMain(m *testing.M) {
	// The tests' temporary directories stay out of /tmp, as under make
	// test: collection tests copy /tmp's executables, and the upload
	// tests give their agent a private /tmp that would hide its data dir.
	restore := e2e.TempOutsideTmp()
	// pgtest.Main runs the tests and stops the PostgreSQL some of them start.
	code := pgtest.Main(m)
	e2e.Cleanup()
	restore()
	os.Exit(code)
}

// fleet starts a controller and n host agents and waits for them.
func fleet(t *testing.T, n int, extra ...string) (*e2e.Controller, []*e2e.Agent, []string) {
	t.Helper()
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: extra})
	tok := c.Token(t, "host", n, "--label", "env=e2e")
	var agents []*e2e.Agent
	var ids []string
	for i := 0; i < n; i++ {
		a := c.StartAgent(t, e2e.AgentOptions{Name: fmt.Sprintf("host%d", i), Token: tok, Labels: []string{fmt.Sprintf("n=%d", i)}})
		agents = append(agents, a)
		ids = append(ids, a.AgentID(t))
	}
	c.WaitConnected(t, ids...)
	return c, agents, ids
}

func TestSysinfoAcrossThreeAgents(t *testing.T) {
	c, agents, ids := fleet(t, 3)
	list := c.Agents(t)
	if len(list) != 3 {
		t.Fatalf("%d agents listed, want 3", len(list))
	}
	for _, a := range list {
		if a.Role != "host" || !a.Connected || a.Labels["env"] != "e2e" || len(a.Plugins) == 0 {
			t.Errorf("agent %+v", a)
		}
	}
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "sysinfo", "--select", "all", "--wait")
	if run.Targets != 3 || run.Succeeded != 3 || run.Status != "succeeded" {
		t.Fatalf("run %+v", run)
	}
	host, _ := os.Hostname()
	seen := map[string]bool{}
	for _, r := range run.Results {
		var facts struct {
			Hostname string `json:"hostname"`
			Kernel   string `json:"kernel"`
			CPUs     int    `json:"cpus"`
			BootID   string `json:"boot_id"`
		}
		if err := json.Unmarshal(r.Output, &facts); err != nil {
			t.Fatal(err)
		}
		if facts.Hostname != host || facts.Kernel == "" || facts.CPUs < 1 || facts.BootID == "" {
			t.Errorf("facts from %s: %+v", r.AgentID, facts)
		}
		seen[r.AgentID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("no result from %s", id)
		}
	}
	// The sysinfo plugin process is still up (plugins stop after two idle
	// minutes), its gRPC socket in the agent's own directory, not in /tmp.
	socks, err := os.ReadDir(filepath.Join(agents[0].DataDir, "plugin-sockets"))
	if err != nil {
		t.Fatal(err)
	}
	var sockets []string
	for _, s := range socks {
		if s.Type()&os.ModeSocket != 0 {
			sockets = append(sockets, s.Name())
		}
	}
	if len(sockets) == 0 {
		t.Errorf("no plugin socket in the agent's plugin-sockets directory (%d entries)", len(socks))
	}
	// Selectors narrow the fleet.
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "label.n=1", "--wait")
	if run.Targets != 1 || run.Results[0].AgentID != ids[1] {
		t.Fatalf("label selector ran on %+v", run.Results)
	}
	// The audit log holds the runs and verifies.
	var chk struct {
		OK      bool `json:"ok"`
		Records int  `json:"records"`
	}
	c.MustJSON(t, &chk, 0, "audit", "verify")
	if !chk.OK || chk.Records < 5 {
		t.Fatalf("audit %+v", chk)
	}
}

func TestBadInputRefused(t *testing.T) {
	c, _, _ := fleet(t, 1)
	tests := []struct {
		name     string
		args     []string
		wantExit int
		want     string
	}{
		{"bad selector", []string{"run", "noop", "--select", "role=hots"}, 2, `unknown role "hots"`},
		{"unknown action", []string{"run", "nosuch", "--select", "all"}, 2, `unknown action "nosuch"`},
		{"unknown param", []string{"run", "noop", "--select", "all", "--param", "bogus=1"}, 2, `has no parameter "bogus"`},
		{"bad param type", []string{"run", "noop", "--select", "all", "--param", "delay=soon"}, 2, "want a duration"},
		{"no match", []string{"run", "noop", "--select", "hostname=nowhere"}, 1, "matches no enrolled agent"},
		{"bad max-errors", []string{"run", "noop", "--select", "all", "--max-errors", "lots"}, 2, "max-errors"},
		{"no selector", []string{"run", "noop"}, 2, "select"},
		{"unknown run", []string{"runs", "show", "run-0000000000000000"}, 1, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.CLI(t, tt.args...)
			if r.Exit != tt.wantExit || !strings.Contains(r.Stderr, tt.want) {
				t.Fatalf("exit %d stderr %q; want exit %d and %q", r.Exit, r.Stderr, tt.wantExit, tt.want)
			}
		})
	}
	// A wrong credential: a file of another controller's CA.
	other := e2e.StartController(t, c.Bins, e2e.ControllerOptions{})
	r := c.CLIAs(t, other.Creds, "agents", "list")
	if r.Exit != 1 || !strings.Contains(r.Stderr, "unreachable") && !strings.Contains(r.Stderr, "certificate") {
		t.Fatalf("foreign credential: exit %d %q", r.Exit, r.Stderr)
	}
	// Nothing above changed the fleet or crashed the controller.
	if !c.Running() || len(c.Agents(t)) != 1 {
		t.Fatal("the controller did not survive bad input")
	}
}

func TestControllerRestartDuringRun(t *testing.T) {
	c, agents, ids := fleet(t, 3)
	var started struct {
		RunID string `json:"run_id"`
	}
	c.MustJSON(t, &started, 0, "run", "noop", "--select", "all", "--param", "delay=6s", "--param", "message=once")
	// Wait until every agent has journalled the task's start (it is
	// running there), then take the controller down while they run. A
	// restart before dispatch would test nothing, so it is never guessed
	// with a sleep.
	journalOps := func(a *e2e.Agent) (starts, finishes int) {
		b, err := os.ReadFile(filepath.Join(a.DataDir, "journal.jsonl"))
		if err != nil {
			return 0, 0
		}
		return strings.Count(string(b), `"op":"start"`), strings.Count(string(b), `"op":"finish"`)
	}
	e2e.WaitFor(t, 30*time.Second, "every agent to start the task", func() bool {
		for _, a := range agents {
			if s, _ := journalOps(a); s == 0 {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		if _, f := journalOps(a); f != 0 {
			t.Fatalf("agent %s finished its 6 s task before the restart: the test would not restart mid-run", a.Name)
		}
	}
	c.Restart(t)
	c.WaitConnected(t, ids...)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "runs", "show", started.RunID, "--wait")
	if run.Succeeded != 3 {
		t.Fatalf("after the restart: %+v", run)
	}
	// Each agent ran the task exactly once: one start in its journal.
	for _, a := range agents {
		b, err := os.ReadFile(filepath.Join(a.DataDir, "journal.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		starts := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"op":"start"`) {
				starts++
			}
		}
		if starts != 1 {
			t.Errorf("agent %s journal has %d task starts, want 1:\n%s", a.Name, starts, b)
		}
	}
}

func TestOfflineAgentPicksUpTaskWhenItReturns(t *testing.T) {
	c, agents, ids := fleet(t, 2)
	if err := agents[1].Stop(); err != nil {
		t.Logf("agent stop: %v", err)
	}
	e2e.WaitFor(t, 20*time.Second, "agent 1 to show offline", func() bool {
		for _, a := range c.Agents(t) {
			if a.ID == ids[1] {
				return !a.Connected
			}
		}
		return false
	})
	var started struct {
		RunID   string `json:"run_id"`
		Targets int    `json:"targets"`
	}
	c.MustJSON(t, &started, 0, "run", "noop", "--select", "all", "--deadline", "2m")
	if started.Targets != 2 {
		t.Fatalf("targets %d", started.Targets)
	}
	// The online agent finishes; the offline one's task waits.
	e2e.WaitFor(t, 20*time.Second, "the online agent's result", func() bool {
		var run e2e.RunJSON
		c.MustJSON(t, &run, 0, "runs", "show", started.RunID)
		return run.Succeeded == 1
	})
	agents[1].Start(t)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "runs", "show", started.RunID, "--wait")
	if run.Succeeded != 2 {
		t.Fatalf("run %+v", run)
	}

	// Past the deadline, a task whose agent stayed away is offline.
	if err := agents[1].Stop(); err != nil {
		t.Logf("agent stop: %v", err)
	}
	e2e.WaitFor(t, 20*time.Second, "agent 1 offline again", func() bool {
		for _, a := range c.Agents(t) {
			if a.ID == ids[1] {
				return !a.Connected
			}
		}
		return false
	})
	r := c.CLI(t, "run", "noop", "--select", "all", "--deadline", "2s", "--wait", "--json")
	if r.Exit != 3 {
		t.Fatalf("exit %d, want 3 (a target did not succeed): %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.Offline != 1 || run.Succeeded != 1 {
		t.Fatalf("run %+v", run)
	}
}

func TestMaxErrorsCancelsTheRest(t *testing.T) {
	c, _, _ := fleet(t, 3)
	r := c.CLI(t, "run", "noop", "--select", "all", "--param", "fail=true", "--max-concurrency", "1", "--max-errors", "0", "--wait", "--json")
	if r.Exit != 3 {
		t.Fatalf("exit %d, want 3: %s %s", r.Exit, r.Stdout, r.Stderr)
	}
	var run e2e.RunJSON
	if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.Failed != 1 || run.Cancelled != 2 {
		t.Fatalf("run %+v", run)
	}
	for _, res := range run.Results {
		switch res.Status {
		case "failed":
			if !strings.Contains(res.Error, "asked to fail") {
				t.Errorf("failure %q", res.Error)
			}
		case "cancelled":
			if !strings.Contains(res.Error, "max-errors") {
				t.Errorf("cancellation %q", res.Error)
			}
		default:
			t.Errorf("unexpected status %q", res.Status)
		}
	}
}
