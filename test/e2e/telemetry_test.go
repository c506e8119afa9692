package e2e_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestOneTracePerOperatorCommand runs a real controller, agent and CLI
// against an in-process OTLP receiver, the controller and CLI over gRPC and
// the agent (and so its plugins) over HTTP/protobuf. The batch delay is ten
// minutes, so only the flush at each stop can deliver.
func TestOneTracePerOperatorCommand(t *testing.T) {
	sink := e2e.StartOTLPSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+sink.GRPCAddr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=e2e")
	t.Setenv("OTEL_LOGS_EXPORTER", "otlp")
	t.Setenv("OTEL_BLRP_SCHEDULE_DELAY", "600000")
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--metrics-listen", "127.0.0.1:0"}})
	tok := c.Token(t, "host", 1)
	a := c.StartAgent(t, e2e.AgentOptions{Name: "traced", Token: tok,
		Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.HTTPURL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}})
	id := a.AgentID(t)
	c.WaitConnected(t, id)

	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "sysinfo", "--select", "all", "--wait")
	if run.Status != "succeeded" {
		t.Fatalf("run %+v", run)
	}
	// A collection, for the evidence upload's spans.
	var collected e2e.RunJSON
	c.MustJSON(t, &collected, 0, "collect", "--select", "all", "--artifact", "users", "--wait", "--reason", "trace the upload")
	if collected.Status != "succeeded" {
		t.Fatalf("collect %+v", collected)
	}
	// The documented metrics are on the controller's Prometheus endpoint.
	metrics := scrape(t, c)
	for _, want := range []struct {
		series string
		min    float64
	}{
		{`firebreak_agents_connected`, 1},
		{`firebreak_store_up`, 1},
		{`firebreak_tasks_dispatched_total{firebreak_action="sysinfo"`, 1},
		{`firebreak_tasks_finished_total{firebreak_action="sysinfo",firebreak_task_status="succeeded"`, 1},
		{`firebreak_task_duration_seconds_count{firebreak_action="sysinfo",firebreak_task_status="succeeded"`, 1},
		{`firebreak_runs_finished_total{firebreak_action="sysinfo",firebreak_run_status="succeeded"`, 1},
		{`target_info{`, 1},
		{`firebreak_runs_awaiting_approval`, 0},
		{`firebreak_approval_wait_oldest_seconds`, 0},
		{`firebreak_lease_held{firebreak_lease="playbook-executor"`, 1},
		{`firebreak_lease_held{firebreak_lease="playbook-executor"`, 1},
		{`firebreak_lease_changes_total{firebreak_lease="playbook-executor",firebreak_lease_change="acquired"`, 1},
		// Two runs created and finished, their tasks and results stored:
		// several write transactions and reads, each measured once.
		{`firebreak_store_duration_seconds_count{firebreak_store_operation="write",firebreak_store_outcome="ok"`, 2},
		{`firebreak_store_duration_seconds_count{firebreak_store_operation="read",firebreak_store_outcome="ok"`, 1},
	} {
		v, ok := sample(metrics, want.series)
		if !ok || v < want.min {
			t.Errorf("metric %s = %v (found %v), want at least %v", want.series, v, ok, want.min)
		}
	}
	// Both runs have ended: no task of the dispatcher is still active, and
	// each state is reported (0), so a cluster's sum has every series.
	for _, state := range []string{"pending", "dispatched", "running"} {
		series := `firebreak_tasks_active{firebreak_task_state="` + state + `"`
		if v, ok := sample(metrics, series); !ok || v != 0 {
			t.Errorf("metric %s = %v (found %v), want 0 once the runs ended", series, v, ok)
		}
	}
	if v, ok := sample(metrics, `firebreak_store_duration_seconds_sum{firebreak_store_operation="write",firebreak_store_outcome="ok"`); !ok || v <= 0 {
		t.Errorf("the store's write durations sum to %v (found %v), want a positive time", v, ok)
	}
	// The load balancer's health check: the gRPC health status over HTTP.
	if addr, err := os.ReadFile(filepath.Join(c.DataDir, "metrics.addr")); err != nil {
		t.Errorf("metrics.addr: %v", err)
	} else if resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/healthz"); err != nil {
		t.Errorf("GET /healthz: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %s, want 200 while serving", resp.Status)
		}
	}
	if !strings.Contains(metrics, `service_name="firebreak-controller"`) {
		t.Errorf("the metrics' target_info lacks the controller's resource")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", metrics)
	}
	if err := a.Stop(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("controller exit: %v", err)
	}

	spans := sink.Spans()
	byID := map[string]e2e.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var roots []e2e.Span
	for _, s := range spans {
		if s.Name == "firebreak run" {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 {
		t.Fatalf("%d root spans for `firebreak run`, want 1 (of %d spans: %s)", len(roots), len(spans), names(spans))
	}
	root := roots[0]
	if root.ParentID != "" || root.Resource["service.name"] != "firebreak-cli" {
		t.Errorf("the command's span has parent %q and service %q, want a root in firebreak-cli", root.ParentID, root.Resource["service.name"])
	}
	var trace []e2e.Span
	for _, s := range spans {
		if s.TraceID == root.TraceID {
			trace = append(trace, s)
		}
	}
	services := map[string]bool{}
	for _, s := range trace {
		services[s.Resource["service.name"]] = true
		if s.Status == 2 {
			t.Errorf("span %q (%s) has ERROR status: %s", s.Name, s.Resource["service.name"], s.StatusMessage)
		}
		if s.ParentID != "" {
			if _, ok := byID[s.ParentID]; !ok {
				t.Errorf("span %q (%s) names a parent that never arrived", s.Name, s.Resource["service.name"])
			}
		}
		if s.Resource["deployment.environment.name"] != "e2e" {
			t.Errorf("span %q (%s) lacks OTEL_RESOURCE_ATTRIBUTES", s.Name, s.Resource["service.name"])
		}
	}
	for _, want := range []string{"/CreateRun", "/WatchRun"} {
		found := false
		for _, s := range trace {
			found = found || (strings.HasSuffix(s.Name, want) && s.Resource["service.name"] == "firebreak-cli")
		}
		if !found {
			t.Errorf("no CLI span %s in the command's trace: %s", want, names(trace))
		}
	}
	// The plugin's span descends, parent by parent, from the agent, the
	// controller and the CLI.
	var plugin *e2e.Span
	for i, s := range trace {
		if s.Resource["service.name"] == "firebreak-plugin-sysinfo" && strings.HasSuffix(s.Name, "/Execute") {
			plugin = &trace[i]
		}
	}
	if plugin == nil {
		t.Fatalf("no plugin Execute span in the command's trace: %s", names(trace))
	}
	chain := []string{}
	seen := map[string]bool{}
	for s, ok := *plugin, true; ok; s, ok = byID[s.ParentID] {
		chain = append(chain, s.Resource["service.name"]+":"+s.Name)
		seen[s.Resource["service.name"]] = true
		if s.Resource["service.name"] == "firebreak-agent" {
			if s.Resource["host.name"] == "" || s.Resource["firebreak.agent.id"] != id {
				t.Errorf("agent resource %v: want host.name and firebreak.agent.id=%s", s.Resource, id)
			}
		}
		if s.ParentID != "" {
			// Within the agent the calls are synchronous: each child ends
			// before its parent (the controller's dispatch is asynchronous
			// to run.create by design).
			if p, ok := byID[s.ParentID]; ok && (p.Start > s.Start || p.End < s.End) && p.Resource["service.name"] == "firebreak-agent" && s.Resource["service.name"] == "firebreak-agent" {
				t.Errorf("span %q does not sit inside its parent %q", s.Name, p.Name)
			}
		}
		if s.ParentID == "" && s.SpanID != root.SpanID {
			t.Errorf("the plugin's ancestry ends at %q, not at the command's span", s.Name)
		}
	}
	for _, svc := range []string{"firebreak-plugin-sysinfo", "firebreak-agent", "firebreak-controller", "firebreak-cli"} {
		if !seen[svc] {
			t.Errorf("the plugin's ancestry has no %s span: %s", svc, strings.Join(chain, " ← "))
		}
	}
	t.Logf("plugin ancestry: %s", strings.Join(chain, " ← "))
	checkExportedLogs(t, sink.Logs(), root.TraceID, tok, id)
	checkUploadSpans(t, spans, byID)
	// Plugin start-up calls make no root traces.
	for _, s := range spans {
		if s.ParentID == "" && strings.HasPrefix(s.Resource["service.name"], "firebreak-plugin-") {
			t.Errorf("stray root span %q from %s", s.Name, s.Resource["service.name"])
		}
	}
}

func names(spans []e2e.Span) string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Resource["service.name"]+":"+s.Name)
	}
	return strings.Join(out, ", ")
}

