package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/firebreak-ir/firebreak/internal/pgserver"
	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// clusterAgents is how many agents the cluster fixture spreads over its
// three controllers.
const clusterAgents = 30

// clusterLeases are the leases every controller of the fixture competes
// for (no SQS queue is configured, so no poller).
var clusterLeases = []string{"playbook-executor", "run-resumer", "terminated-sweep"}

// clusterPlaybook is one noop step on the agents labelled pb=yes.
const clusterPlaybook = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: cluster-noop
  version: 1
  description: One harmless step, run by whichever controller holds the playbook executor's lease.
steps:
  - id: touch
    phase: analyze
    action: noop
    targets: {selector: "label.pb=yes"}
    params: {message: "after the failover"}
`

// cluster is three controller processes on one PostgreSQL store, one S3
// bucket and one --pki-dir, and agents given all three addresses.
type cluster struct {
	b      *e2e.Bins
	pkiDir string
	ctls   []*e2e.Controller
	// addrs are the controllers' fixed listen addresses, in ctls' order.
	addrs  []string
	agents []*e2e.Agent
	// pg is the fixture's own PostgreSQL, which a subtest restarts.
	pg *pgserver.Server
}

// startCluster runs `controller init`, starts three controllers on a
// throwaway PostgreSQL of the test's own (each with its own data dir and
// port, a 3 s lease TTL) and clusterAgents agents started with
// `--controller A,B,C`, and waits until every agent is connected
// somewhere. The agents carry only the noop plugin, all the fixture runs.
// It skips without PostgreSQL.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	pg, dsn := pgtest.Dedicated(t)
	b := e2e.Build(t)
	evidence := s3Evidence(t)
	root := t.TempDir()
	cl := &cluster{b: b, pkiDir: filepath.Join(root, "pki"), pg: pg}
	plugins := b.PluginSubset(t, "noop")
	initCluster(t, b, cl.pkiDir)
	pbDir := filepath.Join(root, "playbooks")
	if err := os.MkdirAll(pbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pbDir, "cluster-noop.yaml"), []byte(clusterPlaybook), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, p := range freePorts(t, 3) {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		name := "controller-" + string(rune('a'+i))
		c := startClusterController(t, b, name, filepath.Join(root, name), cl.pkiDir, "--listen", addr, "--store", dsn,
			"--evidence", evidence, "--lease-ttl", "3s", "--playbook-dir", pbDir)
		if c.Addr != addr {
			t.Fatalf("%s serves on %s, want %s", name, c.Addr, addr)
		}
		cl.ctls = append(cl.ctls, c)
		cl.addrs = append(cl.addrs, addr)
	}
	token := cl.ctls[0].Token(t, "host", clusterAgents)
	for i := range clusterAgents {
		cl.agents = append(cl.agents, cl.ctls[0].StartAgent(t, e2e.AgentOptions{Name: fmt.Sprintf("agent-%d", i), Token: token,
			Controller: strings.Join(cl.addrs, ","), CAFile: filepath.Join(cl.pkiDir, "ca.pem"), PluginDir: plugins}))
	}
	// The agent processes loading and hashing their plugins at once take
	// a while on a small shared machine: wait longer than AgentID does.
	e2e.WaitFor(t, 3*time.Minute, "every agent to enroll", func() bool {
		for _, a := range cl.agents {
			if _, err := os.Stat(filepath.Join(a.DataDir, "identity.json")); err != nil {
				return false
			}
		}
		return true
	})
	cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
	return cl
}

// list runs `controllers list --json` through c.
func (cl *cluster) list(t *testing.T, c *e2e.Controller) []controllerJSON {
	t.Helper()
	var out []controllerJSON
	c.MustJSON(t, &out, 0, "controllers", "list")
	return out
}

// byAddr indexes a listing by address.
func byAddr(cs []controllerJSON) map[string]controllerJSON {
	out := map[string]controllerJSON{}
	for _, c := range cs {
		out[c.Address] = c
	}
	return out
}

// waitAgents waits until the streams of the controllers in among, as
// listed through via, sum to n, and returns that listing.
func (cl *cluster) waitAgents(t *testing.T, via *e2e.Controller, among []*e2e.Controller, n int) map[string]controllerJSON {
	t.Helper()
	var got map[string]controllerJSON
	e2e.WaitFor(t, 90*time.Second, fmt.Sprintf("%d agent streams on %d controllers", n, len(among)), func() bool {
		got = byAddr(cl.list(t, via))
		sum := 0
		for _, c := range among {
			sum += got[c.Addr].Agents
		}
		return sum == n
	})
	// Each controller knows where the others' agents are from their
	// presence messages (or its next routing sweep); a run planned through
	// it before then would not target them.
	for _, c := range among {
		e2e.WaitFor(t, 30*time.Second, fmt.Sprintf("%s to list the %d agents connected", c.Name, n), func() bool {
			var agents []struct {
				Connected bool `json:"connected"`
			}
			c.MustJSON(t, &agents, 0, "agents", "list")
			connected := 0
			for _, a := range agents {
				if a.Connected {
					connected++
				}
			}
			return connected >= n
		})
	}
	return got
}

// waitLeases waits until, as listed through via, every lease is held by
// exactly one controller, none of them not, and returns each lease's
// holder. Leases are taken one by one, so after a disruption they may lie
// with different controllers: each singleton runs once either way.
func (cl *cluster) waitLeases(t *testing.T, via *e2e.Controller, not string) map[string]*e2e.Controller {
	t.Helper()
	var holders map[string]*e2e.Controller
	e2e.WaitFor(t, 60*time.Second, "controllers other than "+not+" to hold every lease, each once", func() bool {
		holders = map[string]*e2e.Controller{}
		for _, c := range cl.list(t, via) {
			for _, lease := range c.Leases {
				if c.Address == not || holders[lease] != nil || !slices.Contains(clusterLeases, lease) {
					return false
				}
				holders[lease] = cl.at(c.Address)
			}
		}
		return len(holders) == len(clusterLeases)
	})
	return holders
}

// leasesOf names the leases c holds among holders.
func leasesOf(holders map[string]*e2e.Controller, c *e2e.Controller) []string {
	var out []string
	for _, lease := range clusterLeases {
		if holders[lease] == c {
			out = append(out, lease)
		}
	}
	return out
}

// at returns the controller listening at addr.
func (cl *cluster) at(addr string) *e2e.Controller {
	for _, c := range cl.ctls {
		if c.Addr == addr {
			return c
		}
	}
	return nil
}

// others returns the controllers other than the given ones.
func (cl *cluster) others(not ...*e2e.Controller) []*e2e.Controller {
	var out []*e2e.Controller
	for _, c := range cl.ctls {
		if !slices.Contains(not, c) {
			out = append(out, c)
		}
	}
	return out
}

// restart starts killed controllers again, each at its address
// (addrs[i] for cs[i]), and waits until every controller lists the three.
func (cl *cluster) restart(t *testing.T, cs []*e2e.Controller, addrs []string) {
	t.Helper()
	for i, c := range cs {
		c.StartAt(t, addrs[i])
	}
	e2e.WaitFor(t, 60*time.Second, "the three controllers to list each other", func() bool {
		for _, via := range cl.ctls {
			if len(byAddr(cl.list(t, via))) != 3 {
				return false
			}
		}
		return true
	})
}

// checkJournals fails unless every agent's journal shows each task it
// ever received started exactly once, and returns how many tasks each
// journalled.
func (cl *cluster) checkJournals(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, a := range cl.agents {
		starts := journalTaskStarts(t, a)
		out[a.Name] = len(starts)
		for task, n := range starts {
			if n != 1 {
				t.Errorf("%s started task %s %d times, want once", a.Name, task, n)
			}
		}
	}
	return out
}

// checkOneMore fails unless each agent journalled exactly one task more
// than before.
func (cl *cluster) checkOneMore(t *testing.T, before map[string]int) {
	t.Helper()
	after := cl.checkJournals(t)
	for _, a := range cl.agents {
		if after[a.Name] != before[a.Name]+1 {
			t.Errorf("%s journalled %d tasks, want %d (one more for the run)", a.Name, after[a.Name], before[a.Name]+1)
		}
	}
}

// startRun creates a noop run of every agent through c, each task taking
// delay, and returns its id without waiting.
func startRun(t *testing.T, c *e2e.Controller, delay string) string {
	t.Helper()
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--param", "delay="+delay)
	if run.RunID == "" {
		t.Fatalf("run through %s: no run id", c.Name)
	}
	return run.RunID
}

// waitRunEnd follows a run through c until it ends and returns it.
func waitRunEnd(t *testing.T, c *e2e.Controller, runID string) e2e.RunJSON {
	t.Helper()
	var run e2e.RunJSON
	e2e.WaitFor(t, 2*time.Minute, "run "+runID+" to end, seen through "+c.Name, func() bool {
		r := c.CLI(t, "runs", "show", runID, "--json")
		if r.Exit != 0 && r.Exit != 1 {
			return false
		}
		run = e2e.RunJSON{}
		if json.Unmarshal([]byte(r.Stdout), &run) != nil {
			return false
		}
		return run.Status != "running" && run.Status != "awaiting_approval" && run.Status != ""
	})
	return run
}

// TestClusterOnPostgres runs three controller processes on one real
// PostgreSQL with agents spread over them, and kills, stops and resumes
// controllers in turn. A run is owned by the controller it was created
// through; its tasks reach agents held by the others through the routing
// between controllers, and a run whose owner died is adopted by another.
func TestClusterOnPostgres(t *testing.T) {
	cl := startCluster(t)

	t.Run("every controller lists the three, takes the admin credential, and the agents spread", func(t *testing.T) {
		for _, via := range cl.ctls {
			var who struct {
				Name string `json:"name"`
				Role string `json:"role"`
			}
			via.MustJSON(t, &who, 0, "whoami")
			if who.Name != "admin" || who.Role != "admin" {
				t.Errorf("%s: whoami %+v", via.Name, who)
			}
			got := byAddr(cl.list(t, via))
			for _, addr := range cl.addrs {
				if got[addr].ID == "" {
					t.Errorf("%s does not list the controller at %s: %+v", via.Name, addr, got)
				}
			}
			if len(got) != 3 {
				t.Errorf("%s lists %d controllers, want 3: %+v", via.Name, len(got), got)
			}
		}
		got := cl.waitAgents(t, cl.ctls[1], cl.ctls, clusterAgents)
		holding := 0
		for _, c := range got {
			if c.Agents > 0 {
				holding++
			}
		}
		if holding < 2 {
			t.Errorf("the %d agents all connected to one controller: %+v", clusterAgents, got)
		}
	})

	t.Run("a run through one controller reaches the agents the others hold", func(t *testing.T) {
		got := cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
		// Through the controller that holds the fewest agents, so most
		// tasks go to the other two.
		via := cl.ctls[0]
		for _, c := range cl.ctls {
			if got[c.Addr].Agents < got[via.Addr].Agents {
				via = c
			}
		}
		before := cl.checkJournals(t)
		var run e2e.RunJSON
		via.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
		if run.Status != "succeeded" || run.Targets != clusterAgents || run.Succeeded != clusterAgents || len(run.Results) != clusterAgents {
			t.Fatalf("the run through %s (holding %d of the %d agents): %+v", via.Name, got[via.Addr].Agents, clusterAgents, run)
		}
		cl.checkOneMore(t, before)
	})

	t.Run("kill -9 of a controller holding agents during a 5 s run: the run completes, each task started once", func(t *testing.T) {
		got := cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
		owner := cl.ctls[0]
		var victim *e2e.Controller
		for _, c := range cl.others(owner) {
			if victim == nil || got[c.Addr].Agents > got[victim.Addr].Agents {
				victim = c
			}
		}
		before := cl.checkJournals(t)
		id := startRun(t, owner, "5s")
		time.Sleep(time.Second)
		victimAddr := victim.Addr
		t.Logf("killing %s, holding %d agents, during run %s owned by %s", victim.Name, got[victimAddr].Agents, id, owner.Name)
		victim.Kill()
		var run e2e.RunJSON
		owner.MustJSON(t, &run, 0, "runs", "show", id, "--wait")
		if run.Status != "succeeded" || run.Succeeded != clusterAgents {
			t.Fatalf("the run after %s was killed: %+v", victim.Name, run)
		}
		cl.checkOneMore(t, before)
		cl.restart(t, []*e2e.Controller{victim}, []string{victimAddr})
	})

	t.Run("kill -9 of a run's owner mid-run: another controller adopts the run and completes it", func(t *testing.T) {
		cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
		owner := cl.ctls[1]
		before := cl.checkJournals(t)
		id := startRun(t, owner, "5s")
		time.Sleep(time.Second)
		ownerAddr := owner.Addr
		t.Logf("killing %s, the owner of run %s", owner.Name, id)
		owner.Kill()
		run := waitRunEnd(t, cl.others(owner)[0], id)
		if run.Status != "succeeded" || run.Succeeded != clusterAgents {
			t.Fatalf("the run after its owner %s was killed: %+v", owner.Name, run)
		}
		cl.checkOneMore(t, before)
		cl.restart(t, []*e2e.Controller{owner}, []string{ownerAddr})
	})

	t.Run("kill -9 of the busiest controller: its agents reconnect to the others", func(t *testing.T) {
		got := byAddr(cl.list(t, cl.ctls[0]))
		var dead *e2e.Controller
		for _, c := range cl.ctls {
			if dead == nil || got[c.Addr].Agents > got[dead.Addr].Agents {
				dead = c
			}
		}
		deadAddr := dead.Addr
		t.Logf("killing %s, holding %d agents", dead.Name, got[deadAddr].Agents)
		dead.Kill()
		survivors := cl.others(dead)
		after := cl.waitAgents(t, survivors[0], survivors, clusterAgents)

		// A second kill -9 sends every agent to the last controller; a run
		// through it reaches all of them.
		second := survivors[0]
		if after[survivors[1].Addr].Agents < after[second.Addr].Agents {
			second = survivors[1]
		}
		last := cl.others(dead, second)[0]
		secondAddr := second.Addr
		second.Kill()
		cl.waitAgents(t, last, []*e2e.Controller{last}, clusterAgents)

		before := cl.checkJournals(t)
		var run e2e.RunJSON
		last.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
		if run.Status != "succeeded" || run.Targets != clusterAgents || run.Succeeded != clusterAgents {
			t.Fatalf("the run through %s after two failovers: %+v", last.Name, run)
		}
		cl.checkOneMore(t, before)
		cl.restart(t, []*e2e.Controller{dead, second}, []string{deadAddr, secondAddr})
	})

	t.Run("PostgreSQL restarted mid-run: the controllers reconnect, the run completes, each task started once", func(t *testing.T) {
		cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
		owner := cl.ctls[2]
		before := cl.checkJournals(t)
		id := startRun(t, owner, "3s")
		// The database goes down while every agent runs its task, so the
		// results arrive while it is down or coming back.
		e2e.WaitFor(t, time.Minute, "every agent to start the run's task", func() bool {
			for _, a := range cl.agents {
				if len(journalTaskStarts(t, a)) != before[a.Name]+1 {
					return false
				}
			}
			return true
		})
		t.Logf("restarting PostgreSQL (immediate shutdown) during run %s owned by %s", id, owner.Name)
		if err := cl.pg.Restart(); err != nil {
			t.Fatalf("restarting PostgreSQL: %v", err)
		}
		run := waitRunEnd(t, owner, id)
		if run.Status != "succeeded" || run.Succeeded != clusterAgents {
			t.Fatalf("the run across the database restart: %+v", run)
		}
		// Which of the paths that keep a result taken in carried some
		// across the restart (see docs/operators.md).
		for _, c := range cl.ctls {
			t.Logf("%s: %d batches kept while the store refused them, %d sweeps routed held results again", c.Name,
				strings.Count(c.Log(), `"msg":"task changes persisted again"`),
				strings.Count(c.Log(), `"msg":"results that waited for their owner were routed again"`))
		}
		cl.checkOneMore(t, before)
		// Every controller serves again: healthy, listing the three, and a
		// run through each reaches every agent.
		for _, c := range cl.ctls {
			e2e.WaitFor(t, time.Minute, c.Name+" to report SERVING again", func() bool {
				return healthStatusCA(t, c, filepath.Join(cl.pkiDir, "ca.pem")) == healthpb.HealthCheckResponse_SERVING
			})
		}
		cl.waitAgents(t, cl.ctls[0], cl.ctls, clusterAgents)
		for _, c := range cl.ctls {
			before := cl.checkJournals(t)
			var run e2e.RunJSON
			c.MustJSON(t, &run, 0, "run", "noop", "--select", "all", "--wait")
			if run.Status != "succeeded" || run.Succeeded != clusterAgents {
				t.Fatalf("a run through %s after the database restart: %+v", c.Name, run)
			}
			cl.checkOneMore(t, before)
		}
	})

	t.Run("kill -9 of the lease holder: another takes the leases and runs a playbook", func(t *testing.T) {
		holders := cl.waitLeases(t, cl.ctls[0], "")
		holder := holders["playbook-executor"]
		holderAddr := holder.Addr
		t.Logf("killing the lease holder %s, holding %v", holder.Name, leasesOf(holders, holder))
		holder.Kill()
		next := cl.waitLeases(t, cl.others(holder)[0], holderAddr)["playbook-executor"]
		// The playbook's step runs on an agent of the new holder's own.
		a := next.StartAgent(t, e2e.AgentOptions{Name: "playbook-agent", Token: next.Token(t, "host", 1), Labels: []string{"pb=yes"},
			CAFile: filepath.Join(cl.pkiDir, "ca.pem")})
		e2e.WaitFor(t, 2*time.Minute, "the playbook agent to enroll", func() bool {
			_, err := os.Stat(filepath.Join(a.DataDir, "identity.json"))
			return err == nil
		})
		// The agent knows only next, so connected means connected to next.
		// (Counting next's streams would race the dead holder's agents,
		// which are still arriving.)
		next.WaitConnected(t, a.AgentID(t))
		var run incidentRun
		next.MustJSON(t, &run, 0, "playbook", "run", "cluster-noop", "--wait")
		if run.Status != "succeeded" || len(run.Steps) != 1 || run.Steps[0].Status != "succeeded" {
			t.Fatalf("the playbook run through %s after the failover: %+v", next.Name, run)
		}
		cl.restart(t, []*e2e.Controller{holder}, []string{holderAddr})
	})

	t.Run("a stale leader stopped past its TTL loses its leases and writes nothing under them", func(t *testing.T) {
		holders := cl.waitLeases(t, cl.ctls[0], "")
		holder := holders["playbook-executor"]
		held := leasesOf(holders, holder)
		via := cl.others(holder)[0]
		pid := holder.Pid()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		defer resume()
		next := cl.waitLeases(t, via, holder.Addr)
		before := len(holder.Log())
		resume()
		for _, lease := range held {
			e2e.WaitFor(t, 30*time.Second, holder.Name+" to log that it lost the "+lease+" lease", func() bool {
				for _, line := range strings.Split(holder.Log(), "\n") {
					if strings.Contains(line, `"msg":"lost the lease; its job is cancelled"`) && strings.Contains(line, `"lease":"`+lease+`"`) {
						return true
					}
				}
				return false
			})
		}
		// Back, it heartbeats again, yet the leases stay with their new
		// holders: the listing through the resumed controller itself shows
		// them there only, twice a TTL apart.
		for range 2 {
			got := cl.waitLeases(t, holder, holder.Addr)
			for _, lease := range clusterLeases {
				if got[lease] != next[lease] {
					t.Fatalf("the %s lease moved from %s to %s", lease, next[lease].Name, got[lease].Name)
				}
			}
			time.Sleep(3 * time.Second)
		}
		if got := byAddr(cl.list(t, via)); got[holder.Addr].ID == "" || len(got[holder.Addr].Leases) != 0 {
			t.Fatalf("the resumed controller's entry: %+v", got[holder.Addr])
		}
		// Since SIGCONT it took no lease again; a write it tried under a
		// lost lease could only have been refused (ErrFenced).
		if since := holder.Log()[before:]; strings.Contains(since, "took the lease") {
			t.Errorf("the resumed controller took a lease again:\n%s", since)
		}
	})

	t.Run("after concurrent writes through all three, audit verify passes through each", func(t *testing.T) {
		const each = 4
		var wg sync.WaitGroup
		results := make([]e2e.Result, len(cl.ctls)*each)
		for i, c := range cl.ctls {
			for j := range each {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i*each+j] = c.CLI(t, "token", "create", "--role", "host", "--uses", "1", "--json")
				}()
			}
		}
		wg.Wait()
		for i, r := range results {
			if r.Exit != 0 {
				t.Errorf("token create %d through %s: exit %d\n%s%s", i, cl.ctls[i/each].Name, r.Exit, r.Stdout, r.Stderr)
			}
		}
		for _, c := range cl.ctls {
			c.MustJSON(t, nil, 0, "audit", "verify")
		}
	})

	t.Run("a revoke through one controller closes the stream another holds", func(t *testing.T) {
		a := cl.agents[len(cl.agents)-1]
		id := a.AgentID(t)
		// The agent's own log says which controller holds its stream.
		holder := ""
		for _, line := range strings.Split(a.Log(), "\n") {
			if _, rest, ok := strings.Cut(line, `"msg":"connected","controller":"`); ok {
				holder, _, _ = strings.Cut(rest, `"`)
			}
		}
		var via *e2e.Controller
		for _, c := range cl.ctls {
			if c.Addr != holder {
				via = c
				break
			}
		}
		if holder == "" || via == nil {
			t.Fatalf("no controller other than the agent's (%q) to revoke it through", holder)
		}
		sum := func() int {
			n := 0
			for _, c := range cl.list(t, via) {
				n += c.Agents
			}
			return n
		}
		before := sum()
		t.Logf("revoking %s, held by %s, through %s", id, holder, via.Name)
		via.MustJSON(t, nil, 0, "agents", "revoke", id, "--reason", "cluster test: host compromised")
		e2e.WaitFor(t, 30*time.Second, "the holder to close the revoked agent's stream", func() bool {
			for _, ag := range via.Agents(t) {
				if ag.ID == id && ag.Connected {
					return false
				}
			}
			return sum() == before-1
		})
		e2e.WaitFor(t, 30*time.Second, "the agent to be told it is revoked", func() bool {
			return strings.Contains(a.Log(), "revoked")
		})
	})

	t.Run("kill -9 of the controller receiving an evidence upload: another resumes it from the parts in S3", func(t *testing.T) {
		// One agent with every plugin, reaching each controller through a
		// proxy that counts what it uploads; the controller whose proxy
		// passes 20 MiB (two 8 MiB parts committed to S3, checkpointed in
		// PostgreSQL) is killed, and the agent fails over to another.
		prefix := privateTmp(t, 40<<20)
		var proxies []*cutProxy
		var addrs []string
		for _, c := range cl.ctls {
			p := startCutProxy(t, c.Addr, 20<<20, false)
			proxies = append(proxies, p)
			addrs = append(addrs, p.lis.Addr().String())
		}
		a := cl.ctls[0].StartAgent(t, e2e.AgentOptions{Name: "uploader", Token: cl.ctls[0].Token(t, "host", 1),
			Controller: strings.Join(addrs, ","), CAFile: filepath.Join(cl.pkiDir, "ca.pem"), Labels: []string{"upload=yes"},
			Prefix: prefix, Args: []string{"--bandwidth", "4MiB/s"}})
		id := a.AgentID(t)
		defer func() {
			a.Kill()
			cl.ctls[0].MustJSON(t, nil, 0, "agents", "revoke", id, "--reason", "cluster test: the uploader is done")
		}()
		e2e.WaitFor(t, time.Minute, "the uploader's stream", func() bool {
			for _, ag := range cl.ctls[0].Agents(t) {
				if ag.ID == id && ag.Connected {
					return true
				}
			}
			return false
		})
		var started struct {
			RunID string `json:"run_id"`
		}
		cl.ctls[0].MustJSON(t, &started, 0, "collect", "--select", "label.upload=yes", "--artifact", "tmp_executables",
			"--param", "max_bytes=67108864")
		var dead *e2e.Controller
		e2e.WaitFor(t, 2*time.Minute, "the upload to pass 20 MiB through one controller", func() bool {
			for i, p := range proxies {
				if p.up.Load() > p.threshold {
					dead = cl.ctls[i]
					return true
				}
			}
			return false
		})
		deadAddr := dead.Addr
		t.Logf("killing %s, receiving the upload of run %s", dead.Name, started.RunID)
		dead.Kill()
		survivors := cl.others(dead)
		via := survivors[0]

		var run e2e.RunJSON
		via.MustJSON(t, &run, 0, "runs", "show", started.RunID, "--wait")
		evID, out := onlyResult(t, run)
		it := evidenceItem(t, via, evID)
		if it.Resumes < 1 || it.Backend != "s3" || it.SHA256 != out.Archive.SHA256 || it.Size != out.Archive.Bytes || it.Bundle == nil || !it.Bundle.Valid {
			t.Fatalf("stored %s (%d bytes, %d resumes, bundle %+v); the collector streamed %s (%d bytes)", it.SHA256, it.Size, it.Resumes, it.Bundle,
				out.Archive.SHA256, out.Archive.Bytes)
		}
		// A surviving controller resumed from the parts the dead one
		// committed: it read the checkpoint from the shared store.
		var resumedAt int64
		var resumer string
		for _, c := range survivors {
			for _, line := range strings.Split(c.Log(), "\n") {
				var rec struct {
					Msg       string `json:"msg"`
					Committed int64  `json:"committed"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "evidence upload resumed" && rec.Committed > resumedAt {
					resumedAt, resumer = rec.Committed, c.Name
				}
			}
		}
		if resumedAt < 8<<20 {
			t.Errorf("the upload resumed at offset %d; want at least one 8 MiB part committed before the kill", resumedAt)
		}
		for _, c := range survivors {
			c.MustJSON(t, nil, 0, "evidence", "verify", evID)
		}
		client := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(os.Getenv("AWS_ENDPOINT_URL")), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
		mps, err := client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String("ir-evidence")})
		if err != nil {
			t.Fatal(err)
		}
		if len(mps.Uploads) != 0 {
			t.Errorf("staging left in the bucket: %d multipart uploads", len(mps.Uploads))
		}
		t.Logf("stored %d bytes after %d resume(s); %s resumed at %d", it.Size, it.Resumes, resumer, resumedAt)
		cl.restart(t, []*e2e.Controller{dead}, []string{deadAddr})
	})
}
