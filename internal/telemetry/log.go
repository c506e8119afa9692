package telemetry

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
)

// logExport holds the OTLP log handler while Setup has log export on.
// Loggers made before Setup pick it up too.
var logExport atomic.Pointer[slog.Handler]

func setLogExport(h slog.Handler) {
	if h == nil {
		logExport.Store(nil)
		return
	}
	logExport.Store(&h)
}

// NewLogger returns a slog logger writing JSON (services) or text (CLI) to w,
// adding trace_id and span_id from the record's context. When Setup turned
// on OTLP log export (OTEL_LOGS_EXPORTER=otlp), each record enabled at the
// logger's level is exported too, with its trace context.
func NewLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(traceHandler{Handler: h})
}

type traceHandler struct {
	slog.Handler
	// attrs and groups replay WithAttrs and WithGroup on the OTLP handler,
	// which may arrive after the logger was derived.
	ops []func(slog.Handler) slog.Handler
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if p := logExport.Load(); p != nil {
		oh := *p
		for _, op := range h.ops {
			oh = op(oh)
		}
		_ = oh.Handle(ctx, r.Clone())
	}
	if sc := spanContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{Handler: h.Handler.WithAttrs(as), ops: append(h.ops[:len(h.ops):len(h.ops)], func(x slog.Handler) slog.Handler { return x.WithAttrs(as) })}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{Handler: h.Handler.WithGroup(name), ops: append(h.ops[:len(h.ops):len(h.ops)], func(x slog.Handler) slog.Handler { return x.WithGroup(name) })}
}