// scrape reads the controller's /metrics.
func scrape(t *testing.T, c *e2e.Controller) string {
	t.Helper()
	addr, err := os.ReadFile(filepath.Join(c.DataDir, "metrics.addr"))
	if err != nil {
		t.Fatalf("the controller wrote no metrics.addr: %v", err)
	}
	resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	return string(body)
}

// sample returns the value of the first series that starts with prefix.
func sample(metrics, prefix string) (float64, bool) {
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// checkExportedLogs checks the slog records exported over OTLP
// (OTEL_LOGS_EXPORTER=otlp): the controller's and the agent's arrive, with
// their resources, records written inside the command's trace carry its
// trace id, and no record holds the join token.
func checkExportedLogs(t *testing.T, logs []e2e.LogRecord, traceID, token, agentID string) {
	t.Helper()
	byService := map[string]int{}
	inTrace := map[string]int{}
	for _, l := range logs {
		svc := l.Resource["service.name"]
		byService[svc]++
		if l.TraceID == traceID {
			inTrace[svc]++
		}
		if svc == "firebreak-agent" && l.Resource["firebreak.agent.id"] != "" && l.Resource["firebreak.agent.id"] != agentID {
			t.Errorf("agent log record with firebreak.agent.id %q, want %s", l.Resource["firebreak.agent.id"], agentID)
		}
		text := l.Body
		for k, v := range l.Attrs {
			text += " " + k + "=" + v
		}
		if strings.Contains(text, token) {
			t.Errorf("an exported %s log record holds the join token: %q", svc, l.Body)
		}
	}
	for _, svc := range []string{"firebreak-controller", "firebreak-agent"} {
		if byService[svc] == 0 {
			t.Errorf("no log record exported by %s (got %v)", svc, byService)
		}
	}
	if inTrace["firebreak-controller"] == 0 {
		t.Errorf("no controller log record carries the command's trace id %s (records per service in the trace: %v)", traceID, inTrace)
	}
	t.Logf("exported log records: %v; in the command's trace: %v", byService, inTrace)
}

// checkUploadSpans checks the collection's trace: the agent's upload span,
// with its bytes and resumes, and the controller's receive span, both
// descending from the `firebreak collect` command, none in ERROR.
func checkUploadSpans(t *testing.T, spans []e2e.Span, byID map[string]e2e.Span) {
	t.Helper()
	var root *e2e.Span
	for i, s := range spans {
		if s.Name == "firebreak collect" && s.ParentID == "" {
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatalf("no root span for `firebreak collect`: %s", names(spans))
	}
	found := map[string]e2e.Span{}
	for _, s := range spans {
		if s.TraceID != root.TraceID {
			continue
		}
		if s.Status == 2 {
			t.Errorf("span %q (%s) in the collection's trace has ERROR status: %s", s.Name, s.Resource["service.name"], s.StatusMessage)
		}
		if s.Name == "evidence.upload" || s.Name == "evidence.receive" {
			found[s.Resource["service.name"]+":"+s.Name] = s
		}
	}
	up, ok := found["firebreak-agent:evidence.upload"]
	if !ok {
		t.Fatalf("no agent evidence.upload span in the collection's trace: %v", found)
	}
	if b, _ := strconv.ParseInt(up.Attrs["firebreak.evidence.bytes"], 10, 64); b <= 0 || up.Attrs["firebreak.evidence.resumes"] != "0" ||
		up.Attrs["firebreak.evidence.name"] == "" || up.Attrs["firebreak.task.id"] == "" {
		t.Errorf("evidence.upload attributes %v: want bytes > 0, resumes 0, the artifact's name and the task id", up.Attrs)
	}
	if _, ok := found["firebreak-controller:evidence.receive"]; !ok {
		t.Errorf("no controller evidence.receive span in the collection's trace: %v", found)
	}
	// The upload descends from the command.
	s, hops := up, 0
	for s.ParentID != "" && hops < 64 {
		p, ok := byID[s.ParentID]
		if !ok {
			t.Fatalf("evidence.upload's ancestry breaks at %q", s.Name)
		}
		s, hops = p, hops+1
	}
	if s.SpanID != root.SpanID {
		t.Errorf("evidence.upload descends from %q, not from the command", s.Name)
	}
}
