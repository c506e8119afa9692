package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// sandboxHelperEnv makes the test binary, started inside the agent unit's
// sandbox, run one tmp_executables collection and print the host paths it
// archived, instead of running tests.
const sandboxHelperEnv = "FIREBREAK_TEST_SANDBOX_COLLECT"

func TestMain(m *testing.M) {
	if os.Getenv(sandboxHelperEnv) == "1" {
		os.Exit(sandboxCollect())
	}
	os.Exit(m.Run())
}

// sandboxCollect runs the real host-collect action in this process, as the
// plugin does under the agent, and prints the sources of the archived files
// as JSON.
func sandboxCollect() int {
	params, _ := json.Marshal(map[string]any{"artifacts": []string{"tmp_executables"}, "max_file_bytes": 1 << 20})
	emit := &bufferEmitter{}
	_, err := hostcollect.New().Execute(context.Background(), &sdk.Request{
		Task:   &pluginv1.TaskContext{TaskId: "sandbox-check"},
		Params: params,
		Host:   &pluginv1.HostContext{Hostname: "sandbox", StateDir: os.TempDir()},
	}, emit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collection:", err)
		return 1
	}
	man, _, err := bundle.Verify(bytes.NewReader(emit.buf.Bytes()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		return 1
	}
	var sources []string
	for _, m := range man.Members {
		if m.Kind == bundle.KindFile {
			sources = append(sources, m.Source)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(sources); err != nil {
		return 1
	}
	return 0
}

// bufferEmitter keeps the one artifact stream in memory.
type bufferEmitter struct{ buf bytes.Buffer }

func (*bufferEmitter) Progress(int, string) error { return nil }
func (*bufferEmitter) Log(string, string) error   { return nil }
func (e *bufferEmitter) Artifact(string, string) io.WriteCloser {
	return nopWriteCloser{&e.buf}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// TestCollectionSeesTempDirsUnderTheUnitSandbox runs a real collection of
// executables under the agent unit's sandbox and checks it still finds
// what an attacker drops in /tmp, /var/tmp and /dev/shm, including in a
// directory only its owner may read.
//
// With systemd as init, the collection runs in a transient unit with the
// unit file's [Service] settings (systemd-run). Without systemd (containers,
// this CI), the settings that decide what collection can see are applied by
// hand, and the test says so: a private mount namespace with the root file
// system read-only (ProtectSystem=strict), no new privileges, and the
// unit's CapabilityBoundingSet (setpriv). PrivateTmp=no is what keeps the
// host's /tmp visible; under systemd it is applied, here it is read from the
// unit (TestAgentUnitIsHardenedWithoutBreakingCollection checks its value).
func TestCollectionSeesTempDirsUnderTheUnitSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a host collection in a sandbox")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent unit runs collection as root with a reduced capability set")
	}
	svc := unit(t, "../../deploy/systemd/firebreak-agent.service")["Service"]
	planted := plantExecutables(t)

	var cmd *exec.Cmd
	if systemdRunning() {
		t.Log("systemd is init: collecting in a transient unit with the agent unit's [Service] settings")
		args := []string{"--wait", "--pipe", "--quiet", "--collect", "--setenv=" + sandboxHelperEnv + "=1"}
		for k, vs := range svc {
			switch k {
			case "ExecStart", "ExecStartPre", "Environment", "EnvironmentFile", "Restart", "RestartSec", "Type", "StateDirectory", "StateDirectoryMode":
				continue
			}
			for _, v := range vs {
				args = append(args, "--property="+k+"="+v)
			}
		}
		cmd = exec.Command("systemd-run", append(args, os.Args[0])...)
	} else {
		for _, tool := range []string{"unshare", "setpriv", "mount"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("systemd is not init here and %s is missing: the unit's sandbox cannot be applied", tool)
			}
		}
		t.Log("systemd is not init here (no /run/systemd/system): applying the unit's mount and capability settings with unshare and setpriv, not systemd")
		cmd = sandboxByHand(t, svc, os.Args[0])
	}
	cmd.Env = append(os.Environ(), sandboxHelperEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("collection in the sandbox: %v\n%s", err, stderr.String())
	}
	var sources []string
	if err := json.Unmarshal(out, &sources); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	for _, p := range planted {
		if !slices.Contains(sources, p) {
			t.Errorf("collection in the sandbox missed %s (archived %d files)", p, len(sources))
		}
	}

	// The sandbox is real: with no capabilities at all, root cannot read
	// the directory only its owner may read.
	if !systemdRunning() {
		none := map[string][]string{"CapabilityBoundingSet": {""}}
		cmd := sandboxByHand(t, none, os.Args[0])
		cmd.Env = append(os.Environ(), sandboxHelperEnv+"=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("collection with no capabilities: %v", err)
		}
		sources = nil
		if err := json.Unmarshal(out, &sources); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(sources, planted[0]) {
			t.Errorf("with no capabilities the collection still read %s: the by-hand sandbox applies nothing", planted[0])
		}
	}
}

// systemdRunning reports whether systemd is init (sd_booted's test).
func systemdRunning() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// sandboxByHand runs bin in a private mount namespace with / read-only,
// no new privileges, and the bounding set svc's CapabilityBoundingSet gives.
func sandboxByHand(t *testing.T, svc map[string][]string, bin string) *exec.Cmd {
	t.Helper()
	bset := "-all"
	for _, caps := range svc["CapabilityBoundingSet"] {
		for _, c := range strings.Fields(caps) {
			bset += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		}
	}
	script := `mount --make-rprivate / && mount -o remount,bind,ro / && exec setpriv --no-new-privs --bounding-set "$1" --inh-caps -all -- "$2"`
	return exec.Command("unshare", "--mount", "--", "sh", "-c", script, "sandbox", bset, bin)
}

// plantExecutables drops what an attacker would: an ELF header in a
// directory of /tmp only its owner (nobody) may enter, and scripts in
// /var/tmp and /dev/shm. The first path needs CAP_DAC_READ_SEARCH to read.
func plantExecutables(t *testing.T) []string {
	t.Helper()
	elf := append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}, make([]byte, 57)...)
	var planted []string
	for _, root := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if _, err := os.Stat(root); err != nil {
			t.Logf("%s does not exist here: not planted", root)
			continue
		}
		dir, err := os.MkdirTemp(root, "fb-sandbox-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		name, body, mode := filepath.Join(dir, "implant.sh"), []byte("#!/bin/sh\necho owned\n"), os.FileMode(0o755)
		if root == "/tmp" {
			name, body, mode = filepath.Join(dir, ".x"), elf, 0o700
		}
		if err := os.WriteFile(name, body, mode); err != nil {
			t.Fatal(err)
		}
		if root == "/tmp" {
			// Owned by nobody and closed to everyone else: root reads it
			// only through CAP_DAC_READ_SEARCH.
			for _, p := range []string{name, dir} {
				if err := os.Chown(p, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		planted = append(planted, name)
	}
	if len(planted) == 0 || !strings.HasPrefix(planted[0], "/tmp/") {
		t.Skip("no /tmp here to plant in")
	}
	return planted
}
