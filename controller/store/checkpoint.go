package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The checkpoints table holds, for each hash chain, the newest head the
// controller signed. It is kept apart from the chain rows: someone who can
// write the database but does not hold the controller's key can cut a
// chain's tail and recompute every hash, but cannot sign a checkpoint that
// matches, so verification notices.
func init() {
	RegisterMigration("checkpoint-001", `CREATE TABLE chain_checkpoints (
		chain TEXT PRIMARY KEY, length BIGINT NOT NULL, head_hash TEXT NOT NULL, at BIGINT NOT NULL,
		key_id TEXT NOT NULL, signature BLOB NOT NULL)`)
}

// AuditChain is the chain name of the audit log's checkpoints.
const AuditChain = "audit"

// CustodyChain is the chain name of an evidence item's custody record.
func CustodyChain(evidenceID string) string { return "custody:" + evidenceID }

// checkpointDomain separates checkpoint signatures from anything else the
// controller signs.
const checkpointDomain = "firebreak-chain-checkpoint/v1"

// Checkpoint is the controller's signed statement that a hash chain had
// Length entries ending in Head at time At.
type Checkpoint struct {
	// Chain names the chain: AuditChain or CustodyChain(id).
	Chain string
	// Length is the number of entries (the head's sequence number).
	Length int64
	// Head is the hash of entry Length.
	Head string
	// At is when the controller signed it.
	At time.Time
	// KeyID names the signing key (see CheckpointKey.ID).
	KeyID string
	// Signature is ed25519 over SignedBytes.
	Signature []byte
}

// SignedBytes is what a checkpoint's signature covers: a domain tag, the
// chain, its length, its head and the time, JSON-encoded as one array.
func (c *Checkpoint) SignedBytes() []byte {
	b, _ := json.Marshal([]any{checkpointDomain, c.Chain, c.Length, c.Head, c.At.UTC().Format(time.RFC3339Nano)})
	return b
}

// CheckpointKey signs and verifies checkpoints. The controller derives it
// from its task-signing key, so every controller of a cluster holds it.
type CheckpointKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   string
}

// NewCheckpointKey wraps an ed25519 private key.
func NewCheckpointKey(priv ed25519.PrivateKey) *CheckpointKey {
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return &CheckpointKey{priv: priv, pub: pub, id: hex.EncodeToString(sum[:8])}
}

// ID is a short fingerprint of the public key.
func (k *CheckpointKey) ID() string { return k.id }

// PublicKey is the key that verifies checkpoints.
func (k *CheckpointKey) PublicKey() ed25519.PublicKey { return k.pub }

// Sign returns a signed checkpoint of a chain's head.
func (k *CheckpointKey) Sign(chain string, length int64, head string, at time.Time) *Checkpoint {
	cp := &Checkpoint{Chain: chain, Length: length, Head: head, At: at.UTC(), KeyID: k.id}
	cp.Signature = ed25519.Sign(k.priv, cp.SignedBytes())
	return cp
}

// Verify checks a checkpoint's signature against this key.
func (k *CheckpointKey) Verify(cp *Checkpoint) error {
	// Security-critical: a checkpoint is believed only when this
	// controller's key signed exactly its chain, length, head and time.
	if cp.KeyID != k.id {
		return fmt.Errorf("it names signing key %q, but this controller's checkpoint key is %q", cp.KeyID, k.id)
	}
	if !ed25519.Verify(k.pub, cp.SignedBytes(), cp.Signature) {
		return errors.New("its signature does not verify against this controller's key: it was forged or altered")
	}
	return nil
}

// sameAs reports whether c is exactly o, signature included.
func (c *Checkpoint) sameAs(o *Checkpoint) bool {
	return o != nil && c.Chain == o.Chain && c.Length == o.Length && c.Head == o.Head && c.At.Equal(o.At) && c.KeyID == o.KeyID &&
		bytes.Equal(c.Signature, o.Signature)
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ReadCheckpoint returns a chain's stored checkpoint, or nil when there is
// none.
func ReadCheckpoint(ctx context.Context, q querier, chain string) (*Checkpoint, error) {
	cp := &Checkpoint{Chain: chain}
	var at int64
	err := q.QueryRowContext(ctx, `SELECT length, head_hash, at, key_id, signature FROM chain_checkpoints WHERE chain = ?`, chain).
		Scan(&cp.Length, &cp.Head, &at, &cp.KeyID, &cp.Signature)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint of %s: %w", chain, err)
	}
	cp.At = tm(at)
	return cp, nil
}

