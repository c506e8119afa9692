// Package telemetry is the one OpenTelemetry set-up of every Firebreak
// process (controller, operator CLI, lab, agent and plugins): traces and
// logs over OTLP (gRPC or HTTP/protobuf) and metrics for Prometheus, all
// with one resource, configured by the SDK's standard environment, and
// flushed at every stop with a fresh, bounded context. It also holds slog
// with the trace id on every record, and the W3C trace context helpers.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ShutdownTimeout bounds the flush at stop. It is shorter than the two
// seconds go-plugin gives a plugin to exit before it kills it.
const ShutdownTimeout = 1500 * time.Millisecond

// Protocol values of OTEL_EXPORTER_OTLP_PROTOCOL that Firebreak speaks.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// OTLPEnv lists the environment variables that configure telemetry. The
// agent passes exactly these on to plugins, which otherwise start with an
// empty environment. OTEL_SERVICE_NAME is not among them: a plugin names
// itself.
var OTLPEnv = []string{
	"OTEL_SDK_DISABLED",
	"OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_EXPORTER",
	"OTEL_LOGS_EXPORTER",
	"OTEL_TRACES_SAMPLER",
	"OTEL_TRACES_SAMPLER_ARG",
	"OTEL_BSP_SCHEDULE_DELAY",
	"OTEL_BSP_EXPORT_TIMEOUT",
	"OTEL_BSP_MAX_QUEUE_SIZE",
	"OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
	"OTEL_BLRP_SCHEDULE_DELAY",
	"OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_INSECURE",
	"OTEL_EXPORTER_OTLP_TRACES_INSECURE",
	"OTEL_EXPORTER_OTLP_LOGS_INSECURE",
	"OTEL_EXPORTER_OTLP_HEADERS",
	"OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_LOGS_HEADERS",
	"OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
	"OTEL_EXPORTER_OTLP_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_TIMEOUT",
	"OTEL_EXPORTER_OTLP_COMPRESSION",
}

// Config says which process sets telemetry up.
type Config struct {
	// Service is the default service.name (OTEL_SERVICE_NAME overrides it).
	Service string
	// Version is service.version.
	Version string
	// Attributes are added to the resource, e.g. firebreak.agent.id.
	Attributes []attribute.KeyValue
	// DetectEC2 adds cloud.* and host.id from IMDSv2 when the process runs
	// on EC2 (or AWS_EC2_METADATA_SERVICE_ENDPOINT names a metadata
	// service), bounded by EC2Timeout.
	DetectEC2 bool
	// EC2Timeout bounds the metadata look-up (default 1s).
	EC2Timeout time.Duration
	// Metrics makes a meter provider whose readings MetricsHandler serves
	// in the Prometheus format.
	Metrics bool
}

// CheckAndSetDefaults checks the config and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Service == "" {
		return errors.New("telemetry: a service name is required")
	}
	if c.EC2Timeout <= 0 {
		c.EC2Timeout = time.Second
	}
	return nil
}

// Telemetry is a process's installed providers. Shutdown flushes them.
type Telemetry struct {
	// Resource describes the process on every span, log record and metric.
	Resource *resource.Resource
	// Exporting reports whether spans leave the process.
	Exporting bool

	tp   *sdktrace.TracerProvider
	lp   *sdklog.LoggerProvider
	mp   *sdkmetric.MeterProvider
	once sync.Once
}

var (
	metricsMu      sync.Mutex
	metricsHandler http.Handler
)

