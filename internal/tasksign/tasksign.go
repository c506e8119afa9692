// Package tasksign signs tasks on the controller and verifies them on the
// agent. The signature is ed25519 over the serialized TaskSpec, which carries
// the agent id, action, parameter digest, issue time, expiry and a nonce; the
// agent verifies the bytes before decoding anything else.
package tasksign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/internal/pki"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// NonceSize is the size of a task nonce.
const NonceSize = 16

// MaxClockSkew is how far in the future a task's issue time may lie, to
// tolerate clocks that differ between controller and agent.
const MaxClockSkew = 2 * time.Minute

// Signer signs tasks with the controller's key.
type Signer struct {
	key ed25519.PrivateKey
}

// LoadOrCreateKey loads the ed25519 task-signing key from path, creating it
// (mode 0600) on first start.
func LoadOrCreateKey(path string) (*Signer, error) {
	s, err := LoadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	return createKey(path, pki.WriteFileAtomic)
}

// LoadKey loads the ed25519 task-signing key from path, never creating it.
// A missing file is an error wrapping fs.ErrNotExist.
func LoadKey(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the task-signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemType || len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s is not a Firebreak task-signing key", path)
	}
	return &Signer{key: ed25519.NewKeyFromSeed(blk.Bytes)}, nil
}

// CreateKey creates a new task-signing key at path (mode 0600), refusing
// with an error wrapping fs.ErrExist to replace a file already there.
func CreateKey(path string) (*Signer, error) { return createKey(path, pki.WriteFileExclusive) }

// pemType is the PEM block type of a task-signing key file.
const pemType = "FIREBREAK TASK SIGNING KEY"

func createKey(path string, write func(path string, data []byte, perm os.FileMode) error) (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: key.Seed()})
	if err := write(path, b, 0o600); err != nil {
		return nil, err
	}
	return &Signer{key: key}, nil
}

// Fingerprint is the SHA-256 of the public key, in hex: what operators
// compare and what a cluster's store records.
func (s *Signer) Fingerprint() string {
	sum := sha256.Sum256(s.PublicKey())
	return hex.EncodeToString(sum[:])
}

// NewSigner wraps a key (tests).
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// PublicKey returns the key agents pin at enrollment.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign fills in the parameter digest and a fresh nonce when absent, and signs
// the deterministic serialization of spec.
func (s *Signer) Sign(spec *agentv1.TaskSpec) (*agentv1.SignedTask, error) {
	sum := sha256.Sum256(spec.GetParamsJson())
	spec.ParamsSha256 = sum[:]
	if len(spec.GetNonce()) == 0 {
		spec.Nonce = make([]byte, NonceSize)
		if _, err := rand.Read(spec.Nonce); err != nil {
			return nil, err
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return &agentv1.SignedTask{Spec: b, Signature: ed25519.Sign(s.key, b)}, nil
}

// Refusal is why an agent refuses a task. Its Reason is reported to the
// controller as the task's error.
type Refusal struct {
	// Reason says what check failed.
	Reason string
}

func (r *Refusal) Error() string { return "task refused: " + r.Reason }

// Verifier checks tasks on the agent.
type Verifier struct {
	// Key is the controller's task-signing key, pinned at enrollment.
	Key ed25519.PublicKey
	// AgentID is this agent's identity.
	AgentID string
	// Now is the clock.
	Now func() time.Time
}

// Verify checks the signature, addressee, expiry and parameter digest, and
// returns the decoded spec. Replay is checked by the agent's journal.
func (v *Verifier) Verify(st *agentv1.SignedTask) (*agentv1.TaskSpec, error) {
	// Security-critical: nothing in the spec is trusted, or even decoded,
	// before the signature over its exact bytes verifies.
	if len(st.GetSignature()) == 0 {
		return nil, &Refusal{Reason: "the task is not signed"}
	}
	if len(v.Key) != ed25519.PublicKeySize || !ed25519.Verify(v.Key, st.GetSpec(), st.GetSignature()) {
		return nil, &Refusal{Reason: "the task's signature does not verify against the controller's key"}
	}
	spec := &agentv1.TaskSpec{}
	if err := proto.Unmarshal(st.GetSpec(), spec); err != nil {
		return nil, &Refusal{Reason: "the signed task does not decode: " + err.Error()}
	}
	now := v.Now()
	switch {
	case spec.GetTaskId() == "":
		return nil, &Refusal{Reason: "the task has no id"}
	case spec.GetAgentId() != v.AgentID:
		return nil, &Refusal{Reason: fmt.Sprintf("the task is addressed to agent %q, not this agent (%q)", spec.GetAgentId(), v.AgentID)}
	case len(spec.GetNonce()) != NonceSize:
		return nil, &Refusal{Reason: "the task's nonce is missing or malformed"}
	case spec.GetExpiresAt() == nil || !now.Before(spec.GetExpiresAt().AsTime()):
		return nil, &Refusal{Reason: fmt.Sprintf("the task expired at %s", fmtTime(spec.GetExpiresAt()))}
	case spec.GetIssuedAt() == nil || spec.GetIssuedAt().AsTime().After(now.Add(MaxClockSkew)):
		return nil, &Refusal{Reason: fmt.Sprintf("the task's issue time %s is in the future: check the clocks", fmtTime(spec.GetIssuedAt()))}
	}
	sum := sha256.Sum256(spec.GetParamsJson())
	if !bytes.Equal(sum[:], spec.GetParamsSha256()) {
		return nil, &Refusal{Reason: "the task's parameters do not match their signed digest"}
	}
	return spec, nil
}

func fmtTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "(unset)"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// DeriveKey derives an ed25519 key for another purpose from the task-signing
// key (HKDF-SHA256 over its seed, with purpose as the info). Every
// controller holding the task-signing key derives the same key, and a
// signature by the derived key can never pass for a signed task.
func (s *Signer) DeriveKey(purpose string) (ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, s.key.Seed(), nil, "firebreak "+purpose, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("deriving the %s key: %w", purpose, err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
