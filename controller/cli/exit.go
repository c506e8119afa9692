package cli

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes. Scripts and playbooks rely on them.
const (
	// ExitOK: the command did what was asked; a run succeeded on every target.
	ExitOK = 0
	// ExitError: the command failed (controller unreachable, request refused).
	ExitError = 1
	// ExitUsage: bad flags or arguments.
	ExitUsage = 2
	// ExitRunFailed: the run ended with targets that failed, timed out,
	// were refused, offline or cancelled.
	ExitRunFailed = 3
	// ExitAwaitingApproval: the run waits for a second operator's approval.
	ExitAwaitingApproval = 4
	// ExitRejected: the run was rejected or cancelled.
	ExitRejected = 5
	// ExitVerifyFailed: a verification found tampering (audit, evidence),
	// or an attacker's artifact still live (eradicate verify).
	ExitVerifyFailed = 6
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// ExitWith returns err carrying the exit code code. With a nil err the
// command exits with code and prints nothing (an outcome such as "awaits
// approval" that the command has already reported).
func ExitWith(code int, err error) error { return &exitError{code: code, err: err} }

// commandError is an error a command's own RunE returned. Every other
// error out of cobra is about the command line itself (an unknown command
// or flag, a missing or surplus argument, a required flag not given) and
// exits ExitUsage.
type commandError struct{ err error }

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// rpcFailure is a refused or failed call to the controller: the gRPC status
// (for the exit code) with the text an operator can act on.
type rpcFailure struct {
	st   *status.Status
	text string
}

func (e *rpcFailure) Error() string { return e.text }

// GRPCStatus makes status.Code and status.FromError see the call's status.
func (e *rpcFailure) GRPCStatus() *status.Status { return e.st }

// rpcError turns a gRPC error into the message an operator can act on; the
// status code stays with it and decides the exit code (see ExitCode).
func rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	text := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		text = fmt.Sprintf("the controller is unreachable: %s", st.Message())
	case codes.DeadlineExceeded:
		text = fmt.Sprintf("the controller did not answer in time (raise --timeout): %s", st.Message())
	case codes.Unauthenticated, codes.PermissionDenied:
		text = fmt.Sprintf("refused: %s", st.Message())
	}
	return &rpcFailure{st: st, text: text}
}

// statusExit is the exit code of each gRPC status a command returns; a code
// not listed is ExitError.
var statusExit = map[codes.Code]int{
	// The request itself is wrong: the same exit code as a bad flag.
	codes.InvalidArgument: ExitUsage,
	// The controller found stored evidence or the audit log altered.
	codes.DataLoss: ExitVerifyFailed,
}

// ExitCode is the process exit code for what a command returned. It is
// decided by the error's type and gRPC status code, never by its text:
//   - an error from ExitWith exits with its code;
//   - an error cobra returned before the command ran (the command line is
//     wrong) exits ExitUsage;
//   - a gRPC status exits as statusExit says;
//   - anything else exits ExitError.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var ce *commandError
	if !errors.As(err, &ce) {
		return ExitUsage
	}
	if _, ok := status.FromError(ce.err); ok {
		if code, ok := statusExit[status.Code(ce.err)]; ok {
			return code
		}
	}
	return ExitError
}
