package hostisolate_test

import (
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
)

// BenchmarkIsolateRuleset measures the plugin's own work per isolation, as
// host-isolate-sim does it: build the ruleset and apply it, in one batch,
// to a fresh in-memory nf_tables.
func BenchmarkIsolateRuleset(b *testing.B) {
	spec := mustSpec(b, 8443, []string{"10.99.0.1", "fd99::1"}, true, "10.20.0.0/16", "192.0.2.7:53", "[2001:db8::/32]:443/tcp")
	var rules int
	for b.Loop() {
		rs, err := hostisolate.BuildRuleset(spec)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := memnft.New().Conn()
		if err != nil {
			b.Fatal(err)
		}
		if err := rs.Apply(conn, false); err != nil {
			b.Fatal(err)
		}
		rules = len(rs.Rules)
	}
	b.ReportMetric(float64(rules), "rules/op")
}
