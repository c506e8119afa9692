package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsiam"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// BenchmarkContainKeyAcrossOrganisation contains one leaked access key in
// a 50-account emulated organisation at the plugin level: one
// aws-iam-contain task per account that has the responder role (the
// management account and the 48 members; the lab's security account has
// none), all sent to one plugin over go-plugin's gRPC transport, as a worker
// does, with the worker's default of 8 tasks at once and with all at once.
// The responder-role credentials are made before the clock starts (a worker
// caches them per run). It reports the wall time from the first task sent
// to the last result, the per-task p50 and p99, and the AWS API calls and
// HTTP requests the emulator answered. Rollback runs outside the timing
// after every iteration.
func BenchmarkContainKeyAcrossOrganisation(b *testing.B) {
	const accounts = 50
	lab := awstest.Start(b, accounts)
	owner := awstest.Member(accounts / 2)
	key := awsresponsetest.LeakedKey(b, lab, owner)
	var targets []string
	for i := range accounts {
		if id := awsemu.LabAccountID(i); id != awstest.SecurityAccount() {
			targets = append(targets, id)
		}
	}
	reqs := make([]*pluginv1.ExecuteRequest, len(targets))
	for i, acct := range targets {
		reqs[i] = lab.Request(b, acct)
	}
	contain, err := awsiam.NewContain(awsiam.Config{})
	if err != nil {
		b.Fatal(err)
	}
	uncontain, err := awsiam.NewUncontain(awsiam.Config{})
	if err != nil {
		b.Fatal(err)
	}
	containClient, uncontainClient := sdktest.Start(b, contain), sdktest.Start(b, uncontain)
	params := map[string]any{"access_key_id": key.ID}

	for _, concurrency := range []int{8, len(targets)} {
		b.Run(fmt.Sprintf("accounts=%d/concurrency=%d", len(targets), concurrency), func(b *testing.B) {
			var wall time.Duration
			var perTask []time.Duration
			calls, requests, emulated := 0, 0, 0
			for b.Loop() {
				before := total(lab.Emu.CallCounts())
				var mu sync.Mutex
				var record string
				g := new(errgroup.Group)
				g.SetLimit(concurrency)
				start := time.Now()
				for i := range targets {
					g.Go(func() error {
						t0 := time.Now()
						o := sdktest.Execute(context.Background(), b, containClient, reqs[i], params)
						took := time.Since(t0)
						if o.Err != nil || o.Result.GetError() != "" {
							return fmt.Errorf("account %s: %v %s", targets[i], o.Err, o.Result.GetError())
						}
						var res awsiam.ContainResult
						if err := json.Unmarshal(o.Result.GetOutputJson(), &res); err != nil {
							return err
						}
						mu.Lock()
						defer mu.Unlock()
						perTask = append(perTask, took)
						calls += len(res.APICalls)
						for _, c := range res.APICalls {
							requests += c.Attempts
						}
						switch {
						case targets[i] == owner && res.Outcome != awsiam.OutcomeContained:
							return fmt.Errorf("the owning account reports %s", res.Outcome)
						case targets[i] == owner:
							record = res.RollbackRecord
						case res.Outcome != awsiam.OutcomeNotFound:
							return fmt.Errorf("account %s reports %s", targets[i], res.Outcome)
						}
						return nil
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				emulated += total(lab.Emu.CallCounts()) - before

				b.StopTimer()
				o := sdktest.Execute(context.Background(), b, uncontainClient, lab.Request(b, owner), map[string]any{"rollback_record": record})
				if o.Err != nil || o.Result.GetError() != "" {
					b.Fatalf("rollback: %v %s", o.Err, o.Result.GetError())
				}
				b.StartTimer()
			}
			n := float64(b.N)
			slices.Sort(perTask)
			b.ReportMetric(float64(wall.Milliseconds())/n, "ms/containment")
			b.ReportMetric(float64(calls)/n, "api-calls/containment")
			b.ReportMetric(float64(requests)/n, "http-requests/containment")
			b.ReportMetric(float64(emulated)/n, "emulator-calls/containment")
			b.ReportMetric(float64(perTask[len(perTask)/2].Microseconds())/1000, "p50-task-ms")
			b.ReportMetric(float64(perTask[len(perTask)*99/100].Microseconds())/1000, "p99-task-ms")
			b.ReportMetric(float64(len(targets)), "accounts")
		})
	}
}

func total(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}
