// Package telemetry sets up Firebreak's logs and traces: slog with the trace
// id on every record, and OpenTelemetry tracing exported over OTLP when the
// standard OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// OTLPEnv lists the environment variables that configure the exporter. The
// agent passes exactly these on to plugins, which otherwise start with an
// empty environment.
var OTLPEnv = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_INSECURE",
	"OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_HEADERS",
	"OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_TRACES_SAMPLER",
	"OTEL_TRACES_SAMPLER_ARG",
}

// SetupTracing installs the global tracer provider and the W3C propagator.
// Spans are exported only when an OTLP endpoint is configured; trace context
// still propagates otherwise. The returned function flushes and stops.
func SetupTracing(ctx context.Context, service string) func(context.Context) error {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(newResource(service)))
		otel.SetTracerProvider(tp)
		return tp.Shutdown
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		slog.Warn("OTLP trace exporter not started; traces stay local", "error", err)
		return func(context.Context) error { return nil }
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(newResource(service)))
	otel.SetTracerProvider(tp)
	return tp.Shutdown
}

func newResource(service string) *resource.Resource {
	return resource.NewSchemaless(semconv.ServiceName(service))
}

// NewLogger returns a slog logger writing JSON (services) or text (CLI) to w,
// adding trace_id and span_id from the record's context.
func NewLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(traceHandler{h})
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

// InjectTraceContext returns the W3C traceparent and tracestate of ctx.
func InjectTraceContext(ctx context.Context) (traceparent, tracestate string) {
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	return carrier["traceparent"], carrier["tracestate"]
}

// ExtractTraceContext returns ctx carrying the remote span context given by
// traceparent and tracestate.
func ExtractTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		carrier["tracestate"] = tracestate
	}
	return otel.GetTextMapPropagator().Extract(ctx, carrier)
}

// Tracer returns Firebreak's named tracer.
func Tracer() trace.Tracer { return otel.Tracer("github.com/firebreak-ir/firebreak") }
