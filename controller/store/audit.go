package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// GenesisHash is the previous hash of the first audit record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditHash computes a record's hash over its fields and the previous hash.
// The fields are JSON-encoded as one array, so no two different records can
// encode the same way.
func AuditHash(rec *AuditRecord) string {
	detail := rec.Detail
	if len(detail) == 0 {
		detail = []byte("{}")
	}
	b, _ := json.Marshal([]any{rec.Seq, rec.At.UTC().Format(time.RFC3339Nano), rec.Actor, rec.Action, rec.Subject, json.RawMessage(detail), rec.PrevHash})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SetCheckpointKey makes the store sign a checkpoint of the audit log's
// head with every append, and check the chain against it at verification.
// The controller sets it before it serves; without it no checkpoint is
// written or checked.
func (s *SQL) SetCheckpointKey(k *CheckpointKey) { s.ckey.Store(k) }

// CheckpointKey returns the key set by SetCheckpointKey, or nil.
func (s *SQL) CheckpointKey() *CheckpointKey { return s.ckey.Load() }

// AppendAudit implements Store. With a checkpoint key, the signed
// checkpoint of the new head is written in the same transaction, so no
// record exists that a checkpoint does not cover. Appends of several
// controllers follow one another under the audit chain's lock (chainTx),
// so the log stays one chain.
func (s *SQL) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	if len(rec.Detail) == 0 {
		rec.Detail = []byte("{}")
	}
	if !json.Valid(rec.Detail) {
		return fmt.Errorf("audit detail is not valid JSON")
	}
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	k := s.ckey.Load()
	var cp *Checkpoint
	var signed bool
	err := s.chainTx(ctx, AuditChain, func(tx *sql.Tx) error {
		var seq int64
		prev := GenesisHash
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		rec.Seq, rec.PrevHash = seq+1, prev
		// Nanosecond precision survives the round trip through BIGINT, so
		// the hash recomputed at verification matches.
		rec.At = rec.At.UTC()
		rec.Hash = AuditHash(rec)
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (seq, at, actor, action, subject, detail_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			rec.Seq, ns(rec.At), rec.Actor, rec.Action, rec.Subject, string(rec.Detail), rec.PrevHash, rec.Hash); err != nil {
			return err
		}
		if k == nil {
			return nil
		}
		hashAt := func(n int64) (string, error) { return auditHashAt(ctx, tx, n) }
		cp, signed, err = WriteCheckpointTx(ctx, tx, k, AuditChain, rec.Seq, rec.Hash, rec.At, hashAt, s.lastAuditCP)
		return err
	})
	if err != nil || k == nil {
		return err
	}
	// Only a checkpoint signed here is remembered as known-good; one kept
	// because the chain no longer holds it is checked every time.
	s.lastAuditCP = nil
	if signed {
		s.lastAuditCP = cp
	}
	return nil
}

// auditHashAt is the hash of record seq, or "" when there is none.
func auditHashAt(ctx context.Context, q querier, seq int64) (string, error) {
	var h string
	err := q.QueryRowContext(ctx, `SELECT hash FROM audit WHERE seq = ?`, seq).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return h, err
}

// ListAudit implements Store.
func (s *SQL) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]*AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.r.QueryContext(ctx, `SELECT seq, at, actor, action, subject, detail_json, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at int64
		var detail string
		if err := rows.Scan(&r.Seq, &at, &r.Actor, &r.Action, &r.Subject, &detail, &r.PrevHash, &r.Hash); err != nil {
			return nil, err
		}
		r.At, r.Detail = tm(at), []byte(detail)
		out = append(out, &r)
	}
	return out, rows.Err()
}

// AuditCheckpoint implements Store.
func (s *SQL) AuditCheckpoint(ctx context.Context) (*Checkpoint, error) {
	return ReadCheckpoint(ctx, s.r, AuditChain)
}

// VerifyAudit implements Store.
func (s *SQL) VerifyAudit(ctx context.Context) (*AuditCheck, error) {
	return s.VerifyAuditAnchor(ctx, nil)
}

// VerifyAuditAnchor implements Store.
func (s *SQL) VerifyAuditAnchor(ctx context.Context, anchor *Checkpoint) (*AuditCheck, error) {
	k := s.ckey.Load()
	if anchor != nil && k == nil {
		return nil, errors.New("this store has no checkpoint key to check an anchor with")
	}
	// The checkpoint is read before the chain: appends only lengthen the
	// chain, so what is read next holds at least what the checkpoint covers.
	cp, err := ReadCheckpoint(ctx, s.r, AuditChain)
	if err != nil {
		return nil, err
	}
	chk := &AuditCheck{OK: true, HeadHash: GenesisHash, Checkpoint: cp}
	want := map[int64]string{}
	if cp != nil {
		want[cp.Length] = ""
	}
	if anchor != nil {
		want[anchor.Length] = ""
	}
	var after int64
walk:
	for {
		recs, err := s.ListAudit(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			chk.Records++
			switch {
			case r.Seq != after+1:
				fail(chk, after+1, fmt.Sprintf("record %d is missing (the next record is %d): the log was cut", after+1, r.Seq))
				break walk
			case r.PrevHash != chk.HeadHash:
				fail(chk, r.Seq, "its previous-hash does not match the record before it: a record before it was changed or removed")
				break walk
			case AuditHash(r) != r.Hash:
				fail(chk, r.Seq, "its content does not match its hash: the record was edited")
				break walk
			}
			if _, ok := want[r.Seq]; ok {
				want[r.Seq] = r.Hash
			}
			chk.HeadHash = r.Hash
			after = r.Seq
		}
	}
	if !chk.OK {
		return chk, nil
	}
	hashAt := func(n int64) string { return want[n] }
	if p := CheckChainHead(k, cp, "audit log", chk.Records, hashAt); p != "" {
		return fail(chk, min(cp.Length, chk.Records+1), p), nil
	}
	if anchor != nil {
		if anchor.Chain != AuditChain {
			return fail(chk, 0, fmt.Sprintf("the anchor is a checkpoint of %q, not of the audit log", anchor.Chain)), nil
		}
		if p := CheckChainHead(k, anchor, "audit log", chk.Records, hashAt); p != "" {
			return fail(chk, min(anchor.Length, chk.Records+1), "against the anchor: "+p), nil
		}
		chk.AnchorOK = true
	}
	return chk, nil
}

func fail(c *AuditCheck, seq int64, problem string) *AuditCheck {
	c.OK, c.FirstBadSeq, c.Problem = false, seq, problem
	return c
}
