package intake_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
)

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestFindingStartsTheTraceThePlaybookContinues: a finding taken in is a
// finding.intake span — a root for SQS and a bare EventBridge call, the
// sender's child when it names a trace — and the playbook run it starts,
// with each step, continues that trace; the case's entries name it.
func TestFindingStartsTheTraceThePlaybookContinues(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})
	e := newEnv(t, nil)
	secret := strings.Repeat("s", intake.MinSecretLength)
	srv := httptest.NewServer(e.c.Intake.Handler(intake.HandlerConfig{Operators: e.c.Store, Secret: []byte(secret)}))
	t.Cleanup(srv.Close)

	const sender = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name        string
		traceparent string
		wantTrace   string
		wantParent  string
	}{
		{"the sender names a trace", sender, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"},
		{"no trace context", "", "", "0000000000000000"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case is a new finding, so each starts the playbook.
			suffix := string(rune('a' + i))
			body := bytes.ReplaceAll(sample(t, "guardduty-ssh-bruteforce.json"), []byte("i-0a1b2c3d4e5f67890"), []byte("i-0a1b2c3d4e5f6789"+suffix))
			body = bytes.ReplaceAll(body, []byte("16c5e3d9a0b1f2e7c4d8a6b9e0f1a2b3"), []byte("16c5e3d9a0b1f2e7c4d8a6b9e0f1a2b"+suffix))
			req, _ := http.NewRequest(http.MethodPost, srv.URL+intake.EventsPath, bytes.NewReader(body))
			req.Header.Set(intake.SecretHeader, secret)
			if tt.traceparent != "" {
				req.Header.Set("traceparent", tt.traceparent)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s", resp.Status)
			}
			var in sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "finding.intake" && attr(s, "firebreak.finding.id") != "" && (tt.wantTrace == "" || s.SpanContext().TraceID().String() == tt.wantTrace) &&
					s.Parent().SpanID().String() == tt.wantParent {
					in = s
				}
			}
			if in == nil {
				t.Fatalf("no finding.intake span with parent %s", tt.wantParent)
			}
			pbr := attr(in, "firebreak.playbook.run.id")
			if pbr == "" || attr(in, "firebreak.finding.via") != "intake/eventbridge" || attr(in, "firebreak.case.id") == "" ||
				attr(in, "firebreak.rule") != "contain-ssh" || attr(in, "firebreak.finding.type") != "UnauthorizedAccess:EC2/SSHBruteForce" {
				t.Fatalf("finding.intake attributes %v", in.Attributes())
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := e.c.Playbooks.Wait(ctx, pbr)
			if err != nil || r.Status != playbookrun.StatusSucceeded {
				t.Fatalf("playbook run %v (%v)", r, err)
			}
			tid := in.SpanContext().TraceID()
			var start, step sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.SpanContext().TraceID() != tid {
					continue
				}
				switch s.Name() {
				case "playbook.start":
					start = s
				case "playbook.step":
					step = s
				}
			}
			if start == nil || start.Parent().SpanID() != in.SpanContext().SpanID() {
				t.Fatalf("the playbook.start span is not the finding.intake span's child")
			}
			if step == nil || step.Parent().SpanID() != start.SpanContext().SpanID() || attr(step, "firebreak.playbook.step") != "isolate" {
				t.Fatalf("the isolate step's span is not under playbook.start")
			}
			tl, err := e.c.Cases.Timeline(context.Background(), r.CaseID)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range tl {
				if en.TraceID != tid.String() {
					t.Errorf("timeline entry %q names trace %q, want the finding's %s", en.Summary, en.TraceID, tid)
				}
			}
		})
	}
}
