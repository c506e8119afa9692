package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// unit reads a systemd unit into section → key → values (a key may repeat).
func unit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section, pending := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if pending != "" {
			line, pending = pending+" "+line, ""
		}
		if strings.HasSuffix(line, "\\") {
			pending = strings.TrimSuffix(line, "\\")
			continue
		}
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is not KEY=VALUE", path, line)
			}
			out[section][k] = append(out[section][k], strings.Join(strings.Fields(v), " "))
		}
	}
	return out
}

// TestAgentUnitIsHardenedWithoutBreakingCollection checks the agent unit's
// sandbox and, where systemd-analyze is installed, that systemd accepts
// every directive.
func TestAgentUnitIsHardenedWithoutBreakingCollection(t *testing.T) {
	path := "../../deploy/systemd/firebreak-agent.service"
	svc := unit(t, path)["Service"]
	want := map[string]string{
		"User": "root", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		// Collection searches the host's /tmp, /var/tmp and /dev/shm for
		// executables: no private copies of them, and device nodes closed
		// by the device cgroup instead of a private /dev.
		"PrivateTmp": "no", "PrivateDevices": "no", "DevicePolicy": "closed",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
		"ProtectClock": "yes", "ProtectHostname": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
		"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "UMask": "0077",
		"StateDirectory": "firebreak-agent", "StateDirectoryMode": "0700",
		// Collection reads every user's shell history: home directories stay
		// visible, read-only.
		"ProtectHome": "read-only",
		// Collection reads every process: no hidden /proc entries.
		"ProtectProc": "default", "ProcSubset": "all",
		// nftables and socket listing speak netlink.
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		// Read any file, read other processes' memory and executables,
		// program nftables: nothing else.
		"CapabilityBoundingSet": "CAP_DAC_READ_SEARCH CAP_SYS_PTRACE CAP_NET_ADMIN",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %v, want %s", k, got, v)
		}
	}
	if svc["ReadWritePaths"] != nil || svc["PrivateNetwork"] != nil || svc["IPAddressDeny"] != nil {
		t.Error("the unit writes outside its state directory or cuts the network isolation and the controller channel need")
	}
	start := strings.Join(svc["ExecStart"], " ")
	for _, arg := range []string{"--plugin-dir /usr/lib/firebreak/plugins", "--data-dir /var/lib/firebreak-agent", "--ca-file /etc/firebreak/ca.pem"} {
		if !strings.Contains(start, arg) {
			t.Errorf("ExecStart %q lacks %s", start, arg)
		}
	}
	// The token reaches the agent as a file it reads only to enroll (and
	// the installer deletes), never as an environment variable, which
	// /proc and collected evidence would show.
	if !slices.Contains(svc["Environment"], "FIREBREAK_JOIN_TOKEN_FILE=/etc/firebreak/join-token") {
		t.Errorf("Environment = %v: the unit must pass the join token as FIREBREAK_JOIN_TOKEN_FILE=/etc/firebreak/join-token", svc["Environment"])
	}
	for _, f := range svc["EnvironmentFile"] {
		if strings.Contains(f, "join") {
			t.Errorf("EnvironmentFile %s: the join token must not be passed in the environment", f)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the directives were not checked by systemd")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "firebreak-agent")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "firebreak-agent.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/firebreak-agent", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := osexec(analyze, "verify", copyPath)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func osexec(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// ssmDocument is the part of an SSM command document the test reads.
type ssmDocument struct {
	SchemaVersion string `yaml:"schemaVersion"`
	Parameters    map[string]struct {
		Type           string `yaml:"type"`
		Default        *string
		AllowedPattern string `yaml:"allowedPattern"`
	} `yaml:"parameters"`
	MainSteps []struct {
		Action string `yaml:"action"`
		Inputs struct {
			RunCommand []string `yaml:"runCommand"`
		} `yaml:"inputs"`
	} `yaml:"mainSteps"`
}

var placeholder = regexp.MustCompile(`\{\{ *([A-Za-z0-9]+) *\}\}`)

// TestInstallDocument checks the SSM document: valid, every placeholder
// declared and constrained (the values land in a shell script), the join
// token only ever read on the instance, and the script valid shell.
func TestInstallDocument(t *testing.T) {
	data, err := os.ReadFile("../../deploy/ssm/install-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc ssmDocument
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SchemaVersion != "2.2" || len(doc.MainSteps) != 1 || doc.MainSteps[0].Action != "aws:runShellScript" {
		t.Fatalf("schema %s, steps %+v", doc.SchemaVersion, doc.MainSteps)
	}
	script := strings.Join(doc.MainSteps[0].Inputs.RunCommand, "\n")
	used := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(script, -1) {
		used[m[1]] = true
		if _, ok := doc.Parameters[m[1]]; !ok {
			t.Errorf("{{ %s }} is not a parameter", m[1])
		}
	}
	injection := []string{"x';reboot;'", "$(reboot)", "`reboot`", "a b; reboot", "a\nb"}
	samples := map[string]string{"ControllerEndpoint": "firebreak.example.com:7443", "ReleaseUrl": "s3://releases/firebreak.tar.gz",
		"ReleaseSha256": strings.Repeat("ab", 32), "JoinTokenParameter": "/firebreak/join-token/host", "CaCertificateParameter": "/firebreak/controller/ca",
		"Labels": "env=prod team=payments"}
	for name, p := range doc.Parameters {
		if !used[name] {
			t.Errorf("parameter %s is never used", name)
		}
		if p.Type != "String" || p.AllowedPattern == "" {
			t.Errorf("parameter %s: type %s without an allowedPattern: its value goes into a shell script", name, p.Type)
			continue
		}
		re, err := regexp.Compile(p.AllowedPattern)
		if err != nil {
			t.Fatalf("parameter %s: %v", name, err)
		}
		if !re.MatchString(samples[name]) {
			t.Errorf("parameter %s refuses the sample %q", name, samples[name])
		}
		if name == "ControllerEndpoint" && !re.MatchString("ctl-a.example.com:7443,ctl-b.example.com:7443,10.0.3.10:7443") {
			t.Errorf("parameter %s refuses a list of controllers", name)
		}
		for _, bad := range injection {
			if re.MatchString(bad) {
				t.Errorf("parameter %s accepts %q", name, bad)
			}
		}
		if strings.Contains(strings.ToLower(name), "token") && !strings.HasSuffix(name, "Parameter") {
			t.Errorf("parameter %s carries a token: pass the name of its SecureString instead", name)
		}
	}
	for _, must := range []string{"--with-decryption", "shred -u /etc/firebreak/join-token", "chmod 0600 /etc/firebreak/join-token", "sha256sum -c", "install -d -o root -g root -m 0755 /usr/lib/firebreak /usr/lib/firebreak/plugins"} {
		if !strings.Contains(script, must) {
			t.Errorf("the script lacks %q", must)
		}
	}
	if strings.Contains(script, "FIREBREAK_JOIN_TOKEN=") {
		t.Error("the script passes the join token in an environment file: write it to /etc/firebreak/join-token")
	}
	if regexp.MustCompile(`echo[^\n]*TOKEN`).MatchString(script) || strings.Contains(script, "set -x") {
		t.Error("the script may print the join token")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to check the script's syntax")
	}
	filled := placeholder.ReplaceAllStringFunc(script, func(m string) string { return samples[placeholder.FindStringSubmatch(m)[1]] })
	cmd := exec.Command(bash, "-n")
	cmd.Stdin = strings.NewReader(filled)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
}
