package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExitCode(t *testing.T) {
	ran := func(err error) error { return &commandError{err: err} }
	rpc := func(c codes.Code, msg string) error { return ran(rpcError(status.Error(c, msg))) }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, ExitOK},
		{"an outcome already reported", ExitWith(ExitAwaitingApproval, nil), ExitAwaitingApproval},
		{"a command's own exit code", ran(ExitWith(ExitVerifyFailed, errors.New("custody TAMPERED"))), ExitVerifyFailed},
		{"a wrapped exit code", ran(fmt.Errorf("downloading: %w", ExitWith(ExitRunFailed, errors.New("x")))), ExitRunFailed},
		{"cobra: the command line is wrong", errors.New(`unknown flag: --bogus`), ExitUsage},
		{"cobra: whatever its text", errors.New("no words cobra is known for"), ExitUsage},
		{"a command's error is not usage for its text", ran(errors.New("open x: invalid argument; requires accepts unknown flag")), ExitError},
		{"a plain failure", ran(errors.New("reading credentials: no such file")), ExitError},
		{"cancelled", ran(context.Canceled), ExitError},
		{"InvalidArgument is usage", rpc(codes.InvalidArgument, `unknown action "nosuch"`), ExitUsage},
		{"a raw InvalidArgument status", ran(status.Error(codes.InvalidArgument, "bad selector")), ExitUsage},
		{"a wrapped InvalidArgument", ran(fmt.Errorf("creating the run: %w", rpcError(status.Error(codes.InvalidArgument, "x")))), ExitUsage},
		{"DataLoss is a failed verification", rpc(codes.DataLoss, "the stored copy was altered"), ExitVerifyFailed},
		{"Unavailable", rpc(codes.Unavailable, "connection refused"), ExitError},
		{"Internal", rpc(codes.Internal, "store failure (trace 4bf92f35)"), ExitError},
		{"DeadlineExceeded", rpc(codes.DeadlineExceeded, "deadline"), ExitError},
		{"PermissionDenied", rpc(codes.PermissionDenied, "viewer may not run"), ExitError},
		{"Unauthenticated", rpc(codes.Unauthenticated, "revoked"), ExitError},
		{"NotFound", rpc(codes.NotFound, "run not found"), ExitError},
		{"FailedPrecondition with usage-like text", rpc(codes.FailedPrecondition, "action requires param x: invalid argument"), ExitError},
		{"ResourceExhausted", rpc(codes.ResourceExhausted, "too many watches"), ExitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Fatalf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestRPCErrorText(t *testing.T) {
	tests := []struct {
		code codes.Code
		want string
	}{
		{codes.Unavailable, "the controller is unreachable: boom"},
		{codes.DeadlineExceeded, "the controller did not answer in time (raise --timeout): boom"},
		{codes.Unauthenticated, "refused: boom"},
		{codes.PermissionDenied, "refused: boom"},
		{codes.InvalidArgument, "boom"},
		{codes.Internal, "boom"},
		{codes.DataLoss, "boom"},
		{codes.NotFound, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			err := rpcError(status.Error(tt.code, "boom"))
			if err.Error() != tt.want {
				t.Errorf("text %q, want %q", err.Error(), tt.want)
			}
			if status.Code(err) != tt.code {
				t.Errorf("status code %v, want %v", status.Code(err), tt.code)
			}
		})
	}
	plain := errors.New("not a status")
	if rpcError(plain) != plain {
		t.Error("a non-status error must pass through")
	}
}

// TestExitCodeThroughCobra runs a small command tree: what cobra refuses
// exits 2, and what a command returns exits by its type, whatever the text.
func TestExitCodeThroughCobra(t *testing.T) {
	failing := func(err error) Command {
		return func(*Globals) *cobra.Command {
			cmd := &cobra.Command{Use: "fail", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return err }}
			var need string
			cmd.Flags().StringVar(&need, "need", "", "")
			return cmd
		}
	}
	tests := []struct {
		name string
		err  error
		args []string
		want int
	}{
		{"unknown command", nil, []string{"nosuch"}, ExitUsage},
		{"unknown flag", nil, []string{"fail", "--bogus"}, ExitUsage},
		{"flag needs an argument", nil, []string{"fail", "--need"}, ExitUsage},
		{"surplus argument", nil, []string{"fail", "extra"}, ExitUsage},
		{"bad global flag value", nil, []string{"--timeout", "soon", "fail"}, ExitUsage},
		{"command succeeded", nil, []string{"fail"}, ExitOK},
		{"command error worded like cobra's", errors.New(`unknown flag: --x; accepts 1 arg(s); required flag(s) "y" not set`), []string{"fail"}, ExitError},
		{"command usage error", ExitWith(ExitUsage, errors.New("say what to target")), []string{"fail"}, ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			g, flush := newGlobals(&out, &errOut)
			root := NewRoot(g, []Command{failing(tt.err)})
			root.SetArgs(tt.args)
			code := g.exit(root.ExecuteContext(context.Background()))
			flush()
			if code != tt.want {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.want, errOut.String())
			}
		})
	}
}
