package evidence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// Custody actions.
const (
	// ActionCollected is the first entry: the agent's upload, verified and stored.
	ActionCollected = "collected"
	// ActionDownload is an operator's download.
	ActionDownload = "download"
	// ActionExport is a download for someone outside (GetEvidence export_to).
	ActionExport = "export"
	// ActionVerify is a verification against the store.
	ActionVerify = "verify"
)

// CustodyEntry is one entry of an item's chain of custody.
type CustodyEntry = store.CustodyEntry

// CustodyHash is an entry's hash over its fields and the previous entry's
// hash (store.CustodyHash, which the store computes as it appends).
func CustodyHash(e *CustodyEntry) string { return store.CustodyHash(e) }

// AppendCustody appends an access to an item's custody record and mirrors
// it to the audit log. An access that cannot be recorded must not happen,
// so callers stop on its error.
func (s *Service) AppendCustody(ctx context.Context, evidenceID, actor, action string, detail any) (*CustodyEntry, error) {
	b, err := json.Marshal(detail)
	if err != nil {
		return nil, err
	}
	e := &CustodyEntry{EvidenceID: evidenceID, At: s.cfg.Clock(), Actor: actor, Action: action, Detail: b}
	if err := s.t.AppendCustody(ctx, e); err != nil {
		return nil, fmt.Errorf("appending to the custody record of %s: %w", evidenceID, err)
	}
	s.mirror(ctx, e)
	return e, nil
}

// mirror copies a custody entry to the audit log, so the two chains
// corroborate each other.
func (s *Service) mirror(ctx context.Context, e *CustodyEntry) {
	s.cfg.Audit(ctx, e.Actor, "evidence."+e.Action, e.EvidenceID, map[string]any{"custody_seq": e.Seq, "custody_hash": e.Hash,
		"detail": json.RawMessage(e.Detail)})
}

// Custody returns an item's entries in order.
func (s *Service) Custody(ctx context.Context, evidenceID string) ([]*CustodyEntry, error) {
	return s.t.Custody(ctx, evidenceID)
}

// CustodyCheck is the result of verifying an item's custody chain.
type CustodyCheck struct {
	OK          bool
	Entries     int
	FirstBadSeq int64
	Problem     string
	// Checkpoint is the newest signed checkpoint of the item's custody
	// head the chain was checked against (nil: none).
	Checkpoint *store.Checkpoint
	// AnchorOK is true when an anchor was given and the chain holds it.
	AnchorOK bool
}

// CheckItemCustody returns an item's custody entries and their check:
// the chain re-computed (CheckCustody) and compared with the newest signed
// checkpoint of its head.
func (s *Service) CheckItemCustody(ctx context.Context, it *Item) ([]*CustodyEntry, CustodyCheck, error) {
	return s.checkCustody(ctx, it, nil)
}

// checkCustody reads the item's newest signed custody checkpoint and then
// its entries, re-computes the chain (CheckCustody), and checks that the
// chain still holds the checkpoint and, when given, the anchor: a shorter
// chain lost its tail, another hash at the checkpoint's length means the
// chain was rewritten and its hashes recomputed.
func (s *Service) checkCustody(ctx context.Context, it *Item, anchor *store.Checkpoint) ([]*CustodyEntry, CustodyCheck, error) {
	// The checkpoint is read first: appends only lengthen the chain, so
	// the entries read next hold at least what it covers.
	cp, err := s.t.CustodyCheckpoint(ctx, it.ID)
	if err != nil {
		return nil, CustodyCheck{}, err
	}
	entries, err := s.Custody(ctx, it.ID)
	if err != nil {
		return nil, CustodyCheck{}, err
	}
	chk := CheckCustody(it, entries)
	chk.Checkpoint = cp
	if !chk.OK {
		return entries, chk, nil
	}
	k := s.t.CheckpointKey()
	hashAt := func(n int64) string {
		if n < 1 || n > int64(len(entries)) {
			return ""
		}
		return entries[n-1].Hash
	}
	n := int64(len(entries))
	if p := store.CheckChainHead(k, cp, "custody record", n, hashAt); p != "" {
		chk.OK, chk.FirstBadSeq, chk.Problem = false, min(cp.Length, n+1), p
		return entries, chk, nil
	}
	if anchor != nil {
		if anchor.Chain != store.CustodyChain(it.ID) {
			chk.OK, chk.Problem = false, fmt.Sprintf("the anchor is a checkpoint of %q, not of the custody record of %s", anchor.Chain, it.ID)
			return entries, chk, nil
		}
		if k == nil {
			return nil, chk, errors.New("the controller has no checkpoint key to check an anchor with")
		}
		if p := store.CheckChainHead(k, anchor, "custody record", n, hashAt); p != "" {
			chk.OK, chk.FirstBadSeq, chk.Problem = false, min(anchor.Length, n+1), "against the anchor: "+p
			return entries, chk, nil
		}
		chk.AnchorOK = true
	}
	return entries, chk, nil
}

