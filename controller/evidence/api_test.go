package evidence_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/bundle"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func waitABit() { time.Sleep(10 * time.Millisecond) }

// download fetches an item through GetEvidence.
func (h *harness) download(id, exportTo string) ([]byte, *operatorv1.EvidenceItem, *operatorv1.EvidenceEnd, error) {
	stream, err := h.operator().GetEvidence(context.Background(), &operatorv1.GetEvidenceRequest{EvidenceId: id, Reason: "test", ExportTo: exportTo})
	if err != nil {
		return nil, nil, nil, err
	}
	var buf bytes.Buffer
	var info *operatorv1.EvidenceItem
	for {
		m, err := stream.Recv()
		if err != nil {
			return buf.Bytes(), info, nil, err
		}
		switch msg := m.GetMsg().(type) {
		case *operatorv1.GetEvidenceResponse_Info:
			info = msg.Info
		case *operatorv1.GetEvidenceResponse_Data:
			if msg.Data.GetOffset() != uint64(buf.Len()) {
				return nil, nil, nil, errors.New("out of order")
			}
			buf.Write(msg.Data.GetData())
		case *operatorv1.GetEvidenceResponse_End:
			return buf.Bytes(), info, msg.End, nil
		}
	}
}

// verify runs VerifyEvidence and returns its results.
func (h *harness) verify(id string) ([]*operatorv1.EvidenceVerification, error) {
	stream, err := h.operator().VerifyEvidence(context.Background(), &operatorv1.VerifyEvidenceRequest{EvidenceId: id, All: id == ""})
	if err != nil {
		return nil, err
	}
	var out []*operatorv1.EvidenceVerification
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if r := m.GetResult(); r != nil {
			out = append(out, r)
		}
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		// The stored object is read-only; a tamperer with root changes that.
		os.Chmod(path, 0o600)
		if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			t.Fatal(err)
		}
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x80
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestDownloadVerifyAndCustody downloads, exports and verifies an item,
// then alters and removes the stored copy, and checks what each access
// adds to the custody record.
func TestDownloadVerifyAndCustody(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	data := randomBytes(t, 2<<20+3)
	it := h.store("disk.img", data)

	got, info, end, err := h.download(it.ID, "")
	if err != nil || !bytes.Equal(got, data) || info.GetSha256() != it.SHA256 || end.GetSha256() != it.SHA256 || end.GetCustodySeq() != 2 {
		t.Fatalf("download: %d bytes, info %v, end %v, %v", len(got), info, end, err)
	}
	if _, _, end, err = h.download(it.ID, "Outside Examiner Ltd"); err != nil || end.GetCustodySeq() != 3 {
		t.Fatalf("export: %v %v", end, err)
	}

	steps := []struct {
		name        string
		alter       func()
		wantVerdict operatorv1.EvidenceVerdict
		wantGetCode codes.Code
	}{
		{"intact", func() {}, operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK, codes.OK},
		{"a flipped byte", func() { flipByte(t, it.Location, 1<<20) }, operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISMATCH, codes.DataLoss},
		{"restored", func() { flipByte(t, it.Location, 1<<20) }, operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK, codes.OK},
		{"removed", func() { os.Rename(it.Location, it.Location+".moved") }, operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISSING, codes.NotFound},
		{"put back", func() { os.Rename(it.Location+".moved", it.Location) }, operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK, codes.OK},
	}
	for _, s := range steps {
		s.alter()
		res, err := h.verify(it.ID)
		if err != nil || len(res) != 1 || res[0].GetVerdict() != s.wantVerdict || !res[0].GetCustodyOk() {
			t.Fatalf("%s: verify %v %v; want %s", s.name, res, err, s.wantVerdict)
		}
		_, _, _, err = h.download(it.ID, "")
		wantCode(t, err, s.wantGetCode, s.name+": download")
	}

	resp, err := h.operator().GetCustody(context.Background(), &operatorv1.GetCustodyRequest{EvidenceId: it.ID})
	if err != nil || !resp.GetChainOk() {
		t.Fatalf("custody %v %v", resp, err)
	}
	var actions []string
	for _, r := range resp.GetRecords() {
		actions = append(actions, r.GetAction())
		if !strings.HasPrefix(r.GetActor(), "agent:") && r.GetActor() != "operator:alice" {
			t.Errorf("entry %d actor %q", r.GetSeq(), r.GetActor())
		}
	}
	// collected, download, export, then per step a verify and (when the
	// object exists) a download; a download of a missing object is not an
	// access.
	want := "collected download export verify download verify download verify download verify verify download"
	if strings.Join(actions, " ") != want {
		t.Fatalf("custody actions\n got %s\nwant %s", strings.Join(actions, " "), want)
	}
	var export map[string]any
	_ = json.Unmarshal(resp.GetRecords()[2].GetDetailJson(), &export)
	if export["export_to"] != "Outside Examiner Ltd" || export["reason"] != "test" {
		t.Errorf("export entry %v", export)
	}
	if n := h.audited("evidence.verify"); n != 5 {
		t.Errorf("%d verify entries mirrored to the audit log, want 5", n)
	}
	if chk, err := h.st.VerifyAudit(context.Background()); err != nil || !chk.OK {
		t.Fatalf("audit chain %+v %v", chk, err)
	}
	listed, err := h.operator().ListEvidence(context.Background(), &operatorv1.ListEvidenceRequest{RunId: runID})
	if err != nil || len(listed.GetItems()) != 1 || listed.GetItems()[0].GetLastVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
		t.Fatalf("list %v %v", listed, err)
	}
}

