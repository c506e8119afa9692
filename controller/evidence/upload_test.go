package evidence_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

func TestUploadIsVerifiedStoredAndRecorded(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	data := randomBytes(t, 3<<20+12345)
	it := h.store("memory.bin", data)

	want := hex.EncodeToString(sum256(data))
	if it.SHA256 != want || it.Size != int64(len(data)) || it.TaskID != taskA || it.RunID != runID || it.CaseID != caseID ||
		it.Operator != "alice" || it.AgentID != agentA || it.CertSerial != "5e71a1" || it.CertFingerprint == "" || it.Hostname != "host-a" ||
		it.Backend != "local" || it.Resumes != 0 || it.Bundle != nil {
		t.Fatalf("item %+v", it)
	}
	local := h.backend.(*evidence.Local)
	if it.Location != local.Path(want) || !strings.Contains(it.Location, "/sha256/"+want[:2]+"/"+want) {
		t.Fatalf("location %s", it.Location)
	}
	stored, err := os.ReadFile(it.Location)
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("the stored object differs from the upload (%v)", err)
	}
	if fi, _ := os.Stat(it.Location); fi.Mode().Perm() != 0o400 {
		t.Errorf("stored object mode %v, want read-only", fi.Mode())
	}
	if left, _ := os.ReadDir(h.cfg.StagingDir); len(left) != 0 {
		t.Errorf("staging not cleaned: %v", left)
	}
	entries, err := h.svc.Custody(context.Background(), it.ID)
	if err != nil || len(entries) != 1 || entries[0].Action != evidence.ActionCollected || entries[0].Actor != "agent:"+agentA {
		t.Fatalf("custody %v %v", entries, err)
	}
	if chk := evidence.CheckCustody(it, entries); !chk.OK {
		t.Fatalf("custody check: %+v", chk)
	}
	if h.audited("evidence.collected") != 1 {
		t.Errorf("audit %v", h.audit)
	}

	// Opening the stored upload again answers with everything committed,
	// and finish returns the same item: an agent that lost "stored" can
	// ask again.
	u, err := h.open(agentA, taskA, "memory.bin")
	if err != nil || u.committed != uint64(len(data)) {
		t.Fatalf("reopen: committed %d, %v", u.committed, err)
	}
	again, err := u.finish(len(data), sum256(data))
	if err != nil || again.GetEvidenceId() != it.ID {
		t.Fatalf("finish again: %v %v", again, err)
	}

	// The same bytes from another task are another item with its own
	// custody, sharing the content-addressed object.
	u, err = h.open(agentB, taskB, "memory.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.sendAll(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	other, err := u.finish(len(data), sum256(data))
	if err != nil || other.GetEvidenceId() == it.ID || other.GetSha256() != want {
		t.Fatalf("second item: %v %v", other, err)
	}
}

// TestUploadResumes drops the stream part-way, and restarts the
// controller part-way, and checks that each resume starts at the committed
// offset and that the stored bytes hash as uploaded.
func TestUploadResumes(t *testing.T) {
	tests := []struct {
		name    string
		restart bool
	}{
		{"dropped connection", false},
		{"controller restart", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			data := randomBytes(t, 2<<20+777)
			u, err := h.open(agentA, taskA, "triage.bin")
			if err != nil {
				t.Fatal(err)
			}
			// 1 MiB arrives, then the link dies mid-chunk-stream.
			if err := u.sendAll(data[:1<<20], 100<<10); err != nil {
				t.Fatal(err)
			}
			// A partial chunk past the last one sent must not be committed:
			// the server never saw it.
			u.drop()
			if tt.restart {
				h.start()
			}
			var resumed *agentv1.EvidenceStored
			for attempt := 0; attempt < 2; attempt++ {
				u, err = h.open(agentA, taskA, "triage.bin")
				if err != nil {
					// The old stream may still hold the upload for a moment.
					continue
				}
				if u.committed == 0 || u.committed > 1<<20 {
					t.Fatalf("resumed at %d; want a committed offset in (0, %d]", u.committed, 1<<20)
				}
				if err := u.sendAll(data, 256<<10); err != nil {
					t.Fatal(err)
				}
				resumed, err = u.finish(len(data), sum256(data))
				if err != nil {
					t.Fatal(err)
				}
				break
			}
			if resumed == nil {
				t.Fatal("the upload could not be resumed")
			}
			it, err := h.svc.GetItem(context.Background(), resumed.GetEvidenceId())
			if err != nil {
				t.Fatal(err)
			}
			if it.SHA256 != hex.EncodeToString(sum256(data)) || it.Size != int64(len(data)) || it.Resumes != 1 {
				t.Fatalf("item after resume: %+v", it)
			}
			got, _ := os.ReadFile(it.Location)
			if !bytes.Equal(got, data) {
				t.Fatal("the stored bytes differ from the upload")
			}
		})
	}
}

