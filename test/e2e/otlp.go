package e2e

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with its resource's attributes.
type Span struct {
	TraceID, SpanID, ParentID string
	Name                      string
	Kind                      tracepb.Span_SpanKind
	Status                    tracepb.Status_StatusCode
	StatusMessage             string
	Attrs                     map[string]string
	Resource                  map[string]string
	Start, End                uint64
}

// OTLPSink is a minimal OpenTelemetry collector in the test process: the
// OTLP trace and log services over gRPC, and /v1/traces and /v1/logs over
// HTTP with protobuf bodies.
type OTLPSink struct {
	// GRPCAddr and HTTPURL are where processes send.
	GRPCAddr, HTTPURL string

	mu    sync.Mutex
	spans []Span
	logs  []LogRecord
}

// StartOTLPSink serves both protocols until the test ends.
func StartOTLPSink(t testing.TB) *OTLPSink {
	t.Helper()
	s := &OTLPSink{}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, traceService{s: s})
	collogs.RegisterLogsServiceServer(srv, logsService{s: s})
	go func() { _ = srv.Serve(gl) }()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		req := &coltrace.ExportTraceServiceRequest{}
		if !readProto(w, r, req) {
			return
		}
		s.addSpans(req.GetResourceSpans())
		writeProto(w, &coltrace.ExportTraceServiceResponse{})
	})
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		req := &collogs.ExportLogsServiceRequest{}
		if !readProto(w, r, req) {
			return
		}
		s.addLogs(req.GetResourceLogs())
		writeProto(w, &collogs.ExportLogsServiceResponse{})
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = hs.Close()
	})
	s.GRPCAddr = gl.Addr().String()
	s.HTTPURL = "http://" + hl.Addr().String()
	return s
}

func readProto(w http.ResponseWriter, r *http.Request, m proto.Message) bool {
	b, err := io.ReadAll(r.Body)
	if err == nil {
		err = proto.Unmarshal(b, m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, _ := proto.Marshal(m)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(b)
}

type traceService struct {
	coltrace.UnimplementedTraceServiceServer
	s *OTLPSink
}

func (t traceService) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	t.s.addSpans(req.GetResourceSpans())
	return &coltrace.ExportTraceServiceResponse{}, nil
}

type logsService struct {
	collogs.UnimplementedLogsServiceServer
	s *OTLPSink
}

func (l logsService) Export(_ context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	l.s.addLogs(req.GetResourceLogs())
	return &collogs.ExportLogsServiceResponse{}, nil
}

func (s *OTLPSink) addSpans(rss []*tracepb.ResourceSpans) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range rss {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, Span{
					TraceID: hex.EncodeToString(sp.GetTraceId()), SpanID: hex.EncodeToString(sp.GetSpanId()),
					ParentID: hex.EncodeToString(sp.GetParentSpanId()), Name: sp.GetName(), Kind: sp.GetKind(),
					Status: sp.GetStatus().GetCode(), StatusMessage: sp.GetStatus().GetMessage(),
					Attrs: attrMap(sp.GetAttributes()), Resource: res,
					Start: sp.GetStartTimeUnixNano(), End: sp.GetEndTimeUnixNano(),
				})
			}
		}
	}
}

func (s *OTLPSink) addLogs(rls []*logspb.ResourceLogs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rl := range rls {
		res := attrMap(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				s.logs = append(s.logs, LogRecord{
					TraceID: hex.EncodeToString(lr.GetTraceId()), SpanID: hex.EncodeToString(lr.GetSpanId()),
					Severity: lr.GetSeverityText(), Body: lr.GetBody().GetStringValue(),
					Attrs: attrMap(lr.GetAttributes()), Resource: res,
				})
			}
		}
	}
}

// Spans returns the spans received so far.
func (s *OTLPSink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Span(nil), s.spans...)
}

// LogRecord is one received log record with its resource's attributes.
type LogRecord struct {
	TraceID, SpanID string
	Severity, Body  string
	Attrs           map[string]string
	Resource        map[string]string
}

// Logs returns the log records received so far.
func (s *OTLPSink) Logs() []LogRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LogRecord(nil), s.logs...)
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = strconv.FormatInt(x.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = strconv.FormatBool(x.BoolValue)
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}
