package netlab_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/netlab"
)

const timeout = 10 * time.Second

func TestLabHostsReachEachOther(t *testing.T) {
	lab := netlab.New(t, "alpha", "beta", "allowed-peer")
	srv := lab.ListenEcho("beta", 0)
	tests := []struct {
		name string
		from string
		to   netip.Addr
	}{
		{"ipv4", "alpha", lab.Addr("beta")},
		{"ipv6", "allowed-peer", lab.Addr6("beta")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := lab.DialTCP(tt.from, netip.AddrPortFrom(tt.to, srv.Port()), timeout)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := netlab.RoundTrip(conn, []byte("hello "+tt.name), timeout); err != nil {
				t.Fatal(err)
			}
		})
	}
	if !lab.Subnet().Contains(lab.Addr("alpha")) || !lab.Subnet6().Contains(lab.Addr6("alpha")) {
		t.Errorf("alpha's addresses %s and %s are outside the lab's %s and %s", lab.Addr("alpha"), lab.Addr6("alpha"), lab.Subnet(), lab.Subnet6())
	}
	if lab.Addr("alpha") == lab.Addr("beta") {
		t.Errorf("two hosts share %s", lab.Addr("alpha"))
	}
}

func TestLabIsInItsOwnNamespaces(t *testing.T) {
	lab := netlab.New(t, "alpha")
	links := lab.MustRun("alpha", "ip", "-o", "link")
	if !strings.Contains(links, netlab.Interface+"@") || strings.Count(links, "\n") != 2 {
		t.Errorf("alpha should have lo and %s only:\n%s", netlab.Interface, links)
	}
	// Nothing in the machine's own namespace mentions the lab.
	out, err := exec.Command("ip", "-o", "addr").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), lab.Addr("alpha").String()) {
		t.Errorf("the lab's address %s shows in the machine's own namespace:\n%s", lab.Addr("alpha"), out)
	}
	// A socket made in Do belongs to the host: its address is bindable
	// there and not in the machine's namespace.
	var ln net.Listener
	if err := lab.Do("alpha", func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.Addr("alpha"), 0).String())
		return err
	}); err != nil {
		t.Fatalf("listening on alpha's address inside alpha: %v", err)
	}
	ln.Close()
	if ln, err := net.Listen("tcp", netip.AddrPortFrom(lab.Addr("alpha"), 0).String()); err == nil {
		ln.Close()
		t.Errorf("alpha's address is bindable outside the lab")
	}
}

func TestDialFailsPromptlyWhenNothingListens(t *testing.T) {
	lab := netlab.New(t, "alpha", "beta")
	_, err := lab.DialTCP("alpha", netip.AddrPortFrom(lab.Addr("beta"), 9), timeout)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing a closed port: %v, want connection refused", err)
	}
}

func TestNftRuleset(t *testing.T) {
	lab := netlab.New(t, "alpha")
	lab.MustRun("alpha", "nft", "add", "table", "inet", "probe")
	if got := lab.NftRuleset("alpha"); !strings.Contains(got, "table inet probe") {
		t.Fatalf("ruleset:\n%s", got)
	}
}

func TestStartedProcessesAndNamespacesAreRemoved(t *testing.T) {
	netlab.Require(t)
	var netns []string
	var cmd *exec.Cmd
	t.Run("lab", func(t *testing.T) {
		lab := netlab.New(t, "alpha", "beta")
		netns = []string{lab.Netns("alpha"), lab.Netns("beta")}
		cmd = lab.Command(t.Context(), "alpha", "sleep", "600")
		if err := lab.Start(cmd); err != nil {
			t.Fatal(err)
		}
	})
	for _, n := range netns {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s is still there after the test: %v", n, err)
		}
	}
	if cmd.ProcessState == nil {
		t.Errorf("the started process was not reaped")
	}
}

func TestRemoveStale(t *testing.T) {
	live := netlab.New(t, "alpha")
	// What crashed runs leave behind: namespaces of a lab whose lock file
	// is gone, and of a lab whose lock file is no longer held.
	unheld := filepath.Join("/run/netlab", "dead01.lock")
	if err := os.WriteFile(unheld, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stale := []string{netlab.Prefix + "dead00-alpha", netlab.Prefix + "dead01-alpha", netlab.Prefix + "dead01-switch"}
	for _, n := range stale {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}

	netlab.RemoveStale(t)
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale namespace %s survived: %v", n, err)
		}
	}
	if _, err := os.Stat(unheld); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale lock file survived: %v", err)
	}
	if _, err := os.Stat(live.NetnsPath("alpha")); err != nil {
		t.Errorf("a live lab's namespace was removed: %v", err)
	}
}
