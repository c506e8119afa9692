package tasksign_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

func TestVerify(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	signer, err := tasksign.LoadOrCreateKey(filepath.Join(t.TempDir(), "task.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	other := tasksign.NewSigner(otherKey)

	spec := func(mut func(*agentv1.TaskSpec)) *agentv1.TaskSpec {
		s := &agentv1.TaskSpec{
			TaskId: "t1", RunId: "r1", AgentId: "agent-a", Action: "sysinfo",
			ParamsJson: []byte(`{}`),
			IssuedAt:   timestamppb.New(now.Add(-time.Second)),
			ExpiresAt:  timestamppb.New(now.Add(time.Hour)),
		}
		if mut != nil {
			mut(s)
		}
		return s
	}
	sign := func(s *tasksign.Signer, sp *agentv1.TaskSpec) *agentv1.SignedTask {
		st, err := s.Sign(sp)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	tests := []struct {
		name    string
		task    func() *agentv1.SignedTask
		wantErr string
	}{
		{name: "valid", task: func() *agentv1.SignedTask { return sign(signer, spec(nil)) }},
		{name: "unsigned", task: func() *agentv1.SignedTask {
			st := sign(signer, spec(nil))
			st.Signature = nil
			return st
		}, wantErr: "not signed"},
		{name: "forged by another key", task: func() *agentv1.SignedTask { return sign(other, spec(nil)) }, wantErr: "signature does not verify"},
		{name: "spec altered after signing", task: func() *agentv1.SignedTask {
			st := sign(signer, spec(nil))
			sp := &agentv1.TaskSpec{}
			_ = proto.Unmarshal(st.Spec, sp)
			sp.Action = "host-isolate"
			st.Spec, _ = proto.Marshal(sp)
			return st
		}, wantErr: "signature does not verify"},
		{name: "another agent's task", task: func() *agentv1.SignedTask {
			return sign(signer, spec(func(s *agentv1.TaskSpec) { s.AgentId = "agent-b" }))
		}, wantErr: `addressed to agent "agent-b"`},
		{name: "expired", task: func() *agentv1.SignedTask {
			return sign(signer, spec(func(s *agentv1.TaskSpec) { s.ExpiresAt = timestamppb.New(now.Add(-time.Second)) }))
		}, wantErr: "expired at 2026-11-27T11:59:59Z"},
		{name: "issued in the future", task: func() *agentv1.SignedTask {
			return sign(signer, spec(func(s *agentv1.TaskSpec) { s.IssuedAt = timestamppb.New(now.Add(time.Hour)) }))
		}, wantErr: "in the future"},
		{name: "params digest mismatch", task: func() *agentv1.SignedTask {
			sp := spec(nil)
			st := sign(signer, sp)
			// Re-sign a spec whose digest was computed over other params:
			// only a holder of the key could do this, but the agent still
			// refuses inconsistent content.
			sp.ParamsJson = []byte(`{"x":1}`)
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(sp)
			st.Spec = b
			st.Signature = ed25519.Sign(tasksign.SignerKey(t, signer), b)
			return st
		}, wantErr: "do not match their signed digest"},
		{name: "garbage spec with valid signature", task: func() *agentv1.SignedTask {
			b := []byte{0xff, 0xff, 0xff}
			return &agentv1.SignedTask{Spec: b, Signature: ed25519.Sign(tasksign.SignerKey(t, signer), b)}
		}, wantErr: "does not decode"},
	}
	v := &tasksign.Verifier{Key: signer.PublicKey(), AgentID: "agent-a", Now: func() time.Time { return now }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := v.Verify(tt.task())
			if tt.wantErr == "" {
				if err != nil || sp.GetTaskId() != "t1" {
					t.Fatalf("Verify = %v, %v", sp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestKeyPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task.key")
	a, err := tasksign.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tasksign.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !a.PublicKey().Equal(b.PublicKey()) {
		t.Fatal("the key changed across loads")
	}
}

// TestDeriveKey checks that a derived key is stable across loads of the
// task-signing key, differs by purpose, and is not the task-signing key.
func TestDeriveKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task.key")
	a, err := tasksign.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tasksign.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		x, y     *tasksign.Signer
		px, py   string
		wantSame bool
	}{
		{name: "same key, same purpose", x: a, y: b, px: "chain checkpoint", py: "chain checkpoint", wantSame: true},
		{name: "same key, other purpose", x: a, y: b, px: "chain checkpoint", py: "something else"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kx, err := tt.x.DeriveKey(tt.px)
			if err != nil {
				t.Fatal(err)
			}
			ky, err := tt.y.DeriveKey(tt.py)
			if err != nil {
				t.Fatal(err)
			}
			if kx.Equal(ky) != tt.wantSame {
				t.Fatalf("derived keys equal: %v, want %v", kx.Equal(ky), tt.wantSame)
			}
			if kx.Public().(ed25519.PublicKey).Equal(a.PublicKey()) {
				t.Fatal("the derived key is the task-signing key")
			}
		})
	}
}

// TestCreateAndLoadKey checks that CreateKey refuses to replace a key, and
// that LoadKey never creates one and loads the same key.
func TestCreateAndLoadKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "task.key")
	if _, err := tasksign.LoadKey(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadKey of a missing file: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("LoadKey created the key file")
	}
	a, err := tasksign.CreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	if _, err := tasksign.CreateKey(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("a second CreateKey: err = %v, want fs.ErrExist", err)
	}
	b, err := tasksign.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() || len(a.Fingerprint()) != 64 {
		t.Fatalf("fingerprints %q and %q, want one hex SHA-256", a.Fingerprint(), b.Fingerprint())
	}
}
