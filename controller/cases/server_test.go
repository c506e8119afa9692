package cases_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestStoreFailureIsInternal: when the database fails under the case API,
// the operator gets Internal (not Unavailable, which the CLI reports as
// an unreachable controller) with the request's trace id to quote, and
// not the database's error, which the controller logs.
func TestStoreFailureIsInternal(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	svc, err := cases.New(cases.Config{Store: st, Runs: st,
		Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := cases.NewServer(svc, nil)
	st.Close() // every query fails from now on
	traceID := trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: trace.FlagsSampled}))

	calls := []struct {
		name string
		call func() error
	}{
		{"ListCases", func() error { _, err := srv.ListCases(ctx, &operatorv1.ListCasesRequest{}); return err }},
		{"GetCase", func() error { _, err := srv.GetCase(ctx, &operatorv1.GetCaseRequest{CaseId: "case-1"}); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			logged.Reset()
			st, _ := status.FromError(c.call())
			if st.Code() != codes.Internal {
				t.Fatalf("code %v (%q), want Internal", st.Code(), st.Message())
			}
			if !strings.Contains(st.Message(), traceID.String()) {
				t.Errorf("message %q lacks the trace id %s", st.Message(), traceID)
			}
			if strings.Contains(st.Message(), "closed") || strings.Contains(st.Message(), "sql") {
				t.Errorf("message %q carries the database's error", st.Message())
			}
			if !strings.Contains(logged.String(), "closed") {
				t.Errorf("the controller's log lacks the cause: %s", logged.String())
			}
		})
	}
}
