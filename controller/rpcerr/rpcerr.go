// Package rpcerr turns an error from the controller's domain code into the
// gRPC status an operator sees, in one place per adapter.
//
// Each gRPC adapter (operator, cases, playbook runs, evidence, fleet)
// passes the errors it does not map itself through Error:
//   - a not-found error (store.ErrNotFound, ErrNotFound) is NotFound;
//   - an error marked ErrInvalid is InvalidArgument;
//   - an error marked ErrPermission is PermissionDenied;
//   - an error marked ErrUnavailable (an agent or worker that is not
//     connected, a dependency that cannot be reached) is Unavailable;
//   - a cancelled or expired context is Canceled or DeadlineExceeded;
//   - an error that already is a status keeps its code and message;
//   - anything else is a failure inside the controller (most often the
//     store): Internal. Its cause is logged with the request's trace id
//     and never sent to the client, which gets what failed and the trace
//     id to quote instead.
//
// Internal is not Unavailable on purpose: the CLI reports Unavailable as
// "the controller is unreachable", which a broken database is not.
package rpcerr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// Markers for errors whose code is not Internal. Wrap them with %w:
// fmt.Errorf("%w: agent %s is not connected", rpcerr.ErrUnavailable, id).
var (
	// ErrNotFound marks a request for something that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid marks a request the caller must change before retrying.
	ErrInvalid = errors.New("invalid request")
	// ErrPermission marks a request the caller may not make.
	ErrPermission = errors.New("permission denied")
	// ErrUnavailable marks a dependency that cannot be reached now (an
	// agent or worker not connected): retrying later may work.
	ErrUnavailable = errors.New("unavailable")
)

// Error returns err as a gRPC status error (nil for nil). doing says what
// the adapter was doing, as "reading the run"; it leads the message. An
// adapter that maps every error of a service in one place passes "": the
// message is then err's own text, and an Internal one names the RPC.
// Internal failures are logged on logger (slog.Default() when nil) with
// the cause, and the client gets doing and an id to quote: the trace id
// of the span in ctx, or a fresh error id when there is none.
func Error(ctx context.Context, logger *slog.Logger, err error, doing string) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	msg := err.Error()
	if doing != "" {
		msg = doing + ": " + msg
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.Error(status.FromContextError(err).Code(), msg)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, ErrPermission):
		return status.Error(codes.PermissionDenied, msg)
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, msg)
	}
	if doing == "" {
		doing = rpcName(ctx)
	}
	return Internal(ctx, logger, err, doing)
}

// rpcName names the RPC being served in ctx ("ListCases"), or "the request".
func rpcName(ctx context.Context) string {
	m, ok := grpc.Method(ctx)
	if !ok || m == "" {
		return "the request"
	}
	return m[strings.LastIndex(m, "/")+1:]
}

// Internal logs err as a failure inside the controller and returns an
// Internal status that names doing and the id to quote, never the cause.
func Internal(ctx context.Context, logger *slog.Logger, err error, doing string) error {
	if logger == nil {
		logger = slog.Default()
	}
	id, kind := traceID(ctx)
	if kind == "trace" {
		// The controller's logger adds the trace id of ctx itself.
		logger.ErrorContext(ctx, "request failed inside the controller", "doing", doing, "error", err)
	} else {
		logger.ErrorContext(ctx, "request failed inside the controller", "doing", doing, "error", err, "error_id", id)
	}
	return status.Errorf(codes.Internal, "%s failed inside the controller; its log has the cause under %s id %s", doing, kind, id)
}

// traceID is the trace id of the span in ctx, or a fresh random error id.
func traceID(ctx context.Context) (id, kind string) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String(), "trace"
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:]), "error"
}
