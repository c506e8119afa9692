package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestOperatorPlaybookRunIsTheCLIsTrace: `firebreak playbook run` against a
// real controller and agent, exporting to an in-process OTLP receiver with
// a ten-minute batch delay (only the flushes at stop deliver). The playbook
// run continues the CLI's trace: its playbook.start span and every
// playbook.step descend from the command's span, each step's agent task and
// plugin execution under it; nothing is in ERROR and no parent is missing.
// The case report, in JSON and in Markdown, names that trace.
func TestOperatorPlaybookRunIsTheCLIsTrace(t *testing.T) {
	sink := e2e.StartOTLPSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.HTTPURL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	b := e2e.Build(t)
	pbDir := filepath.Join(t.TempDir(), "playbooks")
	if err := os.MkdirAll(pbDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pbDir, "rehearse-instance.yaml"), []byte(incidentPlaybook), 0o600); err != nil {
		t.Fatal(err)
	}
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--playbook-dir", pbDir}})
	a := c.StartAgent(t, e2e.AgentOptions{Name: "web-1", Token: c.Token(t, "host", 1), Labels: []string{"instance_id=i-0a1b2c3d4e5f67890"}})
	c.WaitConnected(t, a.AgentID(t))

	var run incidentRun
	c.MustJSON(t, &run, 0, "playbook", "run", "rehearse-instance", "--input", "instance_id=i-0a1b2c3d4e5f67890", "--wait")
	if run.Status != "succeeded" || len(run.Steps) != 3 {
		t.Fatalf("playbook run %+v", run)
	}
	var report struct {
		Traces []struct {
			TraceID        string   `json:"trace_id"`
			PlaybookRunIDs []string `json:"playbook_run_ids"`
		} `json:"traces"`
	}
	r := c.MustJSON(t, nil, 0, "case", "report", run.CaseID, "--format", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &report); err != nil {
		t.Fatalf("the report %q: %v", r.Stdout, err)
	}
	md := c.CLI(t, "case", "report", run.CaseID)
	if err := a.Stop(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("controller exit: %v", err)
	}

	spans := sink.Spans()
	byID := map[string]e2e.Span{}
	var root *e2e.Span
	for i, s := range spans {
		byID[s.SpanID] = s
		if s.Name == "firebreak playbook run" && s.ParentID == "" {
			root = &spans[i]
		}
	}
	if root == nil || root.Resource["service.name"] != "firebreak-cli" {
		t.Fatalf("no root span of firebreak-cli for `firebreak playbook run`: %s", names(spans))
	}
	count := map[string]int{}
	for _, s := range spans {
		if s.TraceID != root.TraceID {
			continue
		}
		if s.Status == 2 {
			t.Errorf("span %q (%s) has ERROR status: %s", s.Name, s.Resource["service.name"], s.StatusMessage)
		}
		p, hops := s, 0
		for p.ParentID != "" && hops < 128 {
			q, ok := byID[p.ParentID]
			if !ok {
				t.Errorf("span %q (%s) names a parent that never arrived", p.Name, p.Resource["service.name"])
				break
			}
			p, hops = q, hops+1
		}
		switch {
		case s.Name == "playbook.start":
			count["start"]++
			if s.Attrs["firebreak.playbook.run.id"] != run.ID {
				t.Errorf("playbook.start names run %q, want %s", s.Attrs["firebreak.playbook.run.id"], run.ID)
			}
		case s.Name == "playbook.step":
			count["step"]++
		case strings.HasPrefix(s.Name, "task ") && s.Resource["service.name"] == "firebreak-agent":
			count["task"]++
		case strings.HasSuffix(s.Name, "/Execute") && strings.HasPrefix(s.Resource["service.name"], "firebreak-plugin-"):
			count["plugin"]++
		}
	}
	if count["start"] != 1 || count["step"] != 3 || count["task"] != 3 || count["plugin"] != 3 {
		t.Errorf("in the command's trace: %v; want one playbook.start, and three each of playbook.step, agent task and plugin Execute", count)
	}
	found := false
	for _, tr := range report.Traces {
		found = found || (tr.TraceID == root.TraceID && len(tr.PlaybookRunIDs) == 1 && tr.PlaybookRunIDs[0] == run.ID)
	}
	if !found {
		t.Errorf("the JSON case report's traces %+v do not name the command's trace %s with playbook run %s", report.Traces, root.TraceID, run.ID)
	}
	if md.Exit != 0 || !strings.Contains(md.Stdout, "## Traces") || !strings.Contains(md.Stdout, root.TraceID) {
		t.Errorf("the Markdown case report (exit %d) does not list the command's trace %s", md.Exit, root.TraceID)
	}
}
