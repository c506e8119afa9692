package operator

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestCheckDrillRecord refuses a drill record that could not come from a
// lab drill, each with a precise InvalidArgument.
func TestCheckDrillRecord(t *testing.T) {
	ok := func() *operatorv1.RecordDrillRequest {
		return &operatorv1.RecordDrillRequest{Scenario: "ec2-compromise", Playbook: "ec2-instance-compromise", Contained: true, Score: 90,
			TimeToContainMs: 4000, ResultJson: `{"scenario":"ec2-compromise"}`}
	}
	with := func(f func(r *operatorv1.RecordDrillRequest)) *operatorv1.RecordDrillRequest {
		r := ok()
		f(r)
		return r
	}
	for _, tt := range []struct {
		name string
		req  *operatorv1.RecordDrillRequest
		want string // empty: accepted
	}{
		{"a contained drill", ok(), ""},
		{"a failed drill", with(func(r *operatorv1.RecordDrillRequest) { r.Contained, r.Score = false, 0 }), ""},
		{"no result JSON", with(func(r *operatorv1.RecordDrillRequest) { r.ResultJson = "" }), ""},
		{"unknown scenario", with(func(r *operatorv1.RecordDrillRequest) { r.Scenario = "ransomware" }),
			`unknown drill scenario "ransomware" (scenarios: ec2-compromise, leaked-key-orgwide, leaked-key-persistence, public-bucket)`},
		{"another playbook", with(func(r *operatorv1.RecordDrillRequest) { r.Playbook = "s3-public-exposure" }),
			`scenario ec2-compromise rehearses playbook ec2-instance-compromise, not "s3-public-exposure"`},
		{"score above 100", with(func(r *operatorv1.RecordDrillRequest) { r.Score = 101 }), "score 101 is outside 0..100"},
		{"negative score", with(func(r *operatorv1.RecordDrillRequest) { r.Score = -1 }), "score -1 is outside 0..100"},
		{"a score without containment", with(func(r *operatorv1.RecordDrillRequest) { r.Contained = false }), "a drill that did not contain scores 0, not 90"},
		{"negative time", with(func(r *operatorv1.RecordDrillRequest) { r.TimeToContainMs = -5 }), "time_to_contain_ms is negative"},
		{"result too large", with(func(r *operatorv1.RecordDrillRequest) { r.ResultJson = `"` + strings.Repeat("a", maxDrillResult) + `"` }), "at most 262144"},
		{"result not JSON", with(func(r *operatorv1.RecordDrillRequest) { r.ResultJson = "{" }), "not valid JSON"},
		{"a long scenario name is cut", with(func(r *operatorv1.RecordDrillRequest) { r.Scenario = strings.Repeat("x", 1000) }), strings.Repeat("x", 64) + "…\""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDrillRecord(tt.req)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("got %v, want InvalidArgument with %q", err, tt.want)
			}
		})
	}
}
