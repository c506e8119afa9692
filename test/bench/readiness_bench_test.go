package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/readiness"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// BenchmarkReadinessAcrossOrganisation measures `firebreak readiness`'s
// AWS side across a 50-account emulated organisation with 2 regions per
// member: one aws-readiness task per account and region (98: the
// management and security accounts enable one region), sent to one plugin
// over go-plugin's gRPC transport as a worker does, a few at once as the
// run's rate control allows, then the controller's scoring of the results.
// It reports the wall time of the whole review and the API calls per
// account.
func BenchmarkReadinessAcrossOrganisation(b *testing.B) {
	const accounts = 50
	lab := awstest.Start(b, accounts)
	type target struct{ account, region string }
	var targets []target
	var known []*store.Account
	for _, a := range lab.Seed.Accounts {
		regions := a.Regions
		if len(regions) == 0 {
			regions = []string{awstest.Region}
		}
		for _, r := range regions {
			targets = append(targets, target{a.ID, r})
		}
		known = append(known, &store.Account{ID: a.ID, Regions: regions})
	}
	reqs := make([]*pluginv1.ExecuteRequest, len(targets))
	for i, tg := range targets {
		reqs[i] = proto.Clone(lab.Request(b, tg.account)).(*pluginv1.ExecuteRequest)
		reqs[i].Aws.Region = tg.region
	}
	a, err := awsreadiness.New(awsreadiness.Config{})
	if err != nil {
		b.Fatal(err)
	}
	client := sdktest.Start(b, a)
	for _, concurrency := range []int{16, 64} {
		b.Run(fmt.Sprintf("accounts=%d/tasks=%d/concurrency=%d", accounts, len(targets), concurrency), func(b *testing.B) {
			var wall time.Duration
			calls, requests := 0, 0
			score := -1
			for b.Loop() {
				var mu sync.Mutex
				results := make([]readiness.Target, len(targets))
				g := new(errgroup.Group)
				g.SetLimit(concurrency)
				start := time.Now()
				for i := range targets {
					g.Go(func() error {
						o := sdktest.Execute(context.Background(), b, client, reqs[i], nil)
						if o.Err != nil || o.Result.GetError() != "" {
							return fmt.Errorf("%s %s: %v %s", targets[i].account, targets[i].region, o.Err, o.Result.GetError())
						}
						var res awsreadiness.Result
						if err := json.Unmarshal(o.Result.GetOutputJson(), &res); err != nil {
							return err
						}
						mu.Lock()
						defer mu.Unlock()
						results[i] = readiness.Target{Account: targets[i].account, Region: targets[i].region, Reached: true, Output: o.Result.GetOutputJson()}
						calls += len(res.APICalls)
						for _, c := range res.APICalls {
							requests += c.Attempts
						}
						return nil
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				r := readiness.Build(readiness.Inputs{Now: time.Now(), Accounts: known, Targets: results, Audit: &store.AuditCheck{OK: true}})
				wall += time.Since(start)
				if score >= 0 && r.Score != score {
					b.Fatalf("score %d, then %d for the same state", score, r.Score)
				}
				score = r.Score
			}
			n := float64(b.N)
			b.ReportMetric(float64(wall.Milliseconds())/n, "ms/review")
			b.ReportMetric(float64(calls)/n/accounts, "api-calls/account")
			b.ReportMetric(float64(requests)/n/accounts, "http-requests/account")
			b.ReportMetric(float64(len(targets)), "tasks")
			b.ReportMetric(float64(score), "score")
		})
	}
}
