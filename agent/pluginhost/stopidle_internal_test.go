package pluginhost

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// TestStopIdle runs the real noop plugin binary and checks that StopIdle
// stops its process once no action runs, as the agent does after its
// start-up reconciliation, and that the next call starts it again.
func TestStopIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a plugin binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, FilePrefix+"noop")
	build := exec.Command("go", "build", "-o", bin, "github.com/firebreak-ir/firebreak/plugins/cmd/firebreak-plugin-noop")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the noop plugin: %v\n%s", err, out)
	}
	m, err := ScanDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	// An idle timeout far longer than the test: only StopIdle can stop it.
	h, err := New(Config{Dir: dir, Role: "host", IdleTimeout: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e := h.plugins["noop"]
	if e == nil {
		t.Fatalf("noop not loaded; skipped: %v", h.Skipped())
	}
	held := func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.client != nil
	}
	if held() {
		t.Fatal("a plugin process is held after loading (describe must stop it)")
	}
	for round := range 2 {
		if _, err := h.Execute(context.Background(), "noop", &pluginv1.ExecuteRequest{ParamsJson: []byte("{}")}, nil); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		e.mu.Lock()
		client := e.client
		e.mu.Unlock()
		if client == nil || client.Exited() {
			t.Fatalf("round %d: no live plugin process after a call", round)
		}
		h.StopIdle()
		if held() {
			t.Fatalf("round %d: the plugin process is still held after StopIdle", round)
		}
		if !client.Exited() {
			t.Fatalf("round %d: the plugin process still runs after StopIdle", round)
		}
	}
}
