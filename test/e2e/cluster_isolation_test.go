package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/test/e2e"
	"github.com/firebreak-ir/firebreak/test/netlab"
)

// TestClusterIsolationWithAControllerKilled isolates the lab's namespace
// hosts through a cluster of three controllers, each in a namespace of its
// own on the same port, and kills (SIGKILL) the controller holding the most
// agents the moment the run is created. Every host ends isolated, proven
// with real TCP: the attacker reaches none and none reaches it, while the
// hosts that lost their controller reconnect, through their own isolation
// rules, to a survivor, and a run reaches all of them afterwards.
func TestClusterIsolationWithAControllerKilled(t *testing.T) {
	netlab.Require(t)
	hosts := []string{"h1", "h2", "h3", "h4"}
	lab := netlab.New(t, append([]string{"ctl1", "ctl2", "ctl3", "attacker"}, hosts...)...)
	dsn := pgtest.New(t)
	b := e2e.Build(t)
	evidence := s3Evidence(t)
	root := t.TempDir()
	pkiDir := filepath.Join(root, "pki")
	initCluster(t, b, pkiDir)

	// The database and the S3 server run in the test's own namespace; each
	// controller reaches them through a forwarder in its namespace.
	pgURL, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	s3URL, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatal(err)
	}
	const pgPort, s3Port, ctlPort = 5432, 9000, 7443
	var ctls []*e2e.Controller
	var addrs []string
	for i, name := range []string{"ctl1", "ctl2", "ctl3"} {
		ip := lab.Addr(name)
		forwardFromLab(t, lab, name, pgPort, pgURL.Host)
		forwardFromLab(t, lab, name, s3Port, s3URL.Host)
		ctlDSN := *pgURL
		ctlDSN.Host = netip.AddrPortFrom(ip, pgPort).String()
		addr := netip.AddrPortFrom(ip, ctlPort).String()
		dataDir := filepath.Join(root, name)
		c := &e2e.Controller{Bins: b, DataDir: dataDir, Creds: filepath.Join(pkiDir, "admin.creds")}
		c.Proc = &e2e.Proc{Name: name, LogPath: filepath.Join(root, name+".log"),
			Prefix: []string{"ip", "netns", "exec", lab.Netns(name)},
			Env:    []string{"AWS_ENDPOINT_URL=http://" + netip.AddrPortFrom(ip, s3Port).String()},
			Args: []string{b.Firebreak, "controller", "--data-dir", dataDir, "--pki-dir", pkiDir, "--listen", addr,
				"--store", ctlDSN.String(), "--evidence", evidence, "--lease-ttl", "3s", "--approval-threshold", "10"}}
		c.Start(t)
		t.Cleanup(func() {
			c.Kill()
			if t.Failed() {
				t.Logf("%s log:\n%s", name, c.Log())
			}
		})
		e2e.WaitFor(t, time.Minute, name+" to serve", func() bool {
			bs, err := os.ReadFile(filepath.Join(dataDir, "controller.addr"))
			c.Addr = strings.TrimSpace(string(bs))
			return err == nil && c.Addr != ""
		})
		if c.Addr != addr {
			t.Fatalf("controller %d serves on %s, want %s", i, c.Addr, addr)
		}
		ctls = append(ctls, c)
		addrs = append(addrs, addr)
	}
	cl := &cluster{b: b, pkiDir: pkiDir, ctls: ctls, addrs: addrs}

	plugins := b.PluginSubset(t, "noop", "host-isolate")
	token := ctls[0].Token(t, "host", len(hosts))
	agents := map[string]*e2e.Agent{}
	for _, h := range hosts {
		agents[h] = ctls[0].StartAgent(t, e2e.AgentOptions{Name: h, Token: token, Labels: []string{"host=" + h},
			Controller: strings.Join(addrs, ","), CAFile: filepath.Join(pkiDir, "ca.pem"), PluginDir: plugins,
			Prefix: []string{"ip", "netns", "exec", lab.Netns(h)}})
		agents[h].AgentID(t)
	}
	got := cl.waitAgents(t, ctls[0], ctls, len(hosts))

	_, reach := echoMesh(lab, append([]string{"attacker"}, hosts...)...)
	for _, h := range hosts {
		if err := reach("attacker", h); err != nil {
			t.Fatalf("attacker -> %s before the isolation: %v", h, err)
		}
	}

	// The run goes through ctl1; the busiest other controller dies the
	// moment it exists, with its agents' tasks in flight or not yet sent.
	owner := ctls[0]
	var victim *e2e.Controller
	for _, c := range cl.others(owner) {
		if victim == nil || got[c.Addr].Agents > got[victim.Addr].Agents {
			victim = c
		}
	}
	if got[victim.Addr].Agents == 0 {
		t.Logf("no agent connected to %s or %s: the kill tests the run's survival only", ctls[1].Name, ctls[2].Name)
	}
	var run e2e.RunJSON
	owner.MustJSON(t, &run, 0, "isolate", "--select", "all", "--reason", "cluster drill", "--deadline", "3m")
	t.Logf("killing %s, holding %d agents, as run %s starts", victim.Name, got[victim.Addr].Agents, run.RunID)
	victim.Kill()
	owner.MustJSON(t, &run, 0, "runs", "show", run.RunID, "--wait")
	if run.Status != "succeeded" || run.Succeeded != len(hosts) {
		t.Fatalf("the isolation run after %s was killed: %+v", victim.Name, run)
	}
	for _, h := range hosts {
		if err := reach("attacker", h); err == nil {
			t.Errorf("attacker -> %s works after the isolation", h)
		}
		if err := reach(h, "attacker"); err == nil {
			t.Errorf("%s -> attacker works after the isolation", h)
		}
		if rs := lab.NftRuleset(h); !strings.Contains(rs, "table inet firebreak") {
			t.Errorf("%s has no firebreak table:\n%s", h, rs)
		}
	}
	// The isolated hosts are all connected to the survivors, those that
	// lost their controller included, and answer a run.
	survivors := cl.others(victim)
	cl.waitAgents(t, owner, survivors, len(hosts))
	var after e2e.RunJSON
	owner.MustJSON(t, &after, 0, "run", "noop", "--select", "all", "--wait")
	if after.Status != "succeeded" || after.Succeeded != len(hosts) {
		t.Fatalf("a run to the isolated hosts through the survivors: %+v", after)
	}
	isolated := 0
	for _, a := range owner.Agents(t) {
		if a.Isolated {
			isolated++
		}
	}
	if isolated != len(hosts) {
		t.Errorf("agents list shows %d isolated, want %d", isolated, len(hosts))
	}
	fmt.Fprintln(testWriter{t}, "cluster isolation proven with real traffic in", lab.ID())
}

// forwardFromLab listens on port in host's namespace and forwards each
// connection to target in the test's own namespace, until the test ends.
func forwardFromLab(t *testing.T, lab *netlab.Lab, host string, port uint16, target string) {
	t.Helper()
	ln := lab.ListenTCP(host, port)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", target, 5*time.Second) //nolint:gosec // G704: the test's own PostgreSQL or S3 server
				if err != nil {
					return
				}
				defer out.Close()
				go func() {
					_, _ = io.Copy(out, in)
					_ = out.(*net.TCPConn).CloseWrite()
				}()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
}
