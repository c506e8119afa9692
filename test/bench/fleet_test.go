// Package bench holds Firebreak's benchmarks that span several packages.
package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/assembly/fleetbench"
)

// BenchmarkFleetNoop measures the time from creating a noop run to the
// last result, across 1, 100 and 1,000 simulated agents that each hold
// their own mTLS gRPC stream to a real controller on loopback. It reports
// the dispatch-to-all-done time, the per-target p50 and p99, and the
// process RSS (controller and agents share the process here; use
// `firebreak bench fleet` for the controller's own RSS).
//
//	go test ./test/bench -run '^$' -bench BenchmarkFleetNoop -benchtime 1x
func BenchmarkFleetNoop(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			var last *fleetbench.Result
			for i := 0; i < b.N; i++ {
				res, err := fleetbench.Run(context.Background(), fleetbench.Options{Agents: n, Action: "noop"})
				if err != nil {
					b.Fatal(err)
				}
				if res.Errors != 0 {
					b.Fatalf("%d targets failed", res.Errors)
				}
				last = res
			}
			b.ReportMetric(last.DispatchToAllDoneMS, "all-done-ms")
			b.ReportMetric(last.P50MS, "p50-ms")
			b.ReportMetric(last.P99MS, "p99-ms")
			b.ReportMetric(float64(last.ControllerRSSBytes)/(1<<20), "process-rss-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
}
