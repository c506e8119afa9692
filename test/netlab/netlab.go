// Package netlab builds small networks of real hosts on one machine for
// tests: Linux network namespaces joined to a bridge, with real addresses,
// real routing and real nftables, removed when the test ends.
//
// A lab has one "switch" namespace holding a bridge, and one namespace per
// named host, each joined to the bridge by a veth pair whose host end is
// eth0 and carries an IPv4 address in the lab's /24 and an IPv6 address in
// its /64. Nothing is created in the machine's own network namespace, so a
// lab never touches the machine's real network, and labs of parallel test
// processes do not see each other.
//
//	netlab.Require(t) // skips unless root with ip and nft
//	lab := netlab.New(t, "controller", "host", "attacker")
//	srv := lab.ListenEcho("controller", 8443)
//	conn, err := lab.DialTCP("host", netip.AddrPortFrom(lab.Addr("controller"), srv.Port()), 5*time.Second)
//	err = netlab.RoundTrip(conn, []byte("ping"), 5*time.Second)
//	out := lab.MustRun("host", "nft", "list", "ruleset")
//
// Processes run in a host with [Lab.Run], [Lab.Command] or [Lab.Start]
// (through `ip netns exec`); Go code runs there with [Lab.Do], which locks
// its goroutine to an OS thread in the namespace: sockets made in Do stay
// in the namespace and can be used from any goroutine afterwards.
//
// Names: a lab has a random id; its namespaces are netlab-<id>-switch and
// netlab-<id>-<host>. While a lab lives, its process holds a lock on
// /run/netlab/<id>.lock. [New] first removes labs whose lock is no longer
// held, which are what a crashed or killed test run left behind.
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every namespace a lab creates.
const Prefix = "netlab-"

// Interface is the name of each host's interface to the lab's switch.
const Interface = "eth0"

// lockDir holds one lock file per live lab. /run is a tmpfs, like
// /run/netns, so neither survives a reboot.
const lockDir = "/run/netlab"

// commandTimeout bounds every ip and nft command the lab runs itself, so a
// wedged command fails the test instead of hanging it.
const commandTimeout = 30 * time.Second

var (
	requireOnce   sync.Once
	requireReason string
)

// Require skips the test, with the reason, unless it runs as root, the ip
// and nft commands exist and `ip netns add` works.
func Require(t testing.TB) {
	t.Helper()
	requireOnce.Do(func() { requireReason = probe() })
	if requireReason != "" {
		t.Skip("netlab: " + requireReason)
	}
}

func probe() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces (CAP_SYS_ADMIN and CAP_NET_ADMIN); CI runs these tests as root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("needs the %s command (install iproute2 and nftables): %v", tool, err)
		}
	}
	name := fmt.Sprintf("%sprobe-%d", Prefix, os.Getpid())
	if out, err := run(context.Background(), "ip", "netns", "add", name); err != nil {
		return fmt.Sprintf("`ip netns add` does not work here: %v: %s", err, out)
	}
	if out, err := run(context.Background(), "ip", "netns", "del", name); err != nil {
		return fmt.Sprintf("`ip netns del` does not work here: %v: %s", err, out)
	}
	return ""
}

// Lab is a set of hosts on one bridge. Its methods are safe for concurrent
// use.
type Lab struct {
	t      testing.TB
	id     string
	subnet netip.Prefix
	sub6   netip.Prefix
	hosts  []*host
	lock   *os.File

	mu    sync.Mutex
	procs []*exec.Cmd
	echos []*EchoServer
}

