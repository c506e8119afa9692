package e2e_test

import (
	"slices"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// controllerJSON is one entry of `firebreak controllers list --json`.
type controllerJSON struct {
	ID          string    `json:"id"`
	Address     string    `json:"address"`
	Agents      int       `json:"agents"`
	Leases      []string  `json:"leases"`
	Version     string    `json:"version"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

// TestControllersList runs the real controller with an agent and lists the
// live controllers: the one controller, at its listen address, holding
// the agent's stream and every singleton's lease. Restarted (a new
// process, a new id), the stopped one leaves the list and the new one
// holds the leases at once.
func TestControllersList(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	a := c.StartAgent(t, e2e.AgentOptions{Name: "registered", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, a.AgentID(t))

	wantLeases := []string{"playbook-executor", "run-resumer", "terminated-sweep"}
	waitFor := func(what string, ok func([]controllerJSON) bool) []controllerJSON {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			var got []controllerJSON
			c.MustJSON(t, &got, 0, "controllers", "list")
			if ok(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("controllers list never showed %s: %+v", what, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	first := waitFor("the controller with its agent and leases", func(cs []controllerJSON) bool {
		return len(cs) == 1 && cs[0].Agents == 1 && slices.Equal(cs[0].Leases, wantLeases)
	})[0]
	if first.Address != c.Addr || first.ID == "" || first.Version == "" || first.HeartbeatAt.IsZero() {
		t.Fatalf("entry %+v; controller at %s", first, c.Addr)
	}

	c.Restart(t)
	waitFor("only the restarted controller, with every lease", func(cs []controllerJSON) bool {
		return len(cs) == 1 && cs[0].ID != first.ID && slices.Equal(cs[0].Leases, wantLeases)
	})
	if err := a.Stop(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("controller exit: %v", err)
	}
}