// WriteCheckpointTx signs the new head of a chain and stores it within tx,
// unless the stored checkpoint is not on the chain any more (hashAt says
// what hash the chain holds at a length, "" when it is shorter). Then the
// old checkpoint is kept, so the tampering it proves is still reported at
// the next verification rather than signed over. known, when not nil, is
// the checkpoint this process last stored for the chain: a stored one
// identical to it needs no signature check. It returns the checkpoint that
// is stored afterwards and whether it is the new one.
func WriteCheckpointTx(ctx context.Context, tx *sql.Tx, k *CheckpointKey, chain string, length int64, head string, at time.Time,
	hashAt func(length int64) (string, error), known *Checkpoint) (*Checkpoint, bool, error) {
	old, err := ReadCheckpoint(ctx, tx, chain)
	if err != nil {
		return nil, false, err
	}
	if old != nil {
		// Security-critical: never sign over a chain that no longer holds
		// what an earlier checkpoint proved it held, nor over a checkpoint
		// this controller did not sign.
		if (!old.sameAs(known) && k.Verify(old) != nil) || old.Length > length {
			return old, false, nil
		}
		h := head
		if old.Length != length {
			if h, err = hashAt(old.Length); err != nil {
				return nil, false, err
			}
		}
		if h != old.Head {
			return old, false, nil
		}
	}
	cp := k.Sign(chain, length, head, at)
	if _, err := tx.ExecContext(ctx, `INSERT INTO chain_checkpoints (chain, length, head_hash, at, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (chain) DO UPDATE SET length = excluded.length, head_hash = excluded.head_hash, at = excluded.at,
		key_id = excluded.key_id, signature = excluded.signature`,
		cp.Chain, cp.Length, cp.Head, ns(cp.At), cp.KeyID, cp.Signature); err != nil {
		return nil, false, fmt.Errorf("storing the checkpoint of %s: %w", chain, err)
	}
	return cp, true, nil
}

// CheckChainHead compares a chain, as read after cp was read, with its
// newest signed checkpoint. length is the number of entries read and
// hashAt gives the hash at a length ("" when the chain is shorter). It
// returns "" when the chain holds what cp proves, or what is wrong, naming
// what is missing. A nil cp is no evidence either way.
func CheckChainHead(k *CheckpointKey, cp *Checkpoint, what string, length int64, hashAt func(int64) string) string {
	if cp == nil || k == nil {
		return ""
	}
	if err := k.Verify(cp); err != nil {
		return fmt.Sprintf("the stored signed checkpoint of the %s is not genuine: %v", what, err)
	}
	signed := cp.At.UTC().Format(time.RFC3339)
	switch {
	case cp.Length > length:
		missing := fmt.Sprintf("entry %d was removed", cp.Length)
		if cp.Length > length+1 {
			missing = fmt.Sprintf("entries %d to %d were removed", length+1, cp.Length)
		}
		return fmt.Sprintf("the %s has %d entries, but the controller signed a checkpoint of %d entries (head %s) at %s: %s",
			what, length, cp.Length, cp.Head, signed, missing)
	case hashAt(cp.Length) != cp.Head:
		return fmt.Sprintf("entry %d's hash is %s, but the controller signed %s for it at %s: entries up to %d were removed and replaced, or rewritten with their hashes recomputed",
			cp.Length, hashAt(cp.Length), cp.Head, signed, cp.Length)
	}
	return ""
}

// ProtoFromCheckpoint converts a checkpoint for operators; k adds the
// public key that verifies it.
func ProtoFromCheckpoint(cp *Checkpoint, k *CheckpointKey) *operatorv1.ChainCheckpoint {
	if cp == nil {
		return nil
	}
	out := &operatorv1.ChainCheckpoint{Chain: cp.Chain, Length: uint64(max(cp.Length, 0)), HeadHash: cp.Head, At: timestamppb.New(cp.At),
		KeyId: cp.KeyID, Signature: cp.Signature}
	if k != nil {
		out.PublicKey = k.PublicKey()
	}
	return out
}

// CheckpointFromProto converts an anchor an operator sent. It checks only
// the form; the caller verifies the signature with its own key.
func CheckpointFromProto(pb *operatorv1.ChainCheckpoint) (*Checkpoint, error) {
	switch {
	case pb.GetChain() == "":
		return nil, errors.New("the anchor names no chain")
	case pb.GetLength() == 0 || pb.GetLength() > math.MaxInt64:
		return nil, fmt.Errorf("the anchor's length %d is not a record position", pb.GetLength())
	case len(pb.GetHeadHash()) != sha256.Size*2:
		return nil, errors.New("the anchor's head hash is not a hex SHA-256")
	case !pb.GetAt().IsValid():
		return nil, errors.New("the anchor has no valid signing time")
	case len(pb.GetSignature()) != ed25519.SignatureSize:
		return nil, errors.New("the anchor carries no ed25519 signature")
	}
	return &Checkpoint{Chain: pb.GetChain(), Length: int64(pb.GetLength()), Head: pb.GetHeadHash(), At: pb.GetAt().AsTime(),
		KeyID: pb.GetKeyId(), Signature: pb.GetSignature()}, nil
}