// TestUploadRefusals checks each refusal: its status code, that nothing
// from the refused message is committed, and what is audited.
func TestUploadRefusals(t *testing.T) {
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	bad := sum256([]byte("not the chunk"))
	corrupt := append([]byte(nil), data[128<<10:192<<10]...)
	corrupt[100] ^= 0x01
	v1 := agentv1.UploadProtocol_UPLOAD_PROTOCOL_UNSPECIFIED
	v3 := agentv1.UploadProtocol(3)
	tests := []struct {
		name     string
		agent    string
		task     string
		fileName string
		// protocol is the upload protocol the agent speaks (nil: the
		// controller's).
		protocol *agentv1.UploadProtocol
		maxBytes int64
		run      func(h *harness, u *upload) error
		want     codes.Code
		// wantMsg is in the refusal's message.
		wantMsg   string
		wantAudit string
		// wantAuditDetail is in the audit record's detail.
		wantAuditDetail []string
		// wantCommitted is the offset a later open resumes at (-1: no check).
		wantCommitted int64
	}{
		{name: "corrupted chunk", run: func(_ *harness, u *upload) error {
			if err := u.chunk(0, data[:64<<10], nil); err != nil {
				return err
			}
			if err := u.chunk(64<<10, data[64<<10:128<<10], nil); err != nil {
				return err
			}
			// One bit flipped after the agent computed the chunk's CRC32C.
			if err := u.chunk(128<<10, corrupt, data[128<<10:192<<10]); err != nil {
				return err
			}
			return u.outcome()
		}, want: codes.DataLoss, wantMsg: fmt.Sprintf("chunk at offset %d (%d bytes) does not match its CRC32C (got %08x, the agent sent %08x)",
			128<<10, 64<<10, crc32c(corrupt), crc32c(data[128<<10:192<<10])),
			wantAudit: "evidence.chunk_refused", wantAuditDetail: []string{fmt.Sprintf(`"claimed_crc32c":"%08x"`, crc32c(data[128<<10:192<<10])),
				fmt.Sprintf(`"crc32c":"%08x"`, crc32c(corrupt)), fmt.Sprintf(`"offset":%d`, 128<<10)}, wantCommitted: 128 << 10},
		{name: "chunk with a wrong CRC32C", run: func(_ *harness, u *upload) error {
			if err := u.chunk(0, data[:1000], bad); err != nil {
				return err
			}
			return u.outcome()
		}, want: codes.DataLoss, wantMsg: "does not match its CRC32C", wantAudit: "evidence.chunk_refused", wantCommitted: 0},
		{name: "agent of upload protocol 1", protocol: &v1, want: codes.FailedPrecondition,
			wantMsg:       "the agent speaks upload protocol 1 (a SHA-256 per chunk; it states no version), but this controller speaks upload protocol 2 only (a CRC32C per chunk): upgrade the agent",
			wantCommitted: -1},
		{name: "agent of an unknown upload protocol", protocol: &v3, want: codes.FailedPrecondition,
			wantMsg: "the agent speaks upload protocol 3 (unknown to this controller), but this controller speaks upload protocol 2 only", wantCommitted: -1},
		{name: "gap in offsets", run: func(_ *harness, u *upload) error {
			if err := u.chunk(0, data[:1000], nil); err != nil {
				return err
			}
			if err := u.chunk(2000, data[2000:3000], nil); err != nil {
				return err
			}
			return u.outcome()
		}, want: codes.FailedPrecondition, wantCommitted: 1000},
		{name: "chunk over 1 MiB", run: func(_ *harness, u *upload) error {
			if err := u.chunk(0, make([]byte, 1<<20+1), nil); err != nil {
				return err
			}
			return u.outcome()
		}, want: codes.InvalidArgument, wantCommitted: 0},
		{name: "over the size cap", maxBytes: 100 << 10, run: func(_ *harness, u *upload) error {
			if err := u.sendAll(data, 64<<10); err != nil {
				return err
			}
			return u.outcome()
		}, want: codes.ResourceExhausted, wantCommitted: 64 << 10},
		{name: "whole hash mismatch", run: func(_ *harness, u *upload) error {
			if err := u.sendAll(data, 64<<10); err != nil {
				return err
			}
			_, err := u.finish(len(data), bad)
			return err
		}, want: codes.DataLoss, wantAudit: "evidence.refused", wantCommitted: 0},
		{name: "size mismatch", run: func(_ *harness, u *upload) error {
			if err := u.sendAll(data, 64<<10); err != nil {
				return err
			}
			_, err := u.finish(len(data)+1, sum256(data))
			return err
		}, want: codes.DataLoss, wantAudit: "evidence.refused", wantCommitted: 0},
		{name: "task ended during the upload", run: func(h *harness, u *upload) error {
			if err := u.sendAll(data, 64<<10); err != nil {
				return err
			}
			h.endTask(taskA, agentv1.TaskStatus_TASK_STATUS_TIMED_OUT)
			_, err := u.finish(len(data), sum256(data))
			return err
		}, want: codes.FailedPrecondition, wantCommitted: -1},
		{name: "another agent's task", agent: agentB, task: taskA, want: codes.PermissionDenied, wantAudit: "evidence.upload_refused", wantCommitted: -1},
		{name: "ended task", task: taskClosed, want: codes.FailedPrecondition, wantCommitted: -1},
		{name: "unknown task", task: "tsk-nosuchtask000000", want: codes.NotFound, wantCommitted: -1},
		{name: "name with a slash", fileName: "../../etc/passwd", want: codes.InvalidArgument, wantCommitted: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{maxBytes: tt.maxBytes})
			agent, task, name := agentA, taskA, "x.bin"
			if tt.agent != "" {
				agent = tt.agent
			}
			if tt.task != "" {
				task = tt.task
			}
			if tt.fileName != "" {
				name = tt.fileName
			}
			protocol := evidence.Protocol
			if tt.protocol != nil {
				protocol = *tt.protocol
			}
			u, err := h.openSpeaking(agent, task, name, protocol)
			if err == nil {
				err = tt.run(h, u)
			}
			wantCode(t, err, tt.want, tt.name)
			if !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("refusal %q; want it to say %q", status.Convert(err).Message(), tt.wantMsg)
			}
			if tt.wantAudit != "" && h.auditedWith(tt.wantAudit, tt.wantAuditDetail...) != 1 {
				t.Errorf("audit log %v; want one %s with %q", h.audit, tt.wantAudit, tt.wantAuditDetail)
			}
			if items, _ := h.svc.ListItems(context.Background(), evidence.Filter{}); len(items) != 0 {
				t.Errorf("%d items stored after a refusal", len(items))
			}
			if tt.wantCommitted < 0 {
				return
			}
			var again *upload
			for i := 0; i < 50 && again == nil; i++ {
				again, _ = h.open(agentA, taskA, "x.bin")
			}
			if again == nil || int64(again.committed) != tt.wantCommitted {
				t.Fatalf("a new stream resumes at %v; want %d", again, tt.wantCommitted)
			}
			staged, err := os.Stat(h.cfg.StagingDir + "/" + again.uploadID + ".part")
			if err != nil || staged.Size() != tt.wantCommitted {
				t.Fatalf("staged file %v, %v; want %d bytes", staged, err, tt.wantCommitted)
			}
		})
	}
}

