// Package netlab builds small networks of real hosts on one machine for
// tests: Linux network namespaces joined to a bridge, with real addresses,
// real routing and real nftables, removed when the test ends. It is the
// testing face of internal/netns.
//
//	netlab.Require(t) // skips unless root with ip and nft
//	lab := netlab.New(t, "controller", "host", "attacker")
//	srv := lab.ListenEcho("controller", 8443)
//	conn, err := lab.DialTCP("host", netip.AddrPortFrom(lab.Addr("controller"), srv.Port()), 5*time.Second)
//	err = netlab.RoundTrip(conn, []byte("ping"), 5*time.Second)
//	out := lab.MustRun("host", "nft", "list", "ruleset")
//
// Processes run in a host with Run, Command or Start (through `ip netns
// exec`); Go code runs there with Do, which locks its goroutine to an OS
// thread in the namespace: sockets made in Do stay in the namespace and can
// be used from any goroutine afterwards. Labs left behind by a crashed test
// run are removed by the next New.
package netlab

import (
	"testing"

	"github.com/firebreak-ir/firebreak/internal/netns"
)

// Prefix starts the name of every namespace a test lab creates.
const Prefix = netns.KindTest + "-"

// Interface is the name of each host's interface to the lab's switch.
const Interface = netns.Interface

// Require skips the test, with the reason, under -short (unit tests only),
// and unless it runs as root, the ip and nft commands exist and
// `ip netns add` works.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("netlab: -short runs unit tests only; network-namespace tests run in the full suite (make test)")
	}
	if reason := netns.Probe(); reason != "" {
		t.Skip("netlab: " + reason)
	}
}

// Lab is a set of hosts on one bridge, removed when the test ends.
type Lab struct {
	*netns.Lab
	t testing.TB
}

// New builds a lab with one host per name (lower-case letters, digits and
// dashes, starting with a letter; "switch" is taken). Hosts get addresses
// in name order: the first .1, the second .2 and so on. It skips the test
// like Require when the machine cannot run a lab, and registers the lab's
// removal with t.Cleanup, which runs even when the test fails.
func New(t testing.TB, names ...string) *Lab {
	t.Helper()
	Require(t)
	nl, err := netns.New(netns.KindTest, names...)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	l := &Lab{Lab: nl, t: t}
	t.Cleanup(func() {
		if err := nl.Close(); err != nil {
			t.Errorf("netlab: %v", err)
		}
	})
	return l
}

// RemoveStale removes labs whose owning process is gone; New calls it.
func RemoveStale(t testing.TB) {
	t.Helper()
	netns.RemoveStale(t.Logf)
}

// MustRun runs a command in a host's namespace, failing the test on error.
func (l *Lab) MustRun(host, name string, args ...string) string {
	l.t.Helper()
	out, err := l.Run(host, name, args...)
	if err != nil {
		l.t.Fatalf("netlab: %v: %s", err, out)
	}
	return out
}

// NftRuleset is `nft list ruleset` in a host's namespace. It fails the test
// if nft fails.
func (l *Lab) NftRuleset(host string) string {
	l.t.Helper()
	return l.MustRun(host, "nft", "list", "ruleset")
}
