package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestShedFrom checks which refusals the agent treats as a controller at
// its limit, to come back to after the retry-after, and which as ordinary
// failures.
func TestShedFrom(t *testing.T) {
	exhausted := status.Error(codes.ResourceExhausted, "connection refused: at the limit")
	tests := []struct {
		name    string
		err     error
		trailer metadata.MD
		// after is the retry-after read; -1: not a shed attempt.
		after time.Duration
	}{
		{name: "shed with retry-after", err: exhausted, trailer: metadata.Pairs("retry-after", "1"), after: time.Second},
		{name: "shed, wrapped", err: fmt.Errorf("enrolling with 127.0.0.1:7443: %w", exhausted), trailer: metadata.Pairs("retry-after", "3"), after: 3 * time.Second},
		{name: "resource exhausted without retry-after", err: exhausted, after: -1},
		{name: "retry-after not a number", err: exhausted, trailer: metadata.Pairs("retry-after", "soon"), after: -1},
		{name: "retry-after negative", err: exhausted, trailer: metadata.Pairs("retry-after", "-1"), after: -1},
		{name: "retry-after beyond an hour", err: exhausted, trailer: metadata.Pairs("retry-after", "86400"), after: -1},
		{name: "retry-after twice", err: exhausted, trailer: metadata.Pairs("retry-after", "1", "retry-after", "2"), after: -1},
		{name: "another code with retry-after", err: status.Error(codes.Unavailable, "down"), trailer: metadata.Pairs("retry-after", "1"), after: -1},
		{name: "no error", err: nil, trailer: metadata.Pairs("retry-after", "1"), after: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := shedFrom(tt.err, tt.trailer)
			var shed *shedError
			isShed := errors.As(got, &shed)
			if isShed != (tt.after >= 0) {
				t.Fatalf("shedFrom(%v, %v) = %v: shed %v, want %v", tt.err, tt.trailer, got, isShed, tt.after >= 0)
			}
			if isShed && shed.after != tt.after {
				t.Errorf("retry-after %s, want %s", shed.after, tt.after)
			}
			if status.Code(got) != status.Code(tt.err) {
				t.Errorf("the code %s became %s", status.Code(tt.err), status.Code(got))
			}
		})
	}
}
