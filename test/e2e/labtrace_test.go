package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestLabDemoIsOneTrace runs `firebreak lab demo` (simulated hosts) against
// an in-process OTLP receiver, with a ten-minute batch delay so that only
// the flushes at stop deliver. The demo's command, the finding it sends,
// the playbook run and each of its steps, the agents' tasks, the plugins'
// executions and the AWS calls they make are one trace; the AWS spans carry
// the rpc.* and aws.* attributes; no parent is missing; and no span is in
// ERROR under a step that succeeded.
func TestLabDemoIsOneTrace(t *testing.T) {
	b := e2e.Build(t)
	sink := e2e.StartOTLPSink(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Firebreak, "lab", "demo", "--simulated", "--json")
	cmd.Env = append(os.Environ(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+sink.GRPCAddr, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_BSP_SCHEDULE_DELAY=600000")
	out, err := cmd.Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	var res lab.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil || err != nil || !res.Contained {
		t.Fatalf("lab demo: %v (%v), contained %v\nstdout: %s\nstderr: %s", err, jerr, res.Contained, out, stderr)
	}

	spans := sink.Spans()
	byID := map[string]e2e.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var roots []e2e.Span
	for _, s := range spans {
		if s.Name == "firebreak lab demo" && s.ParentID == "" {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 || roots[0].Resource["service.name"] != "firebreak-lab" {
		t.Fatalf("%d root spans for `firebreak lab demo` (of %d spans), want one from firebreak-lab", len(roots), len(spans))
	}
	root := roots[0]
	var tr []e2e.Span
	for _, s := range spans {
		if s.TraceID == root.TraceID {
			tr = append(tr, s)
		}
	}
	// descends reports whether s descends, parent by parent, from the
	// root, and returns the playbook.step span on the way, if any.
	descends := func(s e2e.Span) (bool, *e2e.Span) {
		var step *e2e.Span
		for hops := 0; hops < 128; hops++ {
			if s.Name == "playbook.step" && step == nil {
				c := s
				step = &c
			}
			if s.SpanID == root.SpanID {
				return true, step
			}
			p, ok := byID[s.ParentID]
			if !ok {
				return false, step
			}
			s = p
		}
		return false, step
	}
	stepStatus := map[string]string{}
	for _, st := range res.Steps {
		stepStatus[st.ID] = st.Status
	}
	count := map[string]int{}
	services := map[string]bool{}
	for _, s := range tr {
		services[s.Resource["service.name"]] = true
		ok, step := descends(s)
		if !ok {
			t.Errorf("span %q (%s) does not descend from the demo's span: a parent is missing", s.Name, s.Resource["service.name"])
		}
		if s.Status == 2 {
			switch {
			case step == nil:
				t.Errorf("span %q (%s) outside any step has ERROR status: %s", s.Name, s.Resource["service.name"], s.StatusMessage)
			case stepStatus[step.Attrs["firebreak.playbook.step"]] == "succeeded":
				t.Errorf("span %q (%s) of step %s, which succeeded, has ERROR status: %s", s.Name, s.Resource["service.name"],
					step.Attrs["firebreak.playbook.step"], s.StatusMessage)
			}
		}
		switch {
		case s.Name == "finding.intake":
			count["intake"]++
			if s.Attrs["firebreak.playbook.run.id"] != res.PlaybookRunID || s.Attrs["firebreak.case.id"] != res.CaseID {
				t.Errorf("finding.intake attributes %v: want playbook run %s and case %s", s.Attrs, res.PlaybookRunID, res.CaseID)
			}
		case s.Name == "playbook.start":
			count["start"]++
		case s.Name == "playbook.step":
			id := s.Attrs["firebreak.playbook.step"]
			count["step:"+id]++
			if s.Attrs["firebreak.playbook.run.id"] != res.PlaybookRunID || s.Attrs["firebreak.action"] == "" || s.Attrs["firebreak.playbook.step.status"] != stepStatus[id] {
				t.Errorf("playbook.step %s attributes %v: want the run, the action and status %s", id, s.Attrs, stepStatus[id])
			}
		case strings.HasPrefix(s.Name, "task ") && s.Resource["service.name"] == "firebreak-agent":
			count["task"]++
		case strings.HasSuffix(s.Name, "/Execute") && strings.HasPrefix(s.Resource["service.name"], "firebreak-plugin-"):
			count["plugin"]++
		case s.Attrs["rpc.system.name"] == "aws-api":
			count["aws"]++
			if s.Attrs["rpc.method"] == "" || s.Attrs["aws.region"] == "" || s.Attrs["aws.request_id"] == "" {
				t.Errorf("AWS span %q attributes %v: want rpc.method, aws.region and aws.request_id", s.Name, s.Attrs)
			}
		}
	}
	if count["intake"] != 1 || count["start"] != 1 {
		t.Errorf("finding.intake spans %d, playbook.start spans %d: want one each in the demo's trace", count["intake"], count["start"])
	}
	for _, st := range res.Steps {
		if count["step:"+st.ID] != 1 {
			t.Errorf("step %s has %d playbook.step spans in the demo's trace, want 1", st.ID, count["step:"+st.ID])
		}
	}
	if count["task"] == 0 || count["plugin"] == 0 || count["aws"] == 0 {
		t.Errorf("agent task spans %d, plugin Execute spans %d, AWS call spans %d: want some of each in the demo's trace", count["task"], count["plugin"], count["aws"])
	}
	for _, svc := range []string{"firebreak-lab", "firebreak-agent"} {
		if !services[svc] {
			t.Errorf("no %s span in the demo's trace (services %v)", svc, services)
		}
	}
	t.Logf("the demo's trace: %d spans from %d services; %v", len(tr), len(services), count)
}
