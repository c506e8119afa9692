// Package sysinfo is the sysinfo action: the host's basic facts, read from
// /proc and the operating system, for inventory and for checking that an
// agent answers.
package sysinfo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the action's version.
const Version = "1.0.0"

// Facts is the action's result.
type Facts struct {
	Hostname      string            `json:"hostname"`
	Kernel        string            `json:"kernel"`
	KernelVersion string            `json:"kernel_version"`
	Arch          string            `json:"arch"`
	OSRelease     map[string]string `json:"os_release"`
	OSName        string            `json:"os_name"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	CPUs          int               `json:"cpus"`
	MemTotalBytes uint64            `json:"mem_total_bytes"`
	MemAvailBytes uint64            `json:"mem_available_bytes"`
	BootID        string            `json:"boot_id"`
	Addresses     []Address         `json:"addresses"`
}

// Address is one IP address of one interface.
type Address struct {
	Interface string `json:"interface"`
	CIDR      string `json:"cidr"`
}

// Action reads facts below Root ("/" on a real host).
type Action struct {
	// Root is the filesystem root to read /proc and /etc under.
	Root string
}

// New returns the action reading the live host.
func New() *Action { return &Action{Root: "/"} }

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:        "sysinfo",
		Version:     Version,
		Domain:      pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "Host facts: hostname, kernel, OS release, uptime, CPUs, memory, IP addresses, boot id",
		Roles:       []string{"host", "worker"},
	}, nil
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, _ sdk.Emitter) (any, error) {
	var none struct{}
	if err := req.Decode(&none); err != nil {
		return nil, err
	}
	f := &Facts{Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), OSRelease: map[string]string{}}
	var err error
	if f.Hostname, err = os.Hostname(); err != nil {
		return nil, fmt.Errorf("reading the hostname: %w", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	f.Kernel = unix.ByteSliceToString(uts.Release[:])
	f.KernelVersion = unix.ByteSliceToString(uts.Version[:])
	if b, err := os.ReadFile(a.path("etc/os-release")); err == nil {
		f.OSRelease = ParseOSRelease(b)
		f.OSName = f.OSRelease["PRETTY_NAME"]
	}
	if b, err := os.ReadFile(a.path("proc/uptime")); err == nil {
		if fields := strings.Fields(string(b)); len(fields) > 0 {
			f.UptimeSeconds, _ = strconv.ParseFloat(fields[0], 64)
		}
	}
	if b, err := os.ReadFile(a.path("proc/meminfo")); err == nil {
		mem := ParseMeminfo(b)
		f.MemTotalBytes, f.MemAvailBytes = mem["MemTotal"], mem["MemAvailable"]
	}
	if b, err := os.ReadFile(a.path("proc/sys/kernel/random/boot_id")); err == nil {
		f.BootID = strings.TrimSpace(string(b))
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	f.Addresses = []Address{}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			f.Addresses = append(f.Addresses, Address{Interface: ifc.Name, CIDR: ad.String()})
		}
	}
	return f, ctx.Err()
}

func (a *Action) path(rel string) string { return filepath.Join(a.Root, rel) }

// ParseOSRelease parses os-release(5) content.
func ParseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `'"`)
		}
		out[k] = v
	}
	return out
}

// ParseMeminfo parses /proc/meminfo into bytes per field.
func ParseMeminfo(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}