// TestCustodyTamperingShows edits the records the way someone with the
// database file could (dropping the append-only triggers first) and checks
// that the custody check names the entry.
func TestCustodyTamperingShows(t *testing.T) {
	tests := []struct {
		name      string
		sql       []string
		recompute bool
		wantSeq   uint64
		want      string
	}{
		{"edited entry", []string{`DROP TRIGGER evidence_custody_no_update`,
			`UPDATE evidence_custody SET detail_json = '{"reason":"nothing to see"}' WHERE seq = 2`}, false, 2, "edited"},
		{"removed entry", []string{`DROP TRIGGER evidence_custody_no_delete`, `DELETE FROM evidence_custody WHERE seq = 2`}, false, 2, "cut"},
		{"removed collection entry", []string{`DROP TRIGGER evidence_custody_no_delete`, `DELETE FROM evidence_custody WHERE seq = 1`}, false, 1, "cut"},
		{"re-hashed entry", []string{`DROP TRIGGER evidence_custody_no_update`,
			`UPDATE evidence_custody SET actor = 'operator:mallory', hash = '` + strings.Repeat("ab", 32) + `' WHERE seq = 2`}, false, 2, "edited"},
		{"swapped hash on the record", []string{`DROP TRIGGER evidence_fixed`,
			`UPDATE evidence SET sha256 = '` + strings.Repeat("0", 64) + `'`}, false, 1, "no longer matches its collection entry"},
		{"last entry removed", []string{`DROP TRIGGER evidence_custody_no_delete`, `DELETE FROM evidence_custody WHERE seq = 3`}, false, 3,
			"has 2 entries, but the controller signed a checkpoint of 3 entries"},
		{"edited and hashes recomputed", []string{`DROP TRIGGER evidence_custody_no_update`,
			`UPDATE evidence_custody SET detail_json = '{"reason":"nothing to see"}' WHERE seq = 2`}, true, 3, "recomputed"},
		{"cut and hashes recomputed", []string{`DROP TRIGGER evidence_custody_no_update`, `DROP TRIGGER evidence_custody_no_delete`,
			`DELETE FROM evidence_custody WHERE seq = 3`, `UPDATE evidence_custody SET actor = 'operator:mallory' WHERE seq = 2`}, true, 3, "was removed"},
		{"checkpoint moved back", []string{`DROP TRIGGER evidence_custody_no_delete`, `DELETE FROM evidence_custody WHERE seq = 3`,
			`UPDATE chain_checkpoints SET length = 2, head_hash = (SELECT hash FROM evidence_custody WHERE seq = 2)`}, false, 2, "not genuine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			it := h.store("a.bin", randomBytes(t, 1000))
			if _, _, _, err := h.download(it.ID, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := h.verify(it.ID); err != nil {
				t.Fatal(err)
			}
			// The triggers refuse tampering until someone removes them.
			if _, err := h.raw().Exec(`UPDATE evidence_custody SET actor = 'x'`); err == nil {
				t.Fatal("the custody record accepted an update")
			}
			for _, q := range tt.sql {
				if _, err := h.raw().Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if tt.recompute {
				recomputeCustody(t, h, it.ID)
			}
			resp, err := h.operator().GetCustody(context.Background(), &operatorv1.GetCustodyRequest{EvidenceId: it.ID})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetChainOk() || resp.GetFirstBadSeq() != tt.wantSeq || !strings.Contains(resp.GetProblem(), tt.want) {
				t.Fatalf("custody check ok=%v seq=%d problem=%q; want seq %d and %q", resp.GetChainOk(), resp.GetFirstBadSeq(), resp.GetProblem(), tt.wantSeq, tt.want)
			}
			res, err := h.verify(it.ID)
			if err != nil || res[0].GetCustodyOk() {
				t.Fatalf("verify %v %v: want the custody reported broken", res, err)
			}
			if v := res[0].GetVerdict(); v != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_CUSTODY_BROKEN && v != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISSING {
				t.Fatalf("verdict %s", v)
			}
		})
	}
}

// makeBundle writes a real evidence bundle for a task and agent.
func makeBundle(t *testing.T, taskID, agentID string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bundle.NewWriter(&buf, bundle.Gzip, bundle.Meta{Collector: bundle.Collector{Name: "host-collect", Version: "1.0.0"}, Profile: "triage",
		Host: bundle.HostIdentity{Hostname: "host-a", AgentID: agentID, BootID: "b00t"}, Task: bundle.TaskIdentity{TaskID: taskID, RunID: runID},
		StartedAt: time.Now()})
	a := w.Artifact("processes")
	if err := a.Record(map[string]any{"pid": 1, "exe": "/sbin/init"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddBytes("/etc/hostname", []byte("host-a\n"), 0o644, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBundlesAreCheckedAtStorage stores bundles and checks what the
// controller records of them; a damaged bundle is kept, marked invalid.
func TestBundlesAreCheckedAtStorage(t *testing.T) {
	good := makeBundle(t, taskA, agentA)
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)/2] ^= 0xff
	tests := []struct {
		name        string
		data        []byte
		wantValid   bool
		wantProblem string
		wantVerdict operatorv1.EvidenceVerdict
	}{
		{"valid bundle", good, true, "", operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK},
		{"bundle of another task", makeBundle(t, taskB, agentA), false, "names task", operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID},
		{"bundle of another agent", makeBundle(t, taskA, agentB), false, "names agent", operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID},
		{"damaged bundle", damaged, false, "", operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_BUNDLE_INVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			it := h.store("host-collect-triage.tar.gz", tt.data)
			b := it.Bundle
			if b == nil || b.Valid != tt.wantValid || !strings.Contains(b.Problem, tt.wantProblem) {
				t.Fatalf("bundle summary %+v", b)
			}
			if tt.wantValid && (b.Members != 3 || b.CollectorName != "host-collect" || b.Profile != "triage" || b.Host.BootID != "b00t" ||
				len(b.Artifacts) != 1 || b.Artifacts[0].Items != 1 || b.ManifestTaskID != taskA) {
				t.Fatalf("bundle summary %+v", b)
			}
			res, err := h.verify(it.ID)
			if err != nil || res[0].GetVerdict() != tt.wantVerdict {
				t.Fatalf("verify %v %v; want %s", res, err, tt.wantVerdict)
			}
			if tt.wantValid && res[0].GetMembersVerified() != 2 {
				t.Errorf("%d members verified", res[0].GetMembersVerified())
			}
			sum := sha256.Sum256(tt.data)
			if it.SHA256 != hex.EncodeToString(sum[:]) {
				t.Error("the stored hash is not the upload's")
			}
		})
	}
}

// recomputeCustody re-links and re-hashes an item's custody record with
// the exported hash function, as someone hiding an edit would.
func recomputeCustody(t *testing.T, h *harness, id string) {
	t.Helper()
	entries, err := h.svc.Custody(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	prev := store.GenesisHash
	for _, e := range entries {
		e.PrevHash = prev
		e.Hash = evidence.CustodyHash(e)
		if _, err := h.raw().Exec(`UPDATE evidence_custody SET prev_hash = ?, hash = ? WHERE evidence_id = ? AND seq = ?`, e.PrevHash, e.Hash, id, e.Seq); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	it, err := h.svc.GetItem(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if chk := evidence.CheckCustody(it, entries); !chk.OK {
		t.Fatalf("the recomputed chain does not verify on its own: %+v", chk)
	}
}

// TestCustodyAnchor checks an item's custody record against a head
// exported earlier, after the tail and the stored checkpoints were deleted.
func TestCustodyAnchor(t *testing.T) {
	tests := []struct {
		name   string
		sql    []string
		anchor func(a *operatorv1.ChainCheckpoint)
		want   string
	}{
		{name: "record extends the anchor"},
		{name: "tail and checkpoints deleted", sql: []string{`DROP TRIGGER evidence_custody_no_delete`, `DELETE FROM evidence_custody WHERE seq >= 2`,
			`DELETE FROM chain_checkpoints`}, want: "against the anchor: the custody record has 1 entries"},
		{name: "anchor altered", anchor: func(a *operatorv1.ChainCheckpoint) { a.Length = 1 }, want: "not genuine"},
		{name: "anchor of another item", anchor: func(a *operatorv1.ChainCheckpoint) { a.Chain = store.CustodyChain("evd-other") }, want: "not of the custody record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			it := h.store("a.bin", randomBytes(t, 1000))
			if _, err := h.verify(it.ID); err != nil {
				t.Fatal(err)
			}
			resp, err := h.operator().GetCustody(context.Background(), &operatorv1.GetCustodyRequest{EvidenceId: it.ID})
			if err != nil || !resp.GetChainOk() || resp.GetCheckpoint().GetLength() != 2 {
				t.Fatalf("custody %v %v: want a checkpoint of entry 2", resp, err)
			}
			anchor := resp.GetCheckpoint()
			if tt.anchor != nil {
				tt.anchor(anchor)
			}
			if _, _, _, err := h.download(it.ID, ""); err != nil {
				t.Fatal(err)
			}
			for _, q := range tt.sql {
				if _, err := h.raw().Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			stream, err := h.operator().VerifyEvidence(context.Background(), &operatorv1.VerifyEvidenceRequest{EvidenceId: it.ID, Anchor: anchor})
			if err != nil {
				t.Fatal(err)
			}
			var res *operatorv1.EvidenceVerification
			for {
				m, err := stream.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if r := m.GetResult(); r != nil {
					res = r
				}
			}
			if tt.want == "" {
				if res.GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK || !res.GetCustodyOk() {
					t.Fatalf("verification %v: want ok", res)
				}
				return
			}
			if res.GetCustodyOk() || res.GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_CUSTODY_BROKEN || !strings.Contains(res.GetProblem(), tt.want) {
				t.Fatalf("verification %v: want custody broken with %q", res, tt.want)
			}
		})
	}
}
