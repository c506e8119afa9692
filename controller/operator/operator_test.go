package operator

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/runs"
)

// TestPlanErrorStatus checks that each kind of planner refusal keeps its
// gRPC code and its message word for word, and that any other planner
// error (the store's or the fleet's) is Internal without its cause.
func TestPlanErrorStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"no targets", &runs.Error{Kind: runs.ErrNoTargets, Msg: `selector "x=y" matches no enrolled agent`}, codes.FailedPrecondition,
			`selector "x=y" matches no enrolled agent`},
		{"unknown action", &runs.Error{Kind: runs.ErrUnknownAction, Msg: `unknown action "steal"`}, codes.InvalidArgument, `unknown action "steal"`},
		{"invalid params", &runs.Error{Kind: runs.ErrInvalidParams, Msg: "bad", Cause: errors.New("bad")}, codes.InvalidArgument, "bad"},
		{"invalid selector", &runs.Error{Kind: runs.ErrInvalidSelector, Msg: "empty selector"}, codes.InvalidArgument, "empty selector"},
		{"invalid spec", &runs.Error{Kind: runs.ErrInvalidSpec, Msg: "no action given"}, codes.InvalidArgument, "no action given"},
		{"permission", &runs.Error{Kind: runs.ErrPermission, Msg: "not yours"}, codes.PermissionDenied, "not yours"},
		// A failure behind the planner is Internal, its cause only in the
		// log (msg "" checks that the cause is not sent).
		{"store failure", errors.New("storing the run: disk full"), codes.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert((&Service{}).planErrorStatus(context.Background(), tt.err))
			if tt.msg == "" {
				if st.Code() != tt.code || strings.Contains(st.Message(), "disk full") {
					t.Fatalf("%v %q, want %v without the cause", st.Code(), st.Message(), tt.code)
				}
				return
			}
			if st.Code() != tt.code || st.Message() != tt.msg {
				t.Fatalf("%v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
}
