package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/termsafe"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// hostileText carries what a compromised agent or a forged finding would
// send to take over a responder's terminal: a title set (OSC 0), a
// hyperlink (OSC 8), a screen clear (CSI 2J), a bell, a C1 CSI and a bidi
// override.
const hostileText = "boom\x1b]0;owned\x07\x1b[2J\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\\x07\u009b31m\u202Eexe.txt"

// noControl fails when out holds a control character a terminal would act on.
func noControl(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if termsafe.Unsafe(r) && r != '\n' && r != '\t' {
			t.Fatalf("%s holds %U:\n%q", what, r, out)
		}
	}
}

// TestHostileTextNeverReachesTheTerminal: a fake agent fails a task with
// an error full of escape sequences; `firebreak runs show` prints it
// escaped, and a case whose title and note carry them renders its HTML
// and markdown reports without them.
func TestHostileTextNeverReachesTheTerminal(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	facts := &agentv1.AgentFacts{Hostname: "fake-esc", Os: "linux"}
	f := c.EnrollFake(t, c.Token(t, "host", 1), "host", facts)
	s, err := f.Connect(t, &agentv1.Hello{Facts: facts, Plugins: e2e.HonestPlugins(t, "noop")}, false)
	if err != nil {
		t.Fatal(err)
	}
	c.WaitConnected(t, f.ID)
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "run", "noop", "--select", "id="+f.ID)
	e2e.WaitFor(t, time.Minute, "the task to reach the fake agent", func() bool { return len(f.Tasks()) == 1 })
	if err := s.Stream.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_TaskResult{TaskResult: &agentv1.TaskResult{
		TaskId: f.TaskSpecs(t)[0].GetTaskId(), Status: agentv1.TaskStatus_TASK_STATUS_FAILED, Error: hostileText}}}); err != nil {
		t.Fatal(err)
	}
	var shown e2e.RunJSON
	e2e.WaitFor(t, time.Minute, "the run to end", func() bool {
		r := c.CLI(t, "runs", "show", run.RunID, "--json")
		return json.Unmarshal([]byte(r.Stdout), &shown) == nil && shown.Status == "failed"
	})
	// JSON stays lossless.
	if len(shown.Results) != 1 || shown.Results[0].Error != hostileText {
		t.Fatalf("JSON output changed the agent's error: %+v", shown.Results)
	}
	out := c.CLI(t, "runs", "show", run.RunID)
	noControl(t, "runs show", out.Stdout+out.Stderr)
	if !strings.Contains(out.Stdout, `boom\x1b]0;owned\x07`) {
		t.Errorf("runs show does not show the escaped error:\n%s", out.Stdout)
	}

	var cs struct {
		ID string `json:"case_id"`
	}
	c.MustJSON(t, &cs, 0, "case", "create", "case "+hostileText)
	if r := c.CLI(t, "case", "note", cs.ID, "note "+hostileText); r.Exit != 0 {
		t.Fatalf("case note: %d %s", r.Exit, r.Stderr)
	}
	show := c.CLI(t, "case", "show", cs.ID)
	noControl(t, "case show", show.Stdout+show.Stderr)
	for _, format := range []string{"html", "md"} {
		file := filepath.Join(t.TempDir(), "report."+format)
		if r := c.CLI(t, "case", "report", cs.ID, "--format", format, "-o", file); r.Exit != 0 {
			t.Fatalf("case report %s: %d %s", format, r.Exit, r.Stderr)
		}
		page, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		noControl(t, format+" report", string(page))
		if !strings.Contains(string(page), "owned") {
			t.Errorf("the %s report lost the note's text", format)
		}
	}
}
