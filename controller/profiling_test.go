package controller

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProfilesServedOnlyWithPprof: the metrics listener serves Go's
// runtime profiles with Profiling (--pprof), and not without.
func TestProfilesServedOnlyWithPprof(t *testing.T) {
	for _, tt := range []struct {
		name      string
		profiling bool
		want      int
	}{
		{"off by default", false, http.StatusNotFound},
		{"--pprof", true, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "controller")
			ctx, cancel := context.WithCancel(context.Background())
			c, err := New(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0", Profiling: tt.profiling,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() { cancel(); <-done }()
			var addr []byte
			for deadline := time.Now().Add(30 * time.Second); ; {
				if addr, err = os.ReadFile(filepath.Join(dir, MetricsAddrFile)); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %s: %v", MetricsAddrFile, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			resp, err := http.Get("http://" + strings.TrimSpace(string(addr)) + "/debug/pprof/goroutine?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("GET /debug/pprof/goroutine: %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.profiling && !strings.Contains(string(body), "goroutine profile:") {
				t.Fatalf("the goroutine profile is %q", body)
			}
		})
	}
}
