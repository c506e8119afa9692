package rpcerr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/store"
)

func TestError(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		want    codes.Code
		wantMsg string
	}{
		{"store not found", fmt.Errorf("run %q: %w", "r1", store.ErrNotFound), codes.NotFound, `reading the run: run "r1": not found`},
		{"marked not found", fmt.Errorf("case c1: %w", ErrNotFound), codes.NotFound, "reading the run: case c1: not found"},
		{"invalid", fmt.Errorf("%w: limit must be positive", ErrInvalid), codes.InvalidArgument, "reading the run: invalid request: limit must be positive"},
		{"permission", fmt.Errorf("%w: viewers cannot", ErrPermission), codes.PermissionDenied, "reading the run: permission denied: viewers cannot"},
		{"unreachable", fmt.Errorf("%w: agent a1 is not connected", ErrUnavailable), codes.Unavailable, "reading the run: unavailable: agent a1 is not connected"},
		{"cancelled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "reading the run: query: context canceled"},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "reading the run: context deadline exceeded"},
		{"already a status", status.Error(codes.FailedPrecondition, "the case is closed"), codes.FailedPrecondition, "the case is closed"},
		{"store failure", errors.New("database is locked"), codes.Internal, "reading the run failed inside the controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Error(context.Background(), slog.New(slog.DiscardHandler), tt.err, "reading the run")
			st, _ := status.FromError(err)
			if st.Code() != tt.want || !strings.HasPrefix(st.Message(), tt.wantMsg) {
				t.Errorf("Error(%v) = %v %q; want %v %q…", tt.err, st.Code(), st.Message(), tt.want, tt.wantMsg)
			}
		})
	}
	if Error(context.Background(), nil, nil, "x") != nil {
		t.Error("Error(nil) is not nil")
	}
}

// TestErrorWithoutDoing: an adapter that maps a whole service passes no
// doing; mapped errors keep their own text and Internal names the RPC.
func TestErrorWithoutDoing(t *testing.T) {
	ctx := grpc.NewContextWithServerTransportStream(context.Background(), &methodStream{method: "/firebreak.operator.v1.CaseService/ListCases"})
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		want    codes.Code
		wantMsg string
	}{
		{"not found keeps its text", ctx, fmt.Errorf("case %q: %w", "c1", store.ErrNotFound), codes.NotFound, `case "c1": not found`},
		{"internal names the RPC", ctx, errors.New("database is locked"), codes.Internal, "ListCases failed inside the controller"},
		{"internal outside an RPC", context.Background(), errors.New("database is locked"), codes.Internal, "the request failed inside the controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := status.FromError(Error(tt.ctx, slog.New(slog.DiscardHandler), tt.err, ""))
			if st.Code() != tt.want || !strings.HasPrefix(st.Message(), tt.wantMsg) {
				t.Errorf("got %v %q; want %v %q…", st.Code(), st.Message(), tt.want, tt.wantMsg)
			}
		})
	}
}

// methodStream is the part of a server stream grpc.Method reads.
type methodStream struct{ method string }

func (m *methodStream) Method() string               { return m.method }
func (m *methodStream) SetHeader(metadata.MD) error  { return nil }
func (m *methodStream) SendHeader(metadata.MD) error { return nil }
func (m *methodStream) SetTrailer(metadata.MD) error { return nil }

// TestStoreFailureIsInternalWithTraceID: a store failure reaches the
// client as Internal with the request's trace id to quote and without its
// cause, and the controller's log holds the cause.
func TestStoreFailureIsInternalWithTraceID(t *testing.T) {
	const cause = "disk I/O error: /var/lib/firebreak/firebreak.db"
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled})
	tests := []struct {
		name   string
		ctx    context.Context
		wantID string
	}{
		{"with a span", trace.ContextWithSpanContext(context.Background(), sc), traceID.String()},
		{"without a span", context.Background(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logged, nil))
			err := Error(tt.ctx, logger, fmt.Errorf("listing runs: %w", errors.New(cause)), "listing runs")
			st, _ := status.FromError(err)
			if st.Code() != codes.Internal {
				t.Fatalf("code %v, want Internal", st.Code())
			}
			if strings.Contains(st.Message(), "disk I/O") || strings.Contains(st.Message(), "firebreak.db") {
				t.Errorf("the client sees the cause: %q", st.Message())
			}
			id := tt.wantID
			if id == "" {
				// No span: a fresh error id, the same in the log and the answer.
				_, after, ok := strings.Cut(st.Message(), "error id ")
				if !ok || len(after) != 16 {
					t.Fatalf("no error id in %q", st.Message())
				}
				id = after
			}
			if !strings.Contains(st.Message(), id) {
				t.Errorf("message %q does not carry the id %s", st.Message(), id)
			}
			if !strings.Contains(logged.String(), cause) {
				t.Errorf("the log lacks the cause: %s", logged.String())
			}
			if tt.wantID == "" && !strings.Contains(logged.String(), id) {
				t.Errorf("the log lacks the error id %s: %s", id, logged.String())
			}
		})
	}
}