// CheckCustody re-computes an item's chain and compares the item's record
// with what its first entry says was collected.
func CheckCustody(it *Item, entries []*CustodyEntry) CustodyCheck {
	chk := CustodyCheck{OK: true, Entries: len(entries)}
	fail := func(seq int64, problem string) CustodyCheck {
		chk.OK, chk.FirstBadSeq, chk.Problem = false, seq, problem
		return chk
	}
	if len(entries) == 0 {
		return fail(1, "the custody record is empty: its first entry was removed")
	}
	prev := store.GenesisHash
	for i, e := range entries {
		switch {
		case e.Seq != int64(i+1):
			return fail(int64(i+1), fmt.Sprintf("entry %d is missing (the next entry is %d): the record was cut", i+1, e.Seq))
		case e.PrevHash != prev:
			return fail(e.Seq, "its previous-hash does not match the entry before it: an earlier entry was changed or removed")
		case CustodyHash(e) != e.Hash:
			return fail(e.Seq, "its content does not match its hash: the entry was edited")
		}
		prev = e.Hash
	}
	first := entries[0]
	if first.Action != ActionCollected {
		return fail(1, fmt.Sprintf("the first entry is %q, not %q", first.Action, ActionCollected))
	}
	var recorded collectedDetail
	if err := json.Unmarshal(first.Detail, &recorded); err != nil {
		return fail(1, "the first entry's detail is not a collection record: "+err.Error())
	}
	want, _ := json.Marshal(recorded.itemFacts)
	got, _ := json.Marshal(itemFactsOf(it))
	if !bytes.Equal(want, got) {
		return fail(1, fmt.Sprintf("the evidence record no longer matches its collection entry: the entry says %s, the record now says %s", want, got))
	}
	return chk
}

// itemFacts are the fields of an item fixed at collection; the first
// custody entry records them and verification compares them.
type itemFacts struct {
	TaskID          string    `json:"task_id"`
	RunID           string    `json:"run_id"`
	CaseID          string    `json:"case_id"`
	Operator        string    `json:"operator"`
	AgentID         string    `json:"agent_id"`
	CertSerial      string    `json:"agent_cert_serial"`
	CertFingerprint string    `json:"agent_cert_fingerprint"`
	Hostname        string    `json:"hostname"`
	Name            string    `json:"name"`
	MediaType       string    `json:"media_type"`
	Size            int64     `json:"size"`
	SHA256          string    `json:"sha256"`
	Backend         string    `json:"backend"`
	Location        string    `json:"location"`
	StartedAt       time.Time `json:"collection_started_at"`
	FinishedAt      time.Time `json:"collection_finished_at"`
	StoredAt        time.Time `json:"stored_at"`
	RetainUntil     time.Time `json:"retain_until"`
}

func itemFactsOf(it *Item) itemFacts {
	return itemFacts{TaskID: it.TaskID, RunID: it.RunID, CaseID: it.CaseID, Operator: it.Operator, AgentID: it.AgentID,
		CertSerial: it.CertSerial, CertFingerprint: it.CertFingerprint, Hostname: it.Hostname, Name: it.Name,
		MediaType: it.MediaType, Size: it.Size, SHA256: it.SHA256, Backend: it.Backend, Location: it.Location,
		StartedAt: it.StartedAt.UTC(), FinishedAt: it.FinishedAt.UTC(), StoredAt: it.StoredAt.UTC(), RetainUntil: it.RetainUntil.UTC()}
}

// collectedDetail is the detail of the first custody entry.
type collectedDetail struct {
	itemFacts
	Host    *HostIdentity `json:"host,omitempty"`
	Bundle  *bundleFacts  `json:"bundle,omitempty"`
	Resumes int           `json:"upload_resumes"`
}

// bundleFacts is what the first entry records of a bundle.
type bundleFacts struct {
	Valid     bool   `json:"valid"`
	Problem   string `json:"problem,omitempty"`
	Collector string `json:"collector,omitempty"`
	Profile   string `json:"profile,omitempty"`
	Members   int    `json:"members"`
	Truncated bool   `json:"truncated,omitempty"`
}
