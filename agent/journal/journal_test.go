package journal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/agent/journal"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

func TestJournalSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	j, err := journal.Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	exp := now.Add(time.Hour)
	for _, id := range []string{"done-acked", "done-unacked", "running"} {
		if err := j.Start(id, []byte(id), exp); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Finish(&agentv1.TaskResult{TaskId: "done-acked", Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED})
	_ = j.Ack("done-acked")
	_ = j.Finish(&agentv1.TaskResult{TaskId: "done-unacked", Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: "boom"})
	if err := j.Start("other", []byte("done-acked"), exp); !errors.Is(err, journal.ErrNonceReused) {
		t.Fatalf("nonce reuse: %v", err)
	}
	j.Close()

	// A torn line at the end, as after a crash mid-write.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"fin`)
	f.Close()

	j, err = journal.Open(path, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	tests := []struct {
		id                string
		wantResult, acked bool
	}{
		{"done-acked", true, true},
		{"done-unacked", true, false},
		{"running", false, false},
	}
	for _, tt := range tests {
		e, ok := j.Lookup(tt.id)
		if !ok || (e.Result != nil) != tt.wantResult || e.Acked != tt.acked {
			t.Errorf("%s: %+v ok=%v", tt.id, e, ok)
		}
	}
	if un := j.Unacked(); len(un) != 1 || un[0].GetError() != "boom" {
		t.Errorf("unacked %v", un)
	}
	if in := j.Interrupted(); len(in) != 1 || in[0].TaskID != "running" {
		t.Errorf("interrupted %v", in)
	}
}

func TestJournalDropsExpired(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	j, _ := journal.Open(path, func() time.Time { return now })
	_ = j.Start("old", []byte("n1"), now.Add(time.Minute))
	_ = j.Finish(&agentv1.TaskResult{TaskId: "old"})
	_ = j.Ack("old")
	_ = j.Start("old-unacked", []byte("n2"), now.Add(time.Minute))
	_ = j.Finish(&agentv1.TaskResult{TaskId: "old-unacked"})
	j.Close()
	later := now.Add(time.Hour)
	j, _ = journal.Open(path, func() time.Time { return later })
	defer j.Close()
	if _, ok := j.Lookup("old"); ok {
		t.Error("an acknowledged entry past its expiry was kept")
	}
	if _, ok := j.Lookup("old-unacked"); !ok {
		t.Error("an unacknowledged result was dropped before the controller stored it")
	}
}
