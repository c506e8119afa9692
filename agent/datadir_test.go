package agent_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestAgentDataDirIsPrivate enrolls an agent into a data directory that
// already exists with mode 0755 and holds a world-readable file, and checks
// that the directory, everything under it and every file it wrote end
// private to the agent's user.
func TestAgentDataDirIsPrivate(t *testing.T) {
	c := playbookruntest.StartController(t, playbookruntest.Options{})
	dir := filepath.Join(t.TempDir(), "agent")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("left by an operator"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "notes.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := c.StartAgent(t, playbookruntest.AgentOptions{Name: "private", DataDir: dir})
	c.WaitConnected(t, a)
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		seen[rel] = true
		switch {
		case st.IsDir() && st.Mode().Perm() != 0o700:
			t.Errorf("directory %s has mode %v, want 0700", rel, st.Mode().Perm())
		case st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0:
			t.Errorf("file %s has mode %v, readable by other users", rel, st.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".", "agent.key", "agent.pem", "ca.pem", "task-signing.pub", "identity.json", "state", "notes.txt"} {
		if !seen[f] {
			t.Errorf("%s is not in the data dir; the test expected to check its mode", f)
		}
	}
}

// TestJoinTokenFile enrolls an agent with --join-token-file and checks that
// a token file other users can read is refused before any enrollment.
func TestJoinTokenFile(t *testing.T) {
	c := playbookruntest.StartController(t, playbookruntest.Options{})
	tok, err := c.Operator.CreateJoinToken(playbookruntest.Admin(context.Background()),
		&operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole_AGENT_ROLE_HOST, Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		wantErr string
	}{
		{"readable by others", 0o644, "readable by other users"},
		{"private", 0o600, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "join-token")
			if err := os.WriteFile(file, []byte(tok.GetToken()+"\n"), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, tt.mode); err != nil {
				t.Fatal(err)
			}
			a, err := agent.New(context.Background(), agent.Config{Controller: c.Addr, CAFile: filepath.Join(c.DataDir, "ca.pem"),
				JoinTokenFile: file, DataDir: filepath.Join(t.TempDir(), "agent"), Hostname: "token-file"})
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want a refusal containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("New: %v", err)
			case a.ID() == "":
				t.Fatal("the agent has no id after enrolling")
			}
		})
	}
}
