package bench

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// Shape of the measured fleet: 100 instances over 10 member accounts.
const (
	benchAccounts  = 10
	benchPerAcct   = 10
	benchInstances = benchAccounts * benchPerAcct
)

// BenchmarkAWSEC2Isolate100Instances isolates 100 instances spread over 10
// member accounts through one worker process against the AWS emulator, then
// rolls them all back. Everything runs as in production: the real
// controller, one worker agent that assumes the responder role in each
// account, the aws-ec2-isolate and aws-ec2-unisolate plugin binaries, and
// one `firebreak run … --wait` per instance, issued by `concurrent` loops at
// once (concurrent=10 is one loop per account). Each member account holds
// two instances in an Auto Scaling group behind two target groups (one
// goes to standby, the other is detached at the group's minimum), one in a
// group at its minimum (detached) and seven standalone.
//
// It reports the wall time to isolate all 100 (CLI process start-up
// included), the AWS API calls per instance as the emulator counted them
// (SDK retries and the worker's AssumeRole included), the changing calls
// per instance, the plugin's own per-task time (p50/p99), and the same for
// the rollback.
//
//	go test ./test/bench -run '^$' -bench BenchmarkAWSEC2Isolate100Instances -benchtime 1x
func BenchmarkAWSEC2Isolate100Instances(b *testing.B) {
	for _, concurrent := range []int{1, 10} {
		b.Run(fmt.Sprintf("concurrent=%d", concurrent), func(b *testing.B) {
			lab := awstest.StartWith(b, awsemu.Lab{Accounts: benchAccounts + 2, InstancesPerAccount: benchPerAcct}.Seed())
			bins := e2e.Build(b)
			c := e2e.StartController(b, bins, e2e.ControllerOptions{})
			worker := c.StartAgent(b, e2e.AgentOptions{Name: "worker", Token: c.Token(b, "worker", 1), Role: "worker", Env: awsec2test.WorkerEnv(b, lab),
				Args: []string{"--external-id", awsemu.LabExternalID, "--max-tasks", "32"}})
			c.WaitConnected(b, worker.AgentID(b))
			var targets []benchTarget
			for i := range benchAccounts {
				for _, id := range awsec2test.Instances(lab, awstest.Member(i)) {
					targets = append(targets, benchTarget{account: awstest.Member(i), instance: id})
				}
			}
			if len(targets) != benchInstances {
				b.Fatalf("the lab has %d instances, want %d", len(targets), benchInstances)
			}

			var iso, un phase
			b.ResetTimer()
			for range b.N {
				iso = runPhase(b, lab, c, awsec2.IsolateName, targets, concurrent)
				b.StopTimer()
				un = runPhase(b, lab, c, awsec2.UnisolateName, targets, concurrent)
				b.StartTimer()
			}
			b.StopTimer()
			if iso.methods["standby"] != benchAccounts || iso.methods["detach"] != 2*benchAccounts {
				b.Errorf("Auto Scaling methods %v, want %d standby and %d detach", iso.methods, benchAccounts, 2*benchAccounts)
			}
			b.ReportMetric(iso.wall.Seconds(), "isolate-wall-s")
			b.ReportMetric(float64(benchInstances)/iso.wall.Seconds(), "instances/s")
			b.ReportMetric(float64(iso.calls)/benchInstances, "api-calls/instance")
			b.ReportMetric(float64(iso.assumes)/benchInstances, "assume-role/instance")
			b.ReportMetric(float64(iso.changes)/benchInstances, "changing-calls/instance")
			b.ReportMetric(iso.p50, "task-p50-ms")
			b.ReportMetric(iso.p99, "task-p99-ms")
			b.ReportMetric(un.wall.Seconds(), "unisolate-wall-s")
			b.ReportMetric(float64(un.calls)/benchInstances, "unisolate-api-calls/instance")
		})
	}
}

type benchTarget struct{ account, instance string }

// phase is what one pass over the fleet measured.
type phase struct {
	wall     time.Duration
	calls    int // API calls the emulator answered
	assumes  int // of which the worker's sts:AssumeRole
	changes  int // successful changing calls the plugins reported
	p50, p99 float64
	methods  map[string]int
}

// runPhase runs the action on every target, concurrent runs at a time, and
// fails the benchmark if any does not succeed.
func runPhase(b *testing.B, lab *awstest.Lab, c *e2e.Controller, action string, targets []benchTarget, concurrent int) phase {
	work := make(chan benchTarget)
	var mu sync.Mutex
	var errs []string
	var elapsed []float64
	p := phase{methods: map[string]int{}}
	before, assumesBefore := totalCalls(lab), lab.Emu.CallCount("sts", "AssumeRole")
	start := time.Now()
	var wg sync.WaitGroup
	for range concurrent {
		wg.Go(func() {
			for t := range work {
				r := c.CLI(b, "run", action, "--select", "role=worker", "--param", "instance_id="+t.instance, "--param", "account="+t.account, "--wait", "--json")
				var run e2e.RunJSON
				var out struct {
					Changes     int     `json:"changes"`
					ElapsedMS   float64 `json:"elapsed_ms"`
					AutoScaling *struct {
						Method string `json:"method"`
					} `json:"auto_scaling"`
				}
				err := json.Unmarshal([]byte(r.Stdout), &run)
				if err == nil && len(run.Results) == 1 {
					err = json.Unmarshal(run.Results[0].Output, &out)
				}
				mu.Lock()
				switch {
				case r.Exit != 0 || err != nil || run.Succeeded != 1:
					errs = append(errs, fmt.Sprintf("%s %s: exit %d, %v: %s %s", action, t.instance, r.Exit, err, r.Stdout, r.Stderr))
				default:
					p.changes += out.Changes
					elapsed = append(elapsed, out.ElapsedMS)
					if out.AutoScaling != nil {
						p.methods[out.AutoScaling.Method]++
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, t := range targets {
		work <- t
	}
	close(work)
	wg.Wait()
	p.wall = time.Since(start)
	p.calls, p.assumes = totalCalls(lab)-before, lab.Emu.CallCount("sts", "AssumeRole")-assumesBefore
	if len(errs) > 0 {
		b.Fatalf("%d of %d runs failed; first: %s", len(errs), len(targets), errs[0])
	}
	slices.Sort(elapsed)
	p.p50 = elapsed[len(elapsed)/2]
	p.p99 = elapsed[min(len(elapsed)-1, len(elapsed)*99/100)]
	return p
}

// totalCalls is the number of API calls the emulator has answered.
func totalCalls(lab *awstest.Lab) int {
	n := 0
	for _, v := range lab.Emu.CallCounts() {
		n += v
	}
	return n
}
