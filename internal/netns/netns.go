// Package netns builds small networks of real hosts on one machine: Linux
// network namespaces joined to a bridge, with real addresses, real routing
// and real nftables. The lab (`firebreak lab demo` as root) and the tests
// (through test/netlab) use it.
//
// A lab has one "switch" namespace holding a bridge, and one namespace per
// named host, each joined to the bridge by a veth pair whose host end is
// eth0 and carries an IPv4 address in the lab's /24 and an IPv6 address in
// its /64. Nothing is created in the machine's own network namespace, so a
// lab never touches the machine's real network, and labs of parallel test
// processes do not see each other.
//
//	if reason := netns.Probe(); reason != "" { … }
//	lab, err := netns.New("netlab", "controller", "host", "attacker")
//	defer lab.Close()
//	out, err := lab.Run("host", "nft", "list", "ruleset")
//
// Processes run in a host with [Lab.Run], [Lab.Command] or [Lab.Start]
// (through `ip netns exec`); Go code runs there with [Lab.Do], which locks
// its goroutine to an OS thread in the namespace: sockets made in Do stay
// in the namespace and can be used from any goroutine afterwards.
//
// Names: a lab has a kind (a short prefix such as "netlab" for tests or
// "fblab" for the lab) and a random id; its namespaces are
// <kind>-<id>-switch and <kind>-<id>-<host>. While a lab lives, its process
// holds a lock on /run/netlab/<id>.lock. [New] first removes labs whose
// lock is no longer held, which are what a crashed or killed run left
// behind.
package netns

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
	"time"

	"golang.org/x/sys/unix"
)

// Kinds of lab: the prefix of their namespaces' names.
const (
	// KindTest is the kind of test labs.
	KindTest = "netlab"
	// KindLab is the kind of `firebreak lab` networks.
	KindLab = "fblab"
)

// Interface is the name of each host's interface to the lab's switch.
const Interface = "eth0"

// lockDir holds one lock file per live lab. /run is a tmpfs, like
// /run/netns, so neither survives a reboot.
const lockDir = "/run/netlab"

// commandTimeout bounds every ip and nft command the lab runs itself, so a
// wedged command fails instead of hanging.
const commandTimeout = 30 * time.Second

// Probe says why this machine cannot build labs, or "" when it can: root,
// the ip and nft commands, and a working `ip netns add`.
func Probe() string {
	probeOnce.Do(func() { probeReason = probe() })
	return probeReason
}

var (
	probeOnce   sync.Once
	probeReason string
)

func probe() string {
	if os.Geteuid() != 0 {
		return "needs root to create network namespaces (CAP_SYS_ADMIN and CAP_NET_ADMIN); CI runs these tests as root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("needs the %s command (install iproute2 and nftables): %v", tool, err)
		}
	}
	name := fmt.Sprintf("%s-probe-%d", KindTest, os.Getpid())
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
	kind   string
	id     string
	subnet netip.Prefix
	sub6   netip.Prefix
	hosts  []*host
	lock   *os.File

	mu      sync.Mutex
	procs   []*exec.Cmd
	closers []func()
	closed  bool
}

