package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHostCapability reads the host's /proc and /sys as the agent does at
// start, from prepared trees: the hardened unit, a root agent outside
// systemd, no nf_tables, and no CAP_NET_ADMIN.
func TestHostCapability(t *testing.T) {
	const unitCaps = "0000000000081004" // CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_NET_ADMIN
	const allCaps = "000001ffffffffff"
	tree := func(t *testing.T, files map[string]string) hostRoot {
		dir := t.TempDir()
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return hostRoot(dir)
	}
	status := func(eff, bnd, nnp string) string {
		return "Name:\tfirebreak-agent\nCapEff:\t" + eff + "\nCapBnd:\t" + bnd + "\nNoNewPrivs:\t" + nnp + "\n"
	}
	unit := map[string]string{
		"sys/module/nf_tables/refcnt": "1\n",
		"proc/self/status":            status(unitCaps, unitCaps, "1"),
		"proc/self/cgroup":            "0::/system.slice/firebreak-agent.service\n",
		"proc/self/mounts":            "/dev/root / ext4 ro,relatime 0 0\n/dev/root /var/lib/firebreak-agent ext4 rw,relatime 0 0\n",
	}
	with := func(changes map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range unit {
			out[k] = v
		}
		for k, v := range changes {
			if v == "" {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	systemd := func(k string) string {
		if k == "INVOCATION_ID" {
			return "0123456789abcdef"
		}
		return ""
	}
	none := func(string) string { return "" }
	tests := []struct {
		name        string
		files       map[string]string
		euid        int
		env         func(string) string
		nftables    bool
		detail      string
		unit        string
		protections []string
	}{
		{"the hardened unit", unit, 0, systemd, true, "", "firebreak-agent.service", []string{"NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem"}},
		{"root outside systemd", with(map[string]string{"proc/self/status": status(allCaps, allCaps, "0"),
			"proc/self/mounts": "/dev/root / ext4 rw,relatime 0 0\n"}), 0, none, true, "", "", nil},
		{"nf_tables built in", with(map[string]string{"sys/module/nf_tables/refcnt": "", "proc/sys/kernel/osrelease": "6.1.0\n",
			"lib/modules/6.1.0/modules.builtin": "kernel/net/netfilter/nf_tables.ko\n"}), 0, systemd, true, "", "firebreak-agent.service",
			[]string{"NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem"}},
		{"no nf_tables", with(map[string]string{"sys/module/nf_tables/refcnt": ""}), 0, systemd, false, "nf_tables is not loaded", "firebreak-agent.service",
			[]string{"NoNewPrivileges", "CapabilityBoundingSet", "ProtectSystem"}},
		{"not root, no CAP_NET_ADMIN", with(map[string]string{"proc/self/status": status("0000000000000000", allCaps, "0")}), 1000, none, false,
			"lacks CAP_NET_ADMIN", "", []string{"ProtectSystem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tree(t, tt.files).hostCapability(tt.euid, tt.env)
			if c.GetRoot() != (tt.euid == 0) || c.GetNftables() != tt.nftables || (tt.detail == "") != (c.GetNftablesDetail() == "") ||
				c.GetSystemdUnit() != tt.unit || !slices.Equal(c.GetProtections(), tt.protections) {
				t.Fatalf("capability %v", c)
			}
			if tt.detail != "" && !strings.Contains(c.GetNftablesDetail(), tt.detail) {
				t.Fatalf("detail %q, want %q", c.GetNftablesDetail(), tt.detail)
			}
		})
	}
}
