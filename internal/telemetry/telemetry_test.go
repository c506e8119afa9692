package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, general, traces, want string
		wantErr                     bool
	}{
		{name: "default is grpc", want: ProtocolGRPC},
		{name: "general http", general: "http/protobuf", want: ProtocolHTTP},
		{name: "signal overrides general", general: "http/protobuf", traces: "grpc", want: ProtocolGRPC},
		{name: "json is refused", general: "http/json", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.general)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", tc.traces)
			got, err := protocol("TRACES")
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("protocol() = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestShutdownDeliversOverHTTP: with a ten-minute batch delay, only the
// flush at stop can deliver, and it must, even when the caller's context
// is long cancelled. The resource carries the service, the host and
// OTEL_RESOURCE_ATTRIBUTES.
func TestShutdownDeliversOverHTTP(t *testing.T) {
	var got atomic.Pointer[coltrace.ExportTraceServiceRequest]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		got.Store(req)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	ctx, cancel := context.WithCancel(context.Background())
	tel, err := Setup(ctx, Config{Service: "firebreak-test", Version: "9.9.9", Attributes: []attribute.KeyValue{AttrAgentID.String("agt-1")}})
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer().Start(ctx, "work")
	span.End()
	cancel()
	if err := tel.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	req := got.Load()
	if req == nil || len(req.GetResourceSpans()) != 1 {
		t.Fatalf("no spans arrived at stop")
	}
	res := map[string]string{}
	for _, kv := range req.GetResourceSpans()[0].GetResource().GetAttributes() {
		res[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	for k, want := range map[string]string{"service.name": "firebreak-test", "service.version": "9.9.9",
		"firebreak.agent.id": "agt-1", "deployment.environment.name": "test"} {
		if res[k] != want {
			t.Errorf("resource %s = %q, want %q", k, res[k], want)
		}
	}
	if res["host.name"] == "" {
		t.Errorf("resource has no host.name: %v", res)
	}
	if _, ok := res["process.command_args"]; ok {
		t.Errorf("the resource carries the command line, which may hold secrets")
	}
}

func TestDisabledStillPropagates(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "true")
	tel, err := Setup(context.Background(), Config{Service: "firebreak-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := ExtractTraceContext(context.Background(), tp, "vendor=x")
	gotTP, gotTS := InjectTraceContext(ctx)
	if gotTP != tp || gotTS != "vendor=x" {
		t.Fatalf("propagated %q %q, want %q and the tracestate", gotTP, gotTS, tp)
	}
}
