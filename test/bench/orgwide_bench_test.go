package bench

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// BenchmarkContainKeyOrgWide50 contains one leaked key across a 50-account
// emulated organisation through the real fan-out: a controller, one worker
// process, `firebreak run aws-iam-contain --accounts all --wait`, timed from
// the command to its end, with the API calls the emulator served for it.
//
//	go test ./test/bench -run '^$' -bench BenchmarkContainKeyOrgWide50 -benchtime 1x
func BenchmarkContainKeyOrgWide50(b *testing.B) {
	const accounts = 50
	lab := awstest.Start(b, accounts)
	holder := awstest.Member(accounts / 2)
	var key string
	for _, a := range lab.Seed.Accounts {
		if a.ID == holder {
			key = a.Users[0].AccessKeys[0].ID
		}
	}
	bins := e2e.Build(b)
	// The org-wide run is destructive over 50 targets: the controller would
	// rightly wait for a second operator; the benchmark measures the run.
	c := e2e.StartController(b, bins, e2e.ControllerOptions{Args: []string{"--approval-threshold", "100"}})
	w := c.StartAgent(b, e2e.AgentOptions{Name: "worker", Token: c.Token(b, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(b, lab),
		Args: []string{"--external-id", awsemu.LabExternalID, "--max-tasks", "16"}})
	c.WaitConnected(b, w.AgentID(b))
	c.MustJSON(b, nil, 0, "accounts", "sync", "--management-account", awsemu.LabAccountID(0))

	var wall time.Duration
	var calls, tasks int
	for i := 0; i < b.N; i++ {
		before := total(lab.Emu.CallCounts())
		start := time.Now()
		r := c.CLI(b, "run", "aws-iam-contain", "--accounts", "all", "--param", "access_key_id="+key, "--param", "revoke_sessions=true", "--wait", "--json")
		wall = time.Since(start)
		var run e2e.RunJSON
		if err := json.Unmarshal([]byte(r.Stdout), &run); err != nil || r.Exit != 0 {
			b.Fatalf("exit %d %v: %s %s", r.Exit, err, r.Stdout, r.Stderr)
		}
		calls, tasks = total(lab.Emu.CallCounts())-before, run.Targets
		contained := 0
		for _, res := range run.Results {
			var out struct {
				Outcome string `json:"outcome"`
			}
			_ = json.Unmarshal(res.Output, &out)
			if out.Outcome == "contained" || out.Outcome == "already_contained" {
				contained++
			}
		}
		if contained != 1 {
			b.Fatalf("%d accounts contained the key, want 1", contained)
		}
		b.StopTimer()
		// Undo it so the next iteration contains again.
		for _, res := range run.Results {
			var out struct {
				RollbackRecord string `json:"rollback_record"`
				Outcome        string `json:"outcome"`
			}
			_ = json.Unmarshal(res.Output, &out)
			if out.Outcome == "contained" {
				c.MustJSON(b, nil, 0, "run", "aws-iam-uncontain", "--accounts", res.Account, "--param", "rollback_record="+out.RollbackRecord, "--wait")
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(float64(tasks), "tasks")
	b.ReportMetric(float64(calls), "api-calls")
	b.ReportMetric(0, "ns/op")
	fmt.Printf("contained one key across %d accounts (%d tasks) in %s with %d API calls (worker AssumeRole included)\n", accounts, tasks, wall.Round(time.Millisecond), calls)
}
