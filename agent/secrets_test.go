package agent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestOverwriteValues(t *testing.T) {
	envFrom := func(entry []byte) int {
		if bytes.HasPrefix(entry, []byte(JoinTokenEnv+"=")) {
			return len(JoinTokenEnv) + 1
		}
		return -1
	}
	tests := []struct {
		name, in, want string
		changed        bool
	}{
		{"token among others", "PATH=/bin\x00FIREBREAK_JOIN_TOKEN=fbj_abc\x00HOME=/root\x00", "PATH=/bin\x00FIREBREAK_JOIN_TOKEN=*******\x00HOME=/root\x00", true},
		{"last entry without NUL", "A=1\x00FIREBREAK_JOIN_TOKEN=xy", "A=1\x00FIREBREAK_JOIN_TOKEN=**", true},
		{"empty value", "FIREBREAK_JOIN_TOKEN=\x00", "FIREBREAK_JOIN_TOKEN=\x00", false},
		{"similar names untouched", "FIREBREAK_JOIN_TOKEN_FILE=/etc/t\x00XFIREBREAK_JOIN_TOKEN=1\x00", "FIREBREAK_JOIN_TOKEN_FILE=/etc/t\x00XFIREBREAK_JOIN_TOKEN=1\x00", false},
		{"no token", "A=1\x00B=2\x00", "A=1\x00B=2\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			if got := overwriteValues(b, envFrom); got != tt.changed {
				t.Errorf("changed = %v, want %v", got, tt.changed)
			}
			if string(b) != tt.want {
				t.Errorf("got %q, want %q", b, tt.want)
			}
		})
	}
}

func TestReadJoinTokenFile(t *testing.T) {
	const tok = "fbj_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
		wantErr string
	}{
		{"token with newline", tok + "\n", 0o600, tok, ""},
		{"owner read-only", tok, 0o400, tok, ""},
		{"readable by others", tok, 0o644, "", "readable by other users"},
		{"empty", "", 0o600, "", "is empty"},
		{"blank", " \n", 0o600, "", "one token"},
		{"two tokens", tok + "\n" + tok + "\n", 0o600, "", "one token"},
		{"too long", strings.Repeat("a", maxJoinTokenBytes+1), 0o600, "", "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "join-token")
			if err := os.WriteFile(p, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := readJoinTokenFile(p)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case got != tt.want:
				t.Fatalf("token %q, want %q", got, tt.want)
			case tt.wantErr != "" && strings.Contains(err.Error(), tok):
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
	if _, err := readJoinTokenFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

// TestJoinTokenLeavesProcFiles starts this test binary with the token in
// its environment and on its command line and checks that, once the agent
// has taken it, neither /proc/self/environ nor /proc/self/cmdline holds it.
func TestJoinTokenLeavesProcFiles(t *testing.T) {
	if os.Getenv("FIREBREAK_TEST_SECRETS_HELPER") == "1" {
		secretsHelper()
		return
	}
	if _, err := os.Stat("/proc/self/mem"); err != nil {
		t.Skip("needs /proc")
	}
	const envTok = "fbj_EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE"
	const argTok = "fbj_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	cmd := exec.Command(os.Args[0], "-test.run=^TestJoinTokenLeavesProcFiles$", "--", "--join-token", argTok, "--join-token="+argTok)
	cmd.Env = append(os.Environ(), "FIREBREAK_TEST_SECRETS_HELPER=1", JoinTokenEnv+"="+envTok)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	want := fmt.Sprintf("token=%s args=[--join-token %s --join-token=%s] env=clean cmdline=clean", envTok, argTok, argTok)
	if !strings.Contains(string(out), want) {
		t.Fatalf("helper said:\n%s\nwant %q", out, want)
	}
}

func secretsHelper() {
	tok, err := takeJoinTokenEnv()
	if err != nil {
		fmt.Println("takeJoinTokenEnv:", err)
		os.Exit(1)
	}
	var rest []string
	for i, a := range os.Args {
		if a == "--" {
			rest = cloneArgs(os.Args[i+1:])
		}
	}
	if err := scrubJoinTokenArg(); err != nil {
		fmt.Println("scrubJoinTokenArg:", err)
		os.Exit(1)
	}
	env, _ := os.ReadFile("/proc/self/environ")
	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	verdict := func(b []byte) string {
		if bytes.Contains(b, []byte("fbj_")) {
			return "leaks:" + string(b)
		}
		return "clean"
	}
	if os.Getenv(JoinTokenEnv) != "" {
		fmt.Println("the token is still in the Go environment")
		os.Exit(1)
	}
	fmt.Printf("token=%s args=%v env=%s cmdline=%s\n", tok, rest, verdict(env), verdict(cmdline))
	os.Exit(0)
}
