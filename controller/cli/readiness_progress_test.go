package cli

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestReadinessRunOf finds the aws-readiness run a review started among the
// newest runs, for its live progress bar.
func TestReadinessRunOf(t *testing.T) {
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	run := func(id, action string, after time.Duration) *operatorv1.Run {
		return &operatorv1.Run{Id: id, Action: action, CreatedAt: timestamppb.New(start.Add(after))}
	}
	for _, tt := range []struct {
		name string
		runs []*operatorv1.Run // newest first
		want string
	}{
		{"not made yet", []*operatorv1.Run{run("r1", "aws-readiness", -time.Hour), run("r0", "noop", time.Second)}, ""},
		{"made", []*operatorv1.Run{run("r2", "noop", 2*time.Second), run("r1", "aws-readiness", time.Second)}, "r1"},
		{"within the clock skew", []*operatorv1.Run{run("r1", "aws-readiness", -time.Second)}, "r1"},
		{"the first after start, not a later one", []*operatorv1.Run{run("r3", "aws-readiness", 9*time.Second), run("r2", "aws-readiness", time.Second),
			run("r1", "aws-readiness", -time.Minute)}, "r2"},
		{"no runs", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := readinessRunOf(tt.runs, start); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