type host struct {
	name  string
	netns string
	addr  netip.Addr
	addr6 netip.Addr
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// New builds a lab with one host per name (lower-case letters, digits and
// dashes, starting with a letter; "switch" is taken). Hosts get addresses
// in name order: the first .1, the second .2 and so on. It skips the test
// like Require when the machine cannot run a lab, and registers the lab's
// removal with t.Cleanup, which runs even when the test fails.
func New(t testing.TB, names ...string) *Lab {
	t.Helper()
	Require(t)
	if len(names) == 0 || len(names) > 200 {
		t.Fatalf("netlab: want 1 to 200 hosts, got %d", len(names))
	}
	for i, n := range names {
		if !hostName.MatchString(n) || n == "switch" {
			t.Fatalf("netlab: host name %q: use lower-case letters, digits and dashes, starting with a letter, not \"switch\"", n)
		}
		if slices.Contains(names[:i], n) {
			t.Fatalf("netlab: host %q is named twice", n)
		}
	}
	RemoveStale(t)

	l := &Lab{t: t}
	if err := l.claim(); err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(l.remove)

	l.must("ip", "netns", "add", l.netns("switch"))
	l.must("ip", "-n", l.netns("switch"), "link", "set", "lo", "up")
	l.must("ip", "-n", l.netns("switch"), "link", "add", "br0", "type", "bridge", "stp_state", "0")
	l.must("ip", "-n", l.netns("switch"), "link", "set", "br0", "up")
	for i, name := range names {
		h := &host{
			name:  name,
			netns: l.netns(name),
			addr:  nth(l.subnet, i+1),
			addr6: nth(l.sub6, i+1),
		}
		l.hosts = append(l.hosts, h)
		port := fmt.Sprintf("p%d", i)
		l.must("ip", "netns", "add", h.netns)
		l.must("ip", "-n", h.netns, "link", "set", "lo", "up")
		// Both ends are made directly in their namespaces, so no interface
		// ever appears in the machine's own namespace.
		l.must("ip", "link", "add", Interface, "netns", h.netns, "type", "veth", "peer", "name", port, "netns", l.netns("switch"))
		l.must("ip", "-n", l.netns("switch"), "link", "set", port, "master", "br0", "up")
		l.must("ip", "-n", h.netns, "addr", "add", netip.PrefixFrom(h.addr, l.subnet.Bits()).String(), "dev", Interface)
		// nodad: the address is usable at once instead of after duplicate
		// address detection's second or two.
		l.must("ip", "-n", h.netns, "-6", "addr", "add", netip.PrefixFrom(h.addr6, l.sub6.Bits()).String(), "dev", Interface, "nodad")
		l.must("ip", "-n", h.netns, "link", "set", Interface, "up")
	}
	return l
}

// claim picks a free lab id and takes its lock. The lock file is created
// under a temporary name, locked, then renamed into place, so RemoveStale
// in another process never sees it unlocked.
func (l *Lab) claim() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return err
	}
	for range 10 {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		id := hex.EncodeToString(b)
		final := filepath.Join(lockDir, id+".lock")
		if _, err := os.Stat(final); err == nil {
			continue
		}
		f, err := os.CreateTemp(lockDir, id+".creating.*")
		if err != nil {
			return err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if err := os.Rename(f.Name(), final); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return err
		}
		l.id, l.lock = id, f
		// 10.99.<n>.0/24 and fd99:0:0:<n>::/64, <n> from the id: labs do
		// not need distinct subnets (their namespaces never meet), but
		// distinct ones make a packet capture unambiguous.
		n := b[0]%250 + 1
		l.subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, n, 0}), 24)
		l.sub6 = netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x99, 7: n}), 64)
		return nil
	}
	return errors.New("no free lab id after 10 tries")
}

// RemoveStale removes the namespaces and lock files of labs whose owning
// process is gone, after killing any process still running in them (they
// were started by that dead test run). Labs of live processes are left
// alone: their lock is held. New calls it; call it directly to clean up by
// hand.
func RemoveStale(t testing.TB) {
	t.Helper()
	locks, _ := filepath.Glob(filepath.Join(lockDir, "*.lock"))
	live := map[string]bool{}
	for _, path := range locks {
		id := strings.TrimSuffix(filepath.Base(path), ".lock")
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			live[id] = true
			_ = f.Close()
			continue
		}
		removeNamespaces(t, id)
		_ = os.Remove(path)
		_ = f.Close()
	}
	// Namespaces whose lab has no lock file at all: the lock is made before
	// any namespace, so their owner is gone.
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		id, ok := labID(e.Name())
		if ok && !live[id] {
			if _, err := os.Stat(filepath.Join(lockDir, id+".lock")); errors.Is(err, os.ErrNotExist) {
				removeNamespaces(t, id)
			}
		}
	}
}

// labID extracts the lab id from a namespace name netlab-<id>-<host>.
func labID(netns string) (string, bool) {
	rest, ok := strings.CutPrefix(netns, Prefix)
	if !ok {
		return "", false
	}
	id, _, ok := strings.Cut(rest, "-")
	if !ok || len(id) != 6 {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", false
	}
	return id, true
}

func removeNamespaces(t testing.TB, id string) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if got, ok := labID(e.Name()); ok && got == id {
			killAll(e.Name())
			if out, err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
				t.Logf("netlab: removing stale namespace %s: %v: %s", e.Name(), err, out)
			} else {
				t.Logf("netlab: removed stale namespace %s", e.Name())
			}
		}
	}
}