type host struct {
	name  string
	netns string
	addr  netip.Addr
	addr6 netip.Addr
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// New builds a lab of the given kind with one host per name (lower-case
// letters, digits and dashes, starting with a letter; "switch" is taken).
// Hosts get addresses in name order: the first .1, the second .2 and so on.
// Close removes it; a lab left behind by a dead process is removed by the
// next New.
func New(kind string, names ...string) (*Lab, error) {
	if reason := Probe(); reason != "" {
		return nil, errors.New(reason)
	}
	if kind != KindTest && kind != KindLab {
		return nil, fmt.Errorf("netns: unknown lab kind %q", kind)
	}
	if len(names) == 0 || len(names) > 200 {
		return nil, fmt.Errorf("netns: want 1 to 200 hosts, got %d", len(names))
	}
	for i, n := range names {
		if !hostName.MatchString(n) || n == "switch" {
			return nil, fmt.Errorf("netns: host name %q: use lower-case letters, digits and dashes, starting with a letter, not \"switch\"", n)
		}
		if slices.Contains(names[:i], n) {
			return nil, fmt.Errorf("netns: host %q is named twice", n)
		}
	}
	RemoveStale(nil)

	l := &Lab{kind: kind}
	if err := l.claim(); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := l.build(names); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(names []string) error {
	sw := l.netns("switch")
	steps := [][]string{
		{"ip", "netns", "add", sw},
		{"ip", "-n", sw, "link", "set", "lo", "up"},
		{"ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0"},
		{"ip", "-n", sw, "link", "set", "br0", "up"},
	}
	for i, name := range names {
		h := &host{
			name:  name,
			netns: l.netns(name),
			addr:  nth(l.subnet, i+1),
			addr6: nth(l.sub6, i+1),
		}
		l.hosts = append(l.hosts, h)
		port := fmt.Sprintf("p%d", i)
		steps = append(steps,
			[]string{"ip", "netns", "add", h.netns},
			[]string{"ip", "-n", h.netns, "link", "set", "lo", "up"},
			// Both ends are made directly in their namespaces, so no
			// interface ever appears in the machine's own namespace.
			[]string{"ip", "link", "add", Interface, "netns", h.netns, "type", "veth", "peer", "name", port, "netns", sw},
			[]string{"ip", "-n", sw, "link", "set", port, "master", "br0", "up"},
			[]string{"ip", "-n", h.netns, "addr", "add", netip.PrefixFrom(h.addr, l.subnet.Bits()).String(), "dev", Interface},
			// nodad: the address is usable at once instead of after
			// duplicate address detection's second or two.
			[]string{"ip", "-n", h.netns, "-6", "addr", "add", netip.PrefixFrom(h.addr6, l.sub6.Bits()).String(), "dev", Interface, "nodad"},
			[]string{"ip", "-n", h.netns, "link", "set", Interface, "up"},
		)
	}
	for _, st := range steps {
		if out, err := run(context.Background(), st[0], st[1:]...); err != nil {
			return fmt.Errorf("netns: %s: %v: %s", strings.Join(st, " "), err, out)
		}
	}
	return nil
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
// were started by that dead run). Labs of live processes are left alone:
// their lock is held. New calls it; call it directly to clean up by hand.
// logf, when not nil, hears what was removed.
func RemoveStale(logf func(format string, args ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
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
		removeNamespaces(logf, id)
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
				removeNamespaces(logf, id)
			}
		}
	}
}

// labID extracts the lab id from a namespace name <kind>-<id>-<host>.
func labID(netns string) (string, bool) {
	var rest string
	ok := false
	for _, k := range []string{KindTest, KindLab} {
		if r, found := strings.CutPrefix(netns, k+"-"); found {
			rest, ok = r, true
		}
	}
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

func removeNamespaces(logf func(string, ...any), id string) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if got, ok := labID(e.Name()); ok && got == id {
			killAll(e.Name())
			if out, err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil {
				logf("netns: removing stale namespace %s: %v: %s", e.Name(), err, out)
			} else {
				logf("netns: removed stale namespace %s", e.Name())
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

// OnClose registers f to run first when the lab is closed (servers
// listening in its namespaces, say).
func (l *Lab) OnClose(f func()) {
	l.mu.Lock()
	l.closers = append(l.closers, f)
	l.mu.Unlock()
}

// Close tears the lab down: its registered closers, its processes, its
// namespaces and its lock, in that order. It returns the first namespace
// that could not be removed.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, closers := l.procs, l.closers
	l.procs, l.closers = nil, nil
	l.mu.Unlock()
	for _, f := range closers {
		f()
	}
	for _, c := range procs {
		if c.ProcessState == nil && c.Process != nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for _, h := range l.hosts {
		killAll(h.netns)
	}
	var firstErr error
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if id, ok := labID(e.Name()); ok && id == l.id {
			if out, err := run(context.Background(), "ip", "netns", "del", e.Name()); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("removing namespace %s: %v: %s", e.Name(), err, out)
			}
		}
	}
	_ = os.Remove(filepath.Join(lockDir, l.id+".lock"))
	if l.lock != nil {
		_ = l.lock.Close()
	}
	return firstErr
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

func (l *Lab) netns(name string) string { return l.kind + "-" + l.id + "-" + name }

// host finds a host; an unknown name is a programming error.
func (l *Lab) host(name string) *host {
	for _, h := range l.hosts {
		if h.name == name {
			return h
		}
	}
	panic(fmt.Sprintf("netns: no host %q in the lab (hosts: %s)", name, strings.Join(l.Hosts(), ", ")))
}

// Has reports whether the lab has a host of that name.
func (l *Lab) Has(name string) bool {
	for _, h := range l.hosts {
		if h.name == name {
			return true
		}
	}
	return false
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

// Start starts a long-running command in a host's namespace. Close kills
// it if it is still running; the caller may Wait for it earlier.
func (l *Lab) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return nil
}

// NftRuleset is `nft list ruleset` in a host's namespace.
func (l *Lab) NftRuleset(host string) (string, error) {
	return l.Run(host, "nft", "list", "ruleset")
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

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
