package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// TestEvidenceCustody: an item is stored with its first custody entry and
// its upload marked stored; later entries chain onto it; a missing item or
// task is ErrNotFound.
func TestEvidenceCustody(t *testing.T) { eachBackend(t, testEvidenceCustody) }

func testEvidenceCustody(t *testing.T, b backend) {
	ctx := context.Background()
	var et store.EvidenceStore = b.openFresh(t)
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	if err := et.PutUpload(ctx, &store.EvidenceUpload{ID: "up-1", TaskID: "task-1", State: "open", HashState: []byte{}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	first := &store.CustodyEntry{EvidenceID: "ev-1", At: t0, Actor: "agent:a1", Action: "collected", Detail: json.RawMessage(`{ "a": 1 }`)}
	if err := et.InsertEvidence(ctx, &store.EvidenceItem{ID: "ev-1", UploadID: "up-1", TaskID: "task-1", SHA256: "ab",
		StoredAt: t0, BundleJSON: []byte("null")}, first); err != nil {
		t.Fatal(err)
	}
	second := &store.CustodyEntry{EvidenceID: "ev-1", At: t0.Add(time.Minute), Actor: "operator:alice", Action: "download"}
	if err := et.AppendCustody(ctx, second); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  *store.CustodyEntry
		seq  int64
		prev string
	}{
		{"first entry", first, 1, store.GenesisHash},
		{"second entry", second, 2, first.Hash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got.Seq != tt.seq || tt.got.PrevHash != tt.prev || tt.got.Hash != store.CustodyHash(tt.got) {
				t.Errorf("seq %d prev %s hash %s; want seq %d prev %s and the entry's own hash", tt.got.Seq, tt.got.PrevHash, tt.got.Hash, tt.seq, tt.prev)
			}
		})
	}
	if string(first.Detail) != `{"a":1}` {
		t.Errorf("detail %s was not compacted", first.Detail)
	}
	entries, err := et.Custody(ctx, "ev-1")
	if err != nil || len(entries) != 2 || entries[1].Hash != second.Hash {
		t.Fatalf("custody %d entries (%v)", len(entries), err)
	}
	u, err := et.GetUpload(ctx, "up-1")
	if err != nil || u.State != "stored" || u.EvidenceID != "ev-1" {
		t.Fatalf("upload %+v (%v), want stored as ev-1", u, err)
	}
	if ids, err := et.TaskEvidenceIDs(ctx, "task-1"); err != nil || len(ids) != 1 || ids[0] != "ev-1" {
		t.Fatalf("task evidence %v (%v)", ids, err)
	}
	if _, err := et.GetEvidence(ctx, "ev-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing item: %v, want ErrNotFound", err)
	}
	if _, err := et.TaskOwnerOf(ctx, "task-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing task: %v, want ErrNotFound", err)
	}
}

// TestUploadStagingRoundTrip checkpoints an upload staged in the backend
// and reads back its multipart id, parts and seal; an upload written
// before the staging columns existed reads as staged locally.
func TestUploadStagingRoundTrip(t *testing.T) { eachBackend(t, testUploadStagingRoundTrip) }

func testUploadStagingRoundTrip(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openFresh(t)
	t0 := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	if err := s.PutUpload(ctx, &store.EvidenceUpload{ID: "up-1", TaskID: "task-1", State: "open", HashState: []byte{}, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		staging store.UploadStaging
	}{
		{"local staging", store.UploadStaging{}},
		{"one part", store.UploadStaging{MultipartID: "mp-1", Parts: []store.StagedPart{{Number: 1, ETag: `"e1"`, Size: 8 << 20, SHA256: "c2hh"}},
			Seal: "k:00"}},
		{"two parts", store.UploadStaging{MultipartID: "mp-1", Parts: []store.StagedPart{{Number: 1, ETag: `"e1"`, Size: 8 << 20, SHA256: "c2hh"},
			{Number: 2, ETag: `"e2"`, Size: 5, SHA256: "c2hi"}}, Seal: "k:01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var committed int64
			for _, p := range tt.staging.Parts {
				committed += p.Size
			}
			if err := s.CheckpointUpload(ctx, "up-1", committed, []byte("state"), tt.staging, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			u, err := s.GetUpload(ctx, "up-1")
			if err != nil {
				t.Fatal(err)
			}
			if u.Committed != committed || u.Staging.MultipartID != tt.staging.MultipartID || u.Staging.Seal != tt.staging.Seal ||
				len(u.Staging.Parts) != len(tt.staging.Parts) {
				t.Fatalf("upload %+v, want staging %+v", u, tt.staging)
			}
			for i, p := range tt.staging.Parts {
				if u.Staging.Parts[i] != p {
					t.Errorf("part %d: %+v, want %+v", i, u.Staging.Parts[i], p)
				}
			}
		})
	}
}
