package hostisolate_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
	"github.com/firebreak-ir/firebreak/test/netlab"
)

// ioTimeout only keeps a broken test from hanging: every expectation is an
// answer (data, a reset, a refusal) that arrives at once.
const ioTimeout = 10 * time.Second

const (
	controllerPort = 8443
	hostPort       = 7000 // a service on the host
	attackerPort   = 7001 // a service the host talks to on the attacker
	peerPort       = 7002 // a service on the allowed peer
	hostRawPort    = 7003 // a host service whose sessions the test drives from the host's side
	hostUDPPort    = 7004
)

// realHost is the lab's "host" with both actions running in-process over
// go-plugin gRPC, their netlink sockets opened in the host's namespace.
type realHost struct {
	lab       *netlab.Lab
	isolate   *sdk.Client
	unisolate *sdk.Client
	hostCtx   *pluginv1.HostContext
}

func newRealHost(t *testing.T) *realHost {
	lab := netlab.New(t, "controller", "host", "attacker", "allowed-peer")
	ns, err := os.Open(lab.NetnsPath("host"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	// The in-memory kernel is replaced by the real one of the host's
	// namespace: the netlink socket is created inside it.
	opts := []hostisolate.Option{hostisolate.WithDialer(hostisolate.KernelDialer(int(ns.Fd())))}
	return &realHost{
		lab:       lab,
		isolate:   sdktest.Start(t, hostisolate.NewIsolate(opts...)),
		unisolate: sdktest.Start(t, hostisolate.NewUnisolate(opts...)),
		hostCtx: &pluginv1.HostContext{
			ControllerAddresses: []string{lab.Addr("controller").String()},
			ControllerPort:      controllerPort,
			StateDir:            t.TempDir(),
			Hostname:            "host",
		},
	}
}

func (h *realHost) run(t *testing.T, c *sdk.Client, params any) *sdktest.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := sdktest.Execute(ctx, t, c, &pluginv1.ExecuteRequest{Host: h.hostCtx}, params)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("action failed: %v %s", o.Err, o.Result.GetError())
	}
	return o
}

func (h *realHost) isolated(t *testing.T, params any) hostisolate.IsolateResult {
	t.Helper()
	var res hostisolate.IsolateResult
	h.run(t, h.isolate, params).Output(t, &res)
	return res
}