// Setup installs the global tracer, logger and meter providers and the W3C
// propagator (trace context with tracestate, and baggage), following the
// SDK's standard environment:
//   - OTEL_SDK_DISABLED=true: nothing is recorded; trace context still
//     propagates;
//   - spans are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or
//     OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set and OTEL_TRACES_EXPORTER is
//     not "none", with the protocol of OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL
//     (grpc, the default, or http/protobuf); headers, TLS and timeouts come
//     from the exporters' own variables;
//   - OTEL_LOGS_EXPORTER=otlp also exports slog records over OTLP;
//   - OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_* are read by the SDK;
//   - OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME override the resource.
//
// Setup never fails the process for telemetry: an exporter that cannot be
// built is reported and left out.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t := &Telemetry{}
	if envBool("OTEL_SDK_DISABLED") {
		t.Resource = resource.Empty()
		setMetricsHandler(nil)
		return t, nil
	}
	t.Resource = newResource(ctx, cfg)

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(t.Resource)}
	if tracesWanted() {
		exp, err := newTraceExporter(ctx)
		if err != nil {
			slog.Warn("the OTLP trace exporter could not be built; spans stay in the process", "error", err)
		} else {
			topts = append(topts, sdktrace.WithBatcher(exp))
			t.Exporting = true
		}
	}
	t.tp = sdktrace.NewTracerProvider(topts...)
	otel.SetTracerProvider(clockedProvider{tp: t.tp, clock: newSpanClock()})

	if strings.TrimSpace(os.Getenv("OTEL_LOGS_EXPORTER")) == "otlp" {
		exp, err := newLogExporter(ctx)
		if err != nil {
			slog.Warn("the OTLP log exporter could not be built; logs stay on stderr", "error", err)
		} else {
			t.lp = sdklog.NewLoggerProvider(sdklog.WithResource(t.Resource), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
			otel.SetLoggerProvider(t.lp)
			setLogExport(otelslog.NewHandler("github.com/firebreak-ir/firebreak", otelslog.WithLoggerProvider(t.lp)))
		}
	}

	if cfg.Metrics {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("telemetry: building the Prometheus exporter: %w", err)
		}
		t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(t.Resource), sdkmetric.WithReader(exp))
		otel.SetMeterProvider(t.mp)
		setMetricsHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	return t, nil
}

// Shutdown flushes and stops the providers with a fresh context bounded by
// ShutdownTimeout, so a stop whose own context is already cancelled (SIGTERM)
// still delivers what was buffered. It is safe to call more than once.
func (t *Telemetry) Shutdown() error {
	if t == nil {
		return nil
	}
	var err error
	t.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if t.tp != nil {
			err = errors.Join(err, t.tp.Shutdown(ctx))
		}
		if t.lp != nil {
			setLogExport(nil)
			err = errors.Join(err, t.lp.Shutdown(ctx))
		}
		if t.mp != nil {
			err = errors.Join(err, t.mp.Shutdown(ctx))
		}
	})
	return err
}

// ForceFlush exports what is buffered now, bounded like Shutdown.
func (t *Telemetry) ForceFlush() error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var err error
	if t.tp != nil {
		err = errors.Join(err, t.tp.ForceFlush(ctx))
	}
	if t.lp != nil {
		err = errors.Join(err, t.lp.ForceFlush(ctx))
	}
	return err
}

// MetricsHandler serves the process's metrics in the Prometheus text
// format, or 503 when Setup was not asked for metrics.
func MetricsHandler() http.Handler {
	metricsMu.Lock()
	defer metricsMu.Unlock()
	if metricsHandler == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics are not enabled in this process", http.StatusServiceUnavailable)
		})
	}
	return metricsHandler
}

func setMetricsHandler(h http.Handler) {
	metricsMu.Lock()
	metricsHandler = h
	metricsMu.Unlock()
}

func tracesWanted() bool {
	if strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")) == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// protocol returns the OTLP protocol for a signal (TRACES or LOGS).
func protocol(signal string) (string, error) {
	p := os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch p {
	case "", ProtocolGRPC:
		return ProtocolGRPC, nil
	case ProtocolHTTP:
		return ProtocolHTTP, nil
	}
	return "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q is not supported: use grpc or http/protobuf", p)
}

func newTraceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	p, err := protocol("TRACES")
	if err != nil {
		return nil, err
	}
	if p == ProtocolHTTP {
		return otlptracehttp.New(ctx)
	}
	return otlptracegrpc.New(ctx)
}

func newLogExporter(ctx context.Context) (sdklog.Exporter, error) {
	p, err := protocol("LOGS")
	if err != nil {
		return nil, err
	}
	if p == ProtocolHTTP {
		return otlploghttp.New(ctx)
	}
	return otlploggrpc.New(ctx)
}

func envBool(k string) bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv(k)), "true")
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
