package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestLabDrills runs `firebreak lab demo --json` (what `make demo` runs) and
// every drill through the real binary, and requires real containment. As
// root the hosts are network namespaces with nftables and the drill checks
// real traffic; the simulated case runs the same loop with labelled
// simulated hosts.
func TestLabDrills(t *testing.T) {
	b := e2e.Build(t)
	tests := []struct {
		name      string
		args      []string
		simulated bool
	}{
		{name: "demo", args: []string{"lab", "demo"}, simulated: os.Geteuid() != 0},
		{name: "demo simulated hosts", args: []string{"lab", "demo", "--simulated"}, simulated: true},
		{name: "leaked-key-orgwide", args: []string{"lab", "drill", "leaked-key-orgwide"}, simulated: os.Geteuid() != 0},
		{name: "public-bucket", args: []string{"lab", "drill", "public-bucket"}, simulated: os.Geteuid() != 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, b.Firebreak, append(tt.args, "--json")...)
			out, err := cmd.Output()
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			var res lab.Result
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				t.Fatalf("%v: %v\nstdout: %s\nstderr: %s", tt.args, err, out, stderr)
			}
			if err != nil || !res.Contained {
				t.Fatalf("%v: exit %v, not contained: %+v\nstderr: %s", tt.args, err, res.Checks, stderr)
			}
			if res.CaseID == "" || res.TimeToContainMS <= 0 || len(res.Steps) == 0 || len(res.Evidence) == 0 {
				t.Fatalf("summary incomplete: %+v", res)
			}
			for _, ev := range res.Evidence {
				if len(ev.SHA256) != 64 || !ev.Verified {
					t.Errorf("evidence %+v not verified", ev)
				}
			}
			// The lab enrols by attestation, not join tokens: the worker by
			// a signed sts:GetCallerIdentity, each host by its instance's
			// identity document.
			hosts, workers := 0, 0
			for _, a := range res.Agents {
				want := map[string]string{"host": "aws-iid", "worker": "aws-sts"}[a.Role]
				if want == "" || a.Attestation != want {
					t.Errorf("agent %+v: attestation %q, want %q for a %s", a, a.Attestation, want, a.Role)
				}
				switch a.Role {
				case "host":
					hosts++
				case "worker":
					workers++
				}
			}
			if hosts == 0 || workers != 1 {
				t.Errorf("agents %+v: want host agents and one worker", res.Agents)
			}
			if res.SimulatedHosts != tt.simulated {
				t.Errorf("simulated_hosts = %v, want %v", res.SimulatedHosts, tt.simulated)
			}
			t.Logf("%s: contained in %d ms, wall %d ms, score %d", res.Scenario, res.TimeToContainMS, res.WallMS, res.Score)
		})
	}
}
