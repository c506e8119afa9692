package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/e2e"
	"github.com/firebreak-ir/firebreak/test/netlab"
)

const ioTimeout = 3 * time.Second

// TestFleetIsolationWithRealTraffic is issue 3's proof: real agents in
// network namespaces, real nftables, real TCP. Hosts h1 and h2 (group a) are
// isolated by one command; h3 (group b) is not; an attacker namespace holds
// sessions and listeners; a peer namespace is on the allow list.
func TestFleetIsolationWithRealTraffic(t *testing.T) {
	netlab.Require(t)
	lab := netlab.New(t, "ctl", "h1", "h2", "h3", "attacker", "peer")
	b := e2e.Build(t)
	ctlIP := lab.Addr("ctl")
	c := e2e.StartController(t, b, e2e.ControllerOptions{
		Listen: netip.AddrPortFrom(ctlIP, 7443).String(),
		Prefix: []string{"ip", "netns", "exec", lab.Netns("ctl")},
		Args:   []string{"--approval-threshold", "1"},
	})
	tok := c.Token(t, "host", 3)
	agents := map[string]*e2e.Agent{}
	ids := map[string]string{}
	for _, h := range []string{"h1", "h2", "h3"} {
		group := "a"
		if h == "h3" {
			group = "b"
		}
		agents[h] = c.StartAgent(t, e2e.AgentOptions{Name: h, Token: tok, Labels: []string{"group=" + group, "host=" + h},
			Prefix: []string{"ip", "netns", "exec", lab.Netns(h)}, Args: []string{"--log-level", "debug"}})
		ids[h] = agents[h].AgentID(t)
	}
	c.WaitConnected(t, ids["h1"], ids["h2"], ids["h3"])

	echo, reach := echoMesh(lab, "h1", "h2", "h3", "attacker", "peer")
	mustReach := func(from, to string) {
		t.Helper()
		if err := reach(from, to); err != nil {
			t.Fatalf("%s -> %s should work: %v", from, to, err)
		}
	}
	mustNotReach := func(from, to string) {
		t.Helper()
		if err := reach(from, to); err == nil {
			t.Fatalf("%s -> %s should be cut", from, to)
		}
	}

	// 1. Before isolation everything talks both ways.
	for _, h := range []string{"h1", "h2", "h3"} {
		mustReach("attacker", h)
		mustReach(h, "attacker")
	}
	// 2. The attacker holds a session to h1 from before the isolation.
	session, err := lab.DialTCP("attacker", netip.AddrPortFrom(lab.Addr("h1"), echo["h1"].Port()), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if err := netlab.RoundTrip(session, []byte("before"), ioTimeout); err != nil {
		t.Fatal(err)
	}

	// A dry run lists the targets and changes nothing.
	var plan struct {
		Targets []struct {
			AgentID string `json:"agent_id"`
		} `json:"targets"`
		ApprovalRequired bool `json:"approval_required"`
	}
	c.MustJSON(t, &plan, 0, "isolate", "--select", "label.group=a", "--dry-run")
	if len(plan.Targets) != 2 || !plan.ApprovalRequired {
		t.Fatalf("dry run %+v", plan)
	}
	if strings.Contains(lab.NftRuleset("h1"), "firebreak") {
		t.Fatal("the dry run changed the host")
	}

	// h2 is offline at dispatch: it must be isolated when it returns.
	if err := agents["h2"].Stop(); err != nil {
		t.Logf("stopping h2's agent: %v", err)
	}
	allow := lab.Addr("peer").String() + "/32"
	r := c.CLI(t, "isolate", "--select", "label.group=a", "--allow", allow, "--reason", "e2e drill", "--deadline", "2m")
	if r.Exit != 4 {
		t.Fatalf("isolate over 2 hosts with threshold 1: exit %d, want 4 (awaiting approval)\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	runID := strings.TrimSpace(r.Stdout)
	if strings.Contains(lab.NftRuleset("h1"), "firebreak") {
		t.Fatal("a run awaiting approval changed a host")
	}
	// The creator cannot approve their own run.
	if r := c.CLI(t, "approve", runID); r.Exit != 1 || !strings.Contains(r.Stderr, "other than its creator") {
		t.Fatalf("self-approval: exit %d %s", r.Exit, r.Stderr)
	}
	bob := c.DataDir + "/bob.creds"
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)
	agents["h2"].Start(t)
	ar := c.CLIAs(t, bob, "approve", runID, "--comment", "IR lead ok", "--wait", "--json")
	if ar.Exit != 0 {
		t.Fatalf("approve --wait: exit %d\n%s%s", ar.Exit, ar.Stdout, ar.Stderr)
	}
	var run e2e.RunJSON
	if err := json.Unmarshal([]byte(ar.Stdout), &run); err != nil {
		t.Fatal(err)
	}
	if run.Succeeded != 2 {
		t.Fatalf("isolation run %+v", run)
	}
	for _, res := range run.Results {
		var out struct {
			Table     string `json:"table"`
			RuleCount int    `json:"rule_count"`
			Applied   bool   `json:"applied"`
		}
		if err := json.Unmarshal(res.Output, &out); err != nil || out.Table != "inet firebreak" || out.RuleCount == 0 || !out.Applied {
			t.Errorf("isolate output %s: %+v %v", res.Output, out, err)
		}
	}

	// 2 (cont.) The attacker's old session is cut.
	if err := netlab.RoundTrip(session, []byte("after"), ioTimeout); err == nil {
		t.Fatal("the attacker's session survived isolation")
	}
	// 3. New connections either way fail; the controller channel works;
	// the allowed peer is reachable.
	for _, h := range []string{"h1", "h2"} {
		mustNotReach("attacker", h)
		mustNotReach(h, "attacker")
		mustReach(h, "peer")
		mustReach("peer", h)
	}
	var sys e2e.RunJSON
	c.MustJSON(t, &sys, 0, "run", "sysinfo", "--select", "label.group=a", "--wait")
	if sys.Succeeded != 2 {
		t.Fatalf("sysinfo to isolated hosts: %+v", sys)
	}
	// 6. The non-matching host is untouched.
	mustReach("attacker", "h3")
	mustReach("h3", "attacker")
	if strings.Contains(lab.NftRuleset("h3"), "firebreak") {
		t.Fatal("h3 got a firebreak table")
	}
	isolated := map[string]bool{}
	for _, a := range c.Agents(t) {
		isolated[a.ID] = a.Isolated
	}
	if !isolated[ids["h1"]] || !isolated[ids["h2"]] || isolated[ids["h3"]] {
		t.Fatalf("agents list isolated flags %v", isolated)
	}
	// Isolating again changes nothing.
	var again e2e.RunJSON
	c.MustJSON(t, &again, 0, "isolate", "--select", "label.host=h1", "--allow", allow, "--wait")
	var second struct {
		AlreadyIsolated bool `json:"already_isolated"`
	}
	if err := json.Unmarshal(again.Results[0].Output, &second); err != nil || !second.AlreadyIsolated {
		t.Fatalf("second isolation: %s", again.Results[0].Output)
	}

	// 5. An agent restarted while isolated stays isolated, even when the
	// table was removed behind its back.
	agents["h1"].Kill()
	lab.MustRun("h1", "nft", "delete", "table", "inet", "firebreak")
	mustReach("attacker", "h1")
	agents["h1"].Start(t)
	e2e.WaitFor(t, 30*time.Second, "h1's agent to restore the isolation", func() bool {
		return strings.Contains(lab.NftRuleset("h1"), "table inet firebreak")
	})
	mustNotReach("attacker", "h1")
	c.WaitConnected(t, ids["h1"])

	// 4. Unisolate restores everything and leaves nothing behind.
	// It is destructive too, so over the threshold it needs bob again.
	ur := c.CLI(t, "unisolate", "--select", "label.group=a")
	if ur.Exit != 4 {
		t.Fatalf("unisolate: exit %d, want 4 (awaiting approval): %s", ur.Exit, ur.Stderr)
	}
	ar = c.CLIAs(t, bob, "approve", strings.TrimSpace(ur.Stdout), "--wait", "--json")
	var un e2e.RunJSON
	if err := json.Unmarshal([]byte(ar.Stdout), &un); err != nil || ar.Exit != 0 {
		t.Fatalf("approve unisolate: exit %d %v\n%s%s", ar.Exit, err, ar.Stdout, ar.Stderr)
	}
	if un.Succeeded != 2 {
		t.Fatalf("unisolate %+v", un)
	}
	for _, h := range []string{"h1", "h2"} {
		mustReach("attacker", h)
		mustReach(h, "attacker")
		if rs := lab.NftRuleset(h); strings.Contains(rs, "firebreak") {
			t.Fatalf("%s still has firebreak rules:\n%s", h, rs)
		}
	}
	e2e.WaitFor(t, 10*time.Second, "agents list to show h1 not isolated", func() bool {
		for _, a := range c.Agents(t) {
			if a.ID == ids["h1"] {
				return !a.Isolated
			}
		}
		return false
	})
	fmt.Fprintln(testWriter{t}, "isolation proven with real traffic in", lab.ID())
}

// echoMesh starts an echo server on each host and returns them with a
// probe: a TCP connection from one host to another's echo server and a
// round trip on it, with the dial's or the round trip's error.
func echoMesh(lab *netlab.Lab, hosts ...string) (map[string]*netlab.EchoServer, func(from, to string) error) {
	echo := map[string]*netlab.EchoServer{}
	for _, h := range hosts {
		echo[h] = lab.ListenEcho(h, 0)
	}
	return echo, func(from, to string) error {
		conn, err := lab.DialTCP(from, netip.AddrPortFrom(lab.Addr(to), echo[to].Port()), ioTimeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		return netlab.RoundTrip(conn, []byte("ping "+from+"->"+to), ioTimeout)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
