package controller_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/playbookrun/playbookruntest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

const collectPlaybook = `apiVersion: firebreak/v1
kind: Playbook
metadata:
  name: collect
  version: 1
steps:
  - id: collect
    phase: analyze
    action: record
    targets: {selector: role=host}
    params: {mark: triage, artifact: "ps output of the compromised host"}
`

// TestCaseReportShowsStoredEvidenceWithCustody runs a step that stores
// evidence and checks that the case report shows the evidence store's hash
// and custody record for it.
func TestCaseReportShowsStoredEvidenceWithCustody(t *testing.T) {
	dir := t.TempDir()
	playbookruntest.WritePlaybook(t, dir, "collect", collectPlaybook)
	c := playbookruntest.StartController(t, playbookruntest.Options{Incident: controller.IncidentConfig{PlaybookDir: dir}})
	a := c.StartAgent(t, playbookruntest.AgentOptions{Name: "host-0", Actions: []sdk.Action{&playbookruntest.Recorder{Name: "record"}}})
	c.WaitConnected(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, _, err := c.Playbooks.Start(ctx, playbookrun.StartRequest{Playbook: "collect", CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = c.Playbooks.Wait(ctx, r.ID); err != nil || r.Status != playbookrun.StatusSucceeded {
		t.Fatalf("playbook run %+v: %v", r, err)
	}
	ids := r.Step("collect").EvidenceIDs()
	if len(ids) != 1 {
		t.Fatalf("the step stored %d evidence items, want 1", len(ids))
	}
	rep, err := c.Cases.Report(ctx, r.CaseID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("ps output of the compromised host"))
	if len(rep.Evidence) != 1 {
		t.Fatalf("report evidence %+v", rep.Evidence)
	}
	e := rep.Evidence[0]
	if !e.InStore || e.ID != ids[0] || e.SHA256 != hex.EncodeToString(sum[:]) || !e.CustodyIntact || len(e.Custody) == 0 || e.Name != "triage.txt" {
		t.Fatalf("report evidence %+v: want the store's hash, name and an intact custody record", e)
	}
}
