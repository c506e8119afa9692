package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

func TestEndpointWarning(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		warn bool
	}{
		{name: "real AWS", env: map[string]string{}},
		{name: "both set", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}},
		{name: "only the STS endpoint", env: map[string]string{"AWS_ENDPOINT_URL_STS": "http://127.0.0.1:4566"}},
		{name: "AWS_ENDPOINT_URL without the STS one", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}, warn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := endpointWarning(func(k string) string { return tt.env[k] })
			if (got != "") != tt.warn {
				t.Fatalf("endpointWarning = %q; want a warning: %v", got, tt.warn)
			}
		})
	}
}

func TestOwnCredentialsFailed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "expired", err: &smithy.GenericAPIError{Code: "ExpiredToken"}, want: true},
		{name: "unknown key", err: &smithy.GenericAPIError{Code: "InvalidClientTokenId"}, want: true},
		{name: "STS not answering", err: errors.New("dial tcp 127.0.0.1:1: connection refused"), want: true},
		{name: "the account's role refuses", err: &smithy.GenericAPIError{Code: "AccessDenied"}},
		{name: "cancelled", err: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownCredentialsFailed(tt.err); got != tt.want {
				t.Fatalf("ownCredentialsFailed(%v) = %v; want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestWorkerCredentialsRecover: a worker whose credentials fail at start
// is degraded with the reason, keeps trying, and recovers on its own; a
// task that finds the credentials broken degrades it again until the next
// attempt works.
func TestWorkerCredentialsRecover(t *testing.T) {
	w := newWorkerCredentials(WorkerConfig{}, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var mu sync.Mutex
	fail := errors.New("the worker has no usable AWS credentials (sts:GetCallerIdentity failed): connection refused")
	attempts := 0
	w.connect = func(context.Context) (*credentialBroker, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if fail != nil {
			return nil, fail
		}
		return &credentialBroker{account: "111122223333"}, nil
	}
	changes := make(chan string, 16)
	w.changed = func(r string) { changes <- r }
	if w.try(context.Background()) {
		t.Fatal("the first attempt succeeded against a failing STS")
	}
	if r := <-changes; r != fail.Error() || w.reason() != fail.Error() {
		t.Fatalf("degraded reason %q (told %q); want %q", w.reason(), r, fail.Error())
	}
	if b, _ := w.current(); b != nil {
		t.Fatal("a degraded worker has a broker")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.recover(ctx)
	mu.Lock()
	fail = nil
	mu.Unlock()
	if r := <-changes; r != "" {
		t.Fatalf("told %q; want the recovery (\"\")", r)
	}
	if b, r := w.current(); b == nil || b.account != "111122223333" || r != "" {
		t.Fatalf("after recovery: broker %v, degraded %q", b, r)
	}
	// A task finds the credentials expired: degraded, then recovered by
	// the loop at once, without waiting out a backoff.
	w.broken("the worker's own credentials are not valid (ExpiredToken)")
	if r := <-changes; r == "" {
		t.Fatal("broken did not report the worker degraded")
	}
	if r := <-changes; r != "" {
		t.Fatalf("told %q; want the recovery", r)
	}
}
