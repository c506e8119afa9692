package hostcollect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/plugins/sysinfo"
)

// SystemRecord is one record of the system artifact; Kind says which fields are set.
type SystemRecord struct {
	Kind string `json:"kind"`
	// os_release
	OSRelease map[string]string `json:"os_release,omitempty"`
	// kernel
	Release string `json:"release,omitempty"`
	Version string `json:"version,omitempty"`
	Machine string `json:"machine,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	Tainted *int64 `json:"tainted,omitempty"`
	// host
	Hostname    string    `json:"hostname,omitempty"`
	EtcHostname string    `json:"etc_hostname,omitempty"`
	BootID      string    `json:"boot_id,omitempty"`
	MachineID   string    `json:"machine_id,omitempty"`
	BootTime    time.Time `json:"boot_time,omitzero"`
	Uptime      float64   `json:"uptime_seconds,omitempty"`
	Timezone    string    `json:"timezone,omitempty"`
	// module, mount, interface, imds
	Module    *KernelModule `json:"module,omitempty"`
	Mount     *Mount        `json:"mount,omitempty"`
	Interface *Interface    `json:"interface,omitempty"`
	IMDS      *IMDSSnapshot `json:"imds,omitempty"`
}

// KernelModule is one line of /proc/modules.
type KernelModule struct {
	Name     string   `json:"name"`
	Size     int64    `json:"size"`
	RefCount int      `json:"refcount"`
	UsedBy   []string `json:"used_by"`
	State    string   `json:"state"`
	Address  string   `json:"address"`
	// Taint is the module's taint flags, e.g. "(OE)" for an out-of-tree,
	// unsigned module: a common mark of a rootkit.
	Taint string `json:"taint,omitempty"`
}

// ParseModules parses /proc/modules.
func ParseModules(b []byte) []KernelModule {
	var out []KernelModule
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		m := KernelModule{Name: f[0], State: f[4], Address: f[5], UsedBy: []string{}}
		m.Size, _ = strconv.ParseInt(f[1], 10, 64)
		m.RefCount, _ = strconv.Atoi(f[2])
		for _, u := range strings.Split(strings.TrimSuffix(f[3], ","), ",") {
			if u != "-" && u != "" {
				m.UsedBy = append(m.UsedBy, u)
			}
		}
		if len(f) > 6 {
			m.Taint = strings.Join(f[6:], " ")
		}
		out = append(out, m)
	}
	return out
}

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID         int    `json:"id"`
	ParentID   int    `json:"parent_id"`
	Device     string `json:"device"`
	Root       string `json:"root"`
	MountPoint string `json:"mount_point"`
	Options    string `json:"options"`
	FSType     string `json:"fs_type"`
	Source     string `json:"source"`
	SuperOpts  string `json:"super_options"`
}

// ParseMountinfo parses /proc/PID/mountinfo (proc(5)); octal escapes in
// paths (\040 for a space) are decoded.
func ParseMountinfo(b []byte) []Mount {
	var out []Mount
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			continue
		}
		m := Mount{Device: f[2], Root: unescapeOctal(f[3]), MountPoint: unescapeOctal(f[4]), Options: f[5],
			FSType: g[0], Source: unescapeOctal(g[1]), SuperOpts: g[2]}
		m.ID, _ = strconv.Atoi(f[0])
		m.ParentID, _ = strconv.Atoi(f[1])
		out = append(out, m)
	}
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return validUTF8(b.String())
}

// Interface is a network interface with its addresses.
type Interface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac,omitempty"`
	Flags     string   `json:"flags"`
	MTU       int      `json:"mtu"`
	Addresses []string `json:"addresses"`
}

// IMDSSnapshot is what the EC2 instance metadata service said.
type IMDSSnapshot struct {
	Endpoint  string            `json:"endpoint"`
	Available bool              `json:"available"`
	Reason    string            `json:"reason,omitempty"`
	Values    map[string]string `json:"values,omitempty"`
	// IdentityDocument is the signed instance identity document's JSON.
	IdentityDocument json.RawMessage `json:"identity_document,omitempty"`
}

// imdsPaths are read from the metadata service. Credentials and user data
// are deliberately not: they are secrets, not evidence of this host's state.
var imdsPaths = []string{"meta-data/instance-id", "meta-data/ami-id", "meta-data/instance-type", "meta-data/hostname",
	"meta-data/local-hostname", "meta-data/local-ipv4", "meta-data/public-ipv4", "meta-data/mac",
	"meta-data/placement/availability-zone", "meta-data/placement/region", "meta-data/security-groups",
	"meta-data/iam/info", "meta-data/public-keys/", "meta-data/events/maintenance/scheduled"}