// TestAbandonedUploadsAreRemoved ends a task with an upload half done and
// checks the janitor removes its staged bytes.
func TestAbandonedUploadsAreRemoved(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	u, err := h.open(agentA, taskA, "half.bin")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.sendAll(randomBytes(t, 200<<10), 64<<10); err != nil {
		t.Fatal(err)
	}
	u.drop()
	ctx := context.Background()
	h.endTask(taskA, agentv1.TaskStatus_TASK_STATUS_FAILED)
	part := h.cfg.StagingDir + "/" + evidence.UploadID(taskA, "half.bin") + ".part"
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	h.start() // no stream holds the upload any more
	go func() { done <- h.svc.Run(ctx) }()
	// The janitor removes the staged bytes, then audits the removal with
	// Run's context: wait for both before cancelling it.
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(part); os.IsNotExist(err) && h.audited("evidence.upload_abandoned") > 0 {
			break
		}
		if i == 199 {
			t.Fatalf("the staged bytes of the abandoned upload are still there, or their removal was not audited")
		}
		waitABit()
	}
	cancel()
	<-done
	if h.audited("evidence.upload_abandoned") != 1 {
		t.Errorf("audit %v", h.audit)
	}
	_, err = h.open(agentA, taskA, "half.bin")
	wantCode(t, err, codes.FailedPrecondition, "upload for the ended task")
}

// endTask gives a task a final status in the store.
func (h *harness) endTask(id string, st agentv1.TaskStatus) {
	h.t.Helper()
	_, tasks, err := h.st.GetRun(context.Background(), runID)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.ID == id {
			tk.Status = st
			if err := h.st.SaveTasks(context.Background(), []*store.Task{tk}, nil); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}
