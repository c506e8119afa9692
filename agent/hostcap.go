package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// capNetAdmin is CAP_NET_ADMIN's bit in /proc/self/status's capability
// masks: nftables needs it.
const capNetAdmin = 12

// hostRoot is where the capability probe reads the host's /proc and /sys;
// "/" outside tests.
type hostRoot string

// hostCapability is the agent's view, at start, of what host isolation
// needs: root, nftables (nf_tables in the kernel and CAP_NET_ADMIN), and
// the systemd unit with its sandbox. It is the agent's own claim, and the
// controller's readiness review shows it as such.
func (root hostRoot) hostCapability(euid int, env func(string) string) *agentv1.HostCapability {
	c := &agentv1.HostCapability{Root: euid == 0}
	status := root.statusFields()
	switch {
	case !root.exists("sys/module/nf_tables") && !root.builtin("nf_tables"):
		c.NftablesDetail = "nf_tables is not loaded in the kernel (modprobe nf_tables)"
	case !capSet(status["CapEff"], capNetAdmin):
		c.NftablesDetail = "the agent lacks CAP_NET_ADMIN"
	default:
		c.Nftables = true
	}
	if env("INVOCATION_ID") != "" {
		c.SystemdUnit = root.serviceUnit()
	}
	if status["NoNewPrivs"] == "1" {
		c.Protections = append(c.Protections, "NoNewPrivileges")
	}
	if bnd, ok := parseCaps(status["CapBnd"]); ok && bnd&^(1<<2|1<<19|1<<capNetAdmin) == 0 {
		// CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE and CAP_NET_ADMIN at most, as
		// the unit bounds them.
		c.Protections = append(c.Protections, "CapabilityBoundingSet")
	}
	if root.readOnly("/usr") {
		c.Protections = append(c.Protections, "ProtectSystem")
	}
	return c
}

func (root hostRoot) path(p string) string { return filepath.Join(string(root), p) }

func (root hostRoot) exists(p string) bool {
	_, err := os.Stat(root.path(p))
	return err == nil
}

// builtin says whether a module is built into the kernel.
func (root hostRoot) builtin(module string) bool {
	b, err := os.ReadFile(root.path("proc/sys/kernel/osrelease"))
	if err != nil {
		return false
	}
	list, err := os.ReadFile(root.path("lib/modules/" + strings.TrimSpace(string(b)) + "/modules.builtin"))
	return err == nil && strings.Contains(string(list), "/"+module+".ko")
}

// statusFields reads /proc/self/status as key → value.
func (root hostRoot) statusFields() map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(root.path("proc/self/status"))
	if err != nil {
		return out
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func parseCaps(hex string) (uint64, bool) {
	v, err := strconv.ParseUint(hex, 16, 64)
	return v, err == nil
}

func capSet(hex string, bit uint) bool {
	v, ok := parseCaps(hex)
	return ok && v&(1<<bit) != 0
}

// serviceUnit is the .service of the agent's cgroup.
func (root hostRoot) serviceUnit() string {
	b, err := os.ReadFile(root.path("proc/self/cgroup"))
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		for part := range strings.SplitSeq(line, "/") {
			if strings.HasSuffix(part, ".service") {
				return part
			}
		}
	}
	return ""
}

// readOnly says whether the mount holding dir is read-only for the agent.
func (root hostRoot) readOnly(dir string) bool {
	b, err := os.ReadFile(root.path("proc/self/mounts"))
	if err != nil {
		return false
	}
	best, ro := "", false
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		mnt := f[1]
		if (dir == mnt || strings.HasPrefix(dir, strings.TrimSuffix(mnt, "/")+"/")) && len(mnt) >= len(best) {
			best, ro = mnt, strings.HasPrefix(f[3], "ro,") || f[3] == "ro"
		}
	}
	return ro
}