func collectSystem(c *collection, a *artifact) error {
	var uts unix.Utsname
	rec := SystemRecord{Kind: "kernel"}
	if unix.Uname(&uts) == nil {
		rec.Release = unix.ByteSliceToString(uts.Release[:])
		rec.Version = unix.ByteSliceToString(uts.Version[:])
		rec.Machine = unix.ByteSliceToString(uts.Machine[:])
	}
	if b, err := a.copyProcFile("/proc/cmdline", 64<<10); err != nil {
		return err
	} else {
		rec.Cmdline = validUTF8(strings.TrimSpace(string(b)))
	}
	if b, _, err := readBounded("/proc/sys/kernel/tainted", 64); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			rec.Tainted = &n
		}
	}
	if _, err := a.copyProcFile("/proc/version", 4096); err != nil {
		return err
	}
	if err := a.Record(rec); err != nil {
		return err
	}

	host := SystemRecord{Kind: "host"}
	host.Hostname, _ = os.Hostname()
	for _, p := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/etc/fstab", "/etc/machine-id", "/etc/timezone", "/etc/os-release", "/etc/nsswitch.conf"} {
		if _, err := a.copyFile(p, bundle.FileOptions{MaxBytes: 1 << 20}); err != nil {
			return err
		}
	}
	if b, _, err := readBounded("/etc/hostname", 4096); err == nil {
		host.EtcHostname = validUTF8(strings.TrimSpace(string(b)))
	}
	if b, _, err := readBounded("/proc/sys/kernel/random/boot_id", 64); err == nil {
		host.BootID = strings.TrimSpace(string(b))
	}
	if b, _, err := readBounded("/etc/machine-id", 64); err == nil {
		host.MachineID = strings.TrimSpace(string(b))
	}
	if b, _, err := readBounded("/proc/uptime", 256); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			host.Uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	host.BootTime, _ = bootTime()
	if t, err := os.Readlink("/etc/localtime"); err == nil {
		host.Timezone = strings.TrimPrefix(t, "/usr/share/zoneinfo/")
	}
	if err := a.Record(host); err != nil {
		return err
	}
	if f, err := openSystemFile("/etc/os-release"); err == nil {
		b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
		f.Close()
		if err := a.Record(SystemRecord{Kind: "os_release", OSRelease: sysinfo.ParseOSRelease(b)}); err != nil {
			return err
		}
	}
	if b, err := a.copyProcFile("/proc/modules", 4<<20); err != nil {
		return err
	} else {
		for _, m := range ParseModules(b) {
			if err := a.Record(SystemRecord{Kind: "module", Module: &m}); err != nil {
				return err
			}
		}
	}
	if b, err := a.copyProcFile("/proc/self/mountinfo", 4<<20); err != nil {
		return err
	} else {
		for _, m := range ParseMountinfo(b) {
			if err := a.Record(SystemRecord{Kind: "mount", Mount: &m}); err != nil {
				return err
			}
		}
	}
	if ifaces, err := net.Interfaces(); err == nil {
		for _, ifc := range ifaces {
			i := Interface{Name: ifc.Name, MAC: ifc.HardwareAddr.String(), Flags: ifc.Flags.String(), MTU: ifc.MTU, Addresses: []string{}}
			if addrs, err := ifc.Addrs(); err == nil {
				for _, ad := range addrs {
					i.Addresses = append(i.Addresses, ad.String())
				}
			}
			if err := a.Record(SystemRecord{Kind: "interface", Interface: &i}); err != nil {
				return err
			}
		}
	} else {
		a.Skip("network interfaces", err.Error())
	}
	if c.host.GetOnEc2() || c.p.imdsAlways {
		snap := QueryIMDS(c.ctx, c.p.IMDSEndpoint)
		if err := a.Record(SystemRecord{Kind: "imds", IMDS: snap}); err != nil {
			return err
		}
	}
	return nil
}

// QueryIMDS reads instance metadata with IMDSv2: a session token from a PUT,
// then GETs carrying it. Every request has a short timeout, so a host that
// is not on EC2 (or blocks the service) costs about a second.
func QueryIMDS(ctx context.Context, endpoint string) *IMDSSnapshot {
	snap := &IMDSSnapshot{Endpoint: endpoint}
	client := &http.Client{
		Timeout: 2 * time.Second,
		// No proxy: the metadata service is link-local.
		Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, endpoint+"/latest/api/token", nil)
	if err != nil {
		snap.Reason = err.Error()
		return snap
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	token, status, err := imdsDo(client, req)
	if err != nil || status != http.StatusOK {
		snap.Reason = fmt.Sprintf("no IMDSv2 token: status %d, %v", status, err)
		return snap
	}
	snap.Available = true
	snap.Values = map[string]string{}
	get := func(path string) (string, bool) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/latest/"+path, nil)
		if err != nil {
			return "", false
		}
		req.Header.Set("X-aws-ec2-metadata-token", token)
		body, status, err := imdsDo(client, req)
		return body, err == nil && status == http.StatusOK
	}
	for _, p := range imdsPaths {
		if v, ok := get(p); ok {
			snap.Values[strings.TrimSuffix(strings.TrimPrefix(p, "meta-data/"), "/")] = validUTF8(v)
		}
	}
	if doc, ok := get("dynamic/instance-identity/document"); ok && json.Valid([]byte(doc)) {
		snap.IdentityDocument = json.RawMessage(doc)
	}
	return snap
}

func imdsDo(client *http.Client, req *http.Request) (string, int, error) {
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b), resp.StatusCode, err
}
