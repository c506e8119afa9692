package dispatch_test

import (
	"path/filepath"
	"strings"
	"testing"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestRevokedAgentsTasksSayRevoked: revoking an agent mid-run ends its
// open tasks at once as failed, saying it was revoked (never sent, or out
// and maybe run), instead of offline or timed out at the deadline; the
// other agents' tasks are untouched.
func TestRevokedAgentsTasksSayRevoked(t *testing.T) {
	// a0 answers, a1 is offline (its task stays pending), a2 takes its
	// task and never answers (dispatched).
	h := newHarness(t, filepath.Join(t.TempDir(), "db"), func(agentID string, spec *agentv1.TaskSpec) *agentv1.TaskResult {
		if agentID == "a2" {
			return nil
		}
		return succeed(agentID, spec)
	})
	defer h.stop()
	h.f.connect("a0")
	h.f.connect("a2")
	id := h.submit(3, nil)
	h.wait(id, "a0 done and a2 dispatched", func(r *operatorv1.Run) bool {
		dispatched := false
		for _, tk := range r.GetTasks() {
			if tk.GetAgentId() == "a2" && tk.GetStatus() == agentv1.TaskStatus_TASK_STATUS_DISPATCHED {
				dispatched = true
			}
		}
		return r.GetCounts().GetSucceeded() == 1 && dispatched
	})
	h.d.AgentRevoked("a1", "host compromised")
	h.d.AgentRevoked("a2", "")
	r := h.wait(id, "the end", ended)
	want := map[string]string{"a1": "agent a1 was revoked (host compromised) before the task reached it", "a2": "agent a2 was revoked while the task was out"}
	for _, tk := range r.GetTasks() {
		w, ok := want[tk.GetAgentId()]
		if !ok {
			if tk.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				t.Errorf("%s's task is %v; revoking others must not touch it", tk.GetAgentId(), tk.GetStatus())
			}
			continue
		}
		if tk.GetStatus() != agentv1.TaskStatus_TASK_STATUS_FAILED || !strings.Contains(tk.GetError(), w) {
			t.Errorf("%s's task: %v %q; want failed saying %q", tk.GetAgentId(), tk.GetStatus(), tk.GetError(), w)
		}
	}
	if r.GetCounts().GetOffline() != 0 {
		t.Fatalf("counts %v: a revoked agent's task counted offline", r.GetCounts())
	}
}
