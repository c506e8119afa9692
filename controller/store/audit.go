package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