// killAll kills the processes still running in a namespace.
func killAll(netns string) {
	out, err := run(context.Background(), "ip", "netns", "pids", netns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// remove tears the lab down: its processes, echo servers, namespaces and
// lock, in that order.
func (l *Lab) remove() {
	l.mu.Lock()
	procs, echos := l.procs, l.echos
	l.procs, l.echos = nil, nil
	l.mu.Unlock()
	for _, c := range procs {
		if c.ProcessState == nil && c.Process != nil {
			_ = c.Process.Kill()
		}
	}
	for _, e := range echos {
		e.Close()
	}
	for _, h := range l.hosts {
		killAll(h.netns)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if id, ok := labID(e.Name()); ok && id == l.id {
			if out, err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
				l.t.Errorf("netlab: removing namespace %s: %v: %s", e.Name(), err, out)
			}
		}
	}
	_ = os.Remove(filepath.Join(lockDir, l.id+".lock"))
	_ = l.lock.Close()
}

// ID is the lab's random id.
func (l *Lab) ID() string { return l.id }

// Subnet is the lab's IPv4 network, a /24.
func (l *Lab) Subnet() netip.Prefix { return l.subnet }

// Subnet6 is the lab's IPv6 network, a /64.
func (l *Lab) Subnet6() netip.Prefix { return l.sub6 }

// Hosts lists the hosts' names in the order given to New.
func (l *Lab) Hosts() []string {
	out := make([]string, len(l.hosts))
	for i, h := range l.hosts {
		out[i] = h.name
	}
	return out
}

// Addr is a host's IPv4 address.
func (l *Lab) Addr(name string) netip.Addr { return l.host(name).addr }

// Addr6 is a host's IPv6 address.
func (l *Lab) Addr6(name string) netip.Addr { return l.host(name).addr6 }

// Netns is the name of a host's network namespace, for `ip netns exec`
// and `ip -n`.
func (l *Lab) Netns(name string) string { return l.host(name).netns }

// NetnsPath is the file of a host's network namespace, for setns(2) or
// nftables.WithNetNSFd.
func (l *Lab) NetnsPath(name string) string { return filepath.Join("/run/netns", l.host(name).netns) }

func (l *Lab) netns(name string) string { return Prefix + l.id + "-" + name }

func (l *Lab) host(name string) *host {
	for _, h := range l.hosts {
		if h.name == name {
			return h
		}
	}
	l.t.Fatalf("netlab: no host %q in the lab (hosts: %s)", name, strings.Join(l.Hosts(), ", "))
	return nil
}

// Command returns a command that runs name with args in a host's
// namespace, through `ip netns exec` (which also gives the command its own
// /sys for the namespace).
func (l *Lab) Command(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.host(host).netns, name}, args...)...)
}

// Run runs a command in a host's namespace and returns its combined
// output. It gives up after 30 seconds.
func (l *Lab) Run(host, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := l.Command(ctx, host, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w", name, strings.Join(args, " "), host, err)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (l *Lab) MustRun(host, name string, args ...string) string {
	l.t.Helper()
	out, err := l.Run(host, name, args...)
	if err != nil {
		l.t.Fatalf("netlab: %v: %s", err, out)
	}
	return out
}

// Start starts a long-running command in a host's namespace. The lab kills
// it when the test ends, if it is still running; the caller may Wait for
// it earlier.
func (l *Lab) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	l.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return nil
}

// NftRuleset is `nft list ruleset` in a host's namespace. It fails the test
// if nft fails.
func (l *Lab) NftRuleset(host string) string {
	l.t.Helper()
	return l.MustRun(host, "nft", "list", "ruleset")
}

// Do runs fn with its goroutine locked to an OS thread that has entered a
// host's network namespace. Sockets fn creates belong to that namespace for
// good and may be used from any goroutine once Do returns. Goroutines fn
// starts run elsewhere, in the process's own namespace. The thread is
// discarded afterwards rather than returned to the scheduler.
func (l *Lab) Do(host string, fn func() error) error {
	path := l.NetnsPath(host)
	done := make(chan error, 1)
	go func() {
		// No UnlockOSThread: when this goroutine ends the runtime ends the
		// thread, so no other goroutine ever runs in the namespace by
		// accident.
		runtime.LockOSThread()
		ns, err := os.Open(path)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("entering namespace %s: %w", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// nth is the n-th address of a network.
func nth(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().AsSlice()
	for i := len(b) - 1; n > 0 && i >= 0; i-- {
		sum := int(b[i]) + n
		b[i] = byte(sum)
		n = sum >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// must runs a lab-building command, failing the test on error.
func (l *Lab) must(name string, args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if out, err := run(ctx, name, args...); err != nil {
		l.t.Fatalf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