// session is an established TCP connection from one lab host to another.
func (h *realHost) session(t *testing.T, from, to string, port uint16) *net.TCPConn {
	t.Helper()
	c, err := h.lab.DialTCP(from, netip.AddrPortFrom(h.lab.Addr(to), port), ioTimeout)
	if err != nil {
		t.Fatalf("%s → %s:%d: %v", from, to, port, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := netlab.RoundTrip(c, []byte("hello"), ioTimeout); err != nil {
		t.Fatalf("%s → %s:%d: %v", from, to, port, err)
	}
	return c
}

// reachable connects and exchanges data, returning the first error.
func (h *realHost) reachable(from string, to netip.Addr, port uint16) error {
	c, err := h.lab.DialTCP(from, netip.AddrPortFrom(to, port), ioTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return netlab.RoundTrip(c, []byte("ping"), ioTimeout)
}

func wantReachable(t *testing.T, h *realHost, from string, to netip.Addr, port uint16) {
	t.Helper()
	if err := h.reachable(from, to, port); err != nil {
		t.Errorf("%s → %s port %d: %v, want it reachable", from, to, port, err)
	}
}

// wantRefused checks that a new connection is answered with a reset at
// once (refused), rather than hanging until a timeout.
func wantRefused(t *testing.T, h *realHost, from string, to netip.Addr, port uint16) {
	t.Helper()
	err := h.reachable(from, to, port)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s → %s port %d: %v, want connection refused", from, to, port, err)
	}
}

// wantCut checks that an established session ends with a reset on the next
// exchange, rather than hanging.
func wantCut(t *testing.T, what string, c net.Conn) {
	t.Helper()
	err := netlab.RoundTrip(c, []byte("still there?"), ioTimeout)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: %v, want connection reset", what, err)
	}
}

// policyDrops reads the input chain's policy counter.
func policyDrops(t *testing.T, lab *netlab.Lab) int {
	t.Helper()
	out := lab.MustRun("host", "nft", "list", "chain", "inet", "firebreak", "input")
	m := regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "firebreak: dropped by policy`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no policy counter in\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestRealIsolationInNamespaces(t *testing.T) {
	h := newRealHost(t)
	lab := h.lab
	lab.ListenEcho("controller", controllerPort)
	lab.ListenEcho("host", hostPort)
	lab.ListenEcho("attacker", attackerPort)
	lab.ListenEcho("allowed-peer", peerPort)
	raw := lab.ListenTCP("host", hostRawPort)

	// Another firewall manager's table, which isolation must not touch.
	lab.MustRun("host", "nft", "add", "table", "inet", "other")
	lab.MustRun("host", "nft", "add", "chain", "inet", "other", "audit")
	lab.MustRun("host", "nft", "add", "rule", "inet", "other", "audit", "ip", "saddr", "192.0.2.1", "counter", "accept", "comment", `"kept"`)
	foreign := lab.MustRun("host", "nft", "list", "table", "inet", "other")

	// Before isolation the attacker and the host talk both ways, and some
	// sessions are open when the isolation lands.
	attackerIn := h.session(t, "attacker", "host", hostPort)
	hostOut := h.session(t, "host", "attacker", attackerPort)
	controlChannel := h.session(t, "host", "controller", controllerPort)
	if _, err := lab.DialTCP("attacker", netip.AddrPortFrom(lab.Addr("host"), hostRawPort), ioTimeout); err != nil {
		t.Fatal(err)
	}
	if err := raw.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	hostSide, err := raw.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostSide.Close() })

	params := map[string]any{
		"allow":  []string{lab.Addr("allowed-peer").String(), lab.Addr6("allowed-peer").String()},
		"reason": "attacker on the host",
	}
	res := h.isolated(t, params)
	if !res.Applied || res.AlreadyIsolated || res.RuleCount == 0 {
		t.Fatalf("isolate: %+v", res)
	}
	t.Logf("isolated in %.2f ms with %d rules\n%s", res.ElapsedMS, res.RuleCount, lab.NftRuleset("host"))

	t.Run("existing sessions are cut with resets", func(t *testing.T) {
		wantCut(t, "the attacker writing on its session to the host", attackerIn)
		wantCut(t, "the host writing on its session to the attacker", hostOut)
		// A local process on an inbound session sees the end too.
		if _, err := hostSide.Write([]byte("exfiltrate")); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("host-side write: %v", err)
		}
		_ = hostSide.SetReadDeadline(time.Now().Add(ioTimeout))
		if _, err := hostSide.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the host's side of the attacker's session: %v, want connection reset", err)
		}
	})

	t.Run("the controller's channel stays up", func(t *testing.T) {
		if err := netlab.RoundTrip(controlChannel, []byte("heartbeat"), ioTimeout); err != nil {
			t.Errorf("the existing control channel: %v", err)
		}
		wantReachable(t, h, "host", lab.Addr("controller"), controllerPort)
	})

	t.Run("new connections either way are refused", func(t *testing.T) {
		wantRefused(t, h, "attacker", lab.Addr("host"), hostPort)
		wantRefused(t, h, "host", lab.Addr("attacker"), attackerPort)
		wantRefused(t, h, "attacker", lab.Addr6("host"), hostPort)
		wantRefused(t, h, "host", lab.Addr6("attacker"), attackerPort)
		// The controller's port only answers to the controller.
		wantRefused(t, h, "host", lab.Addr("attacker"), controllerPort)
	})

	t.Run("other traffic is dropped", func(t *testing.T) {
		var udp *net.UDPConn
		if err := lab.Do("host", func() error {
			var err error
			udp, err = net.ListenUDP("udp", &net.UDPAddr{Port: hostUDPPort})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer udp.Close()
		before := policyDrops(t, lab)
		if err := lab.Do("attacker", func() error {
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.Addr("host"), hostUDPPort)))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("beacon"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(ioTimeout)
		for policyDrops(t, lab) == before {
			if time.Now().After(deadline) {
				t.Fatal("the attacker's datagram was not counted as dropped")
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The datagram reached the input hook and was dropped there, so
		// the socket has nothing to read.
		_ = udp.SetReadDeadline(time.Now())
		if n, _, err := udp.ReadFrom(make([]byte, 64)); err == nil {
			t.Errorf("the host received %d bytes of UDP from the attacker", n)
		}
	})

	t.Run("allowed peer is reachable both ways", func(t *testing.T) {
		// Forget the neighbours, so IPv6 must rediscover them through the
		// isolation.
		lab.MustRun("host", "ip", "-6", "neigh", "flush", "all")
		lab.MustRun("allowed-peer", "ip", "-6", "neigh", "flush", "all")
		wantReachable(t, h, "host", lab.Addr("allowed-peer"), peerPort)
		wantReachable(t, h, "allowed-peer", lab.Addr("host"), hostPort)
		wantReachable(t, h, "host", lab.Addr6("allowed-peer"), peerPort)
		wantReachable(t, h, "allowed-peer", lab.Addr6("host"), hostPort)
	})

	t.Run("isolating again changes nothing", func(t *testing.T) {
		again := h.isolated(t, params)
		if !again.AlreadyIsolated || again.Applied || again.RuleDigest != res.RuleDigest {
			t.Errorf("second isolate: %+v", again)
		}
		if again.Stopped == nil || again.Stopped.Reset == 0 || again.Stopped.Dropped == 0 {
			t.Errorf("second isolate reports stopped packets %+v, want resets and drops from the tests above", again.Stopped)
		}
	})

	t.Run("reconcile restores a table deleted behind the plugin's back", func(t *testing.T) {
		lab.MustRun("host", "nft", "delete", "table", "inet", "firebreak")
		wantReachable(t, h, "attacker", lab.Addr("host"), hostPort)
		got := h.isolated(t, map[string]any{"reconcile": true})
		if !got.Reapplied || got.RuleDigest != res.RuleDigest {
			t.Errorf("reconcile: %+v", got)
		}
		wantRefused(t, h, "attacker", lab.Addr("host"), hostPort)
		wantReachable(t, h, "host", lab.Addr("controller"), controllerPort)
	})

	t.Run("the foreign table is untouched while isolated", func(t *testing.T) {
		if got := lab.MustRun("host", "nft", "list", "table", "inet", "other"); got != foreign {
			t.Errorf("table inet other changed:\n%s\nwant\n%s", got, foreign)
		}
	})

	t.Run("unisolate restores everything and removes only its table", func(t *testing.T) {
		var un hostisolate.UnisolateResult
		h.run(t, h.unisolate, map[string]any{"reason": "eradicated"}).Output(t, &un)
		if !un.Removed || un.NotIsolated || !un.RecordRemoved || un.RuleCount != res.RuleCount {
			t.Errorf("unisolate: %+v", un)
		}
		ruleset := lab.NftRuleset("host")
		if strings.Contains(ruleset, "firebreak") {
			t.Errorf("the ruleset still mentions firebreak:\n%s", ruleset)
		}
		if got := lab.MustRun("host", "nft", "list", "table", "inet", "other"); got != foreign {
			t.Errorf("table inet other changed:\n%s\nwant\n%s", got, foreign)
		}
		wantReachable(t, h, "attacker", lab.Addr("host"), hostPort)
		wantReachable(t, h, "host", lab.Addr("attacker"), attackerPort)
		wantReachable(t, h, "attacker", lab.Addr6("host"), hostPort)
		if err := netlab.RoundTrip(controlChannel, []byte("still here"), ioTimeout); err != nil {
			t.Errorf("the control channel after unisolate: %v", err)
		}
		if ok, err := hostisolate.Recorded(h.hostCtx.StateDir); ok || err != nil {
			t.Errorf("Recorded after unisolate: %t %v", ok, err)
		}

		var again hostisolate.UnisolateResult
		h.run(t, h.unisolate, map[string]any{}).Output(t, &again)
		if !again.NotIsolated || again.Removed {
			t.Errorf("second unisolate: %+v", again)
		}
	})
}

// TestRulesetOnTheKernel applies the richest ruleset to a real kernel and
// reads it back: the kernel accepts every expression, chain and priority,
// and holds exactly what the in-memory stand-in holds for the same batch,
// which is what the unit tests check rule by rule.
func TestRulesetOnTheKernel(t *testing.T) {
	lab := netlab.New(t, "host")
	ns, err := os.Open(lab.NetnsPath("host"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	kernel, err := hostisolate.KernelDialer(int(ns.Fd()))()
	if err != nil {
		t.Fatal(err)
	}
	defer kernel.CloseLasting()
	memory, err := memnft.New().Conn()
	if err != nil {
		t.Fatal(err)
	}

	rs, err := hostisolate.BuildRuleset(mustSpec(t, 443, []string{"10.99.0.1", "fd99::1"}, true,
		"10.0.0.0/8", "192.0.2.7:53", "[2001:db8::/32]:22/tcp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*nftables.Conn{kernel, memory} {
		if err := rs.Apply(c, false); err != nil {
			t.Fatal(err)
		}
	}
	kernelChains, kernelRules := liveTable(t, kernel)
	memoryChains, memoryRules := liveTable(t, memory)
	if !mapsEqual(kernelRules, memoryRules) {
		t.Errorf("the kernel holds\n%v\nthe stand-in\n%v", kernelRules, memoryRules)
	}
	for name, k := range kernelChains {
		m := memoryChains[name]
		if m == nil || k.Type != m.Type || *k.Hooknum != *m.Hooknum || *k.Priority != *m.Priority || *k.Policy != *m.Policy {
			t.Errorf("chain %s: kernel %+v, stand-in %+v", name, k, m)
		}
	}
	// Replacing it on the kernel is one batch too.
	if err := rs.Apply(kernel, true); err != nil {
		t.Fatalf("replacing the table: %v", err)
	}
	if !strings.Contains(lab.NftRuleset("host"), "type filter hook forward priority -350; policy drop;") {
		t.Errorf("nft does not list the forward chain:\n%s", lab.NftRuleset("host"))
	}
}
