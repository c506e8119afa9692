package console_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// realConsole is a real in-process controller serving the console, with a
// browser signed in as admin.
type realConsole struct {
	c       *controller.Controller
	base    string
	browser *http.Client
}

func startRealConsole(tb testing.TB) *realConsole {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := tb.TempDir()
	c, err := controller.New(ctx, controller.Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0",
		Console: controller.ConsoleConfig{Listen: "127.0.0.1:0"}})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	caPEM, err := os.ReadFile(filepath.Join(dir, "data", "ca.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	rc := &realConsole{c: c, base: "https://" + c.ConsoleAddr(), browser: &http.Client{Jar: jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	admin, err := c.Store.GetOperator(ctx, "admin")
	if err != nil {
		tb.Fatal(err)
	}
	secret := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	sum := sha256.Sum256([]byte(secret))
	if err := c.Store.CreateConsoleLink(ctx, &store.ConsoleLink{Hash: hex.EncodeToString(sum[:]), Operator: "admin", CertSerial: admin.CertSerial,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
		tb.Fatal(err)
	}
	var resp *http.Response
	for range 100 { // the console's listener is bound before Run serves it
		if resp, err = rc.browser.Get(rc.base + "/login/" + secret); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("signing in: %v %v", err, resp)
	}
	resp.Body.Close()
	return rc
}

// storeRun stores an ended run of n targets, as a run the dispatcher no
// longer holds is read: from the store.
func (rc *realConsole) storeRun(tb testing.TB, id string, n int) {
	tb.Helper()
	now := time.Now()
	run := &store.Run{ID: id, Action: "noop", Selector: "all", Status: operatorv1.RunStatus_RUN_STATUS_SUCCEEDED, CreatedBy: "admin",
		CreatedAt: now, FinishedAt: now, Deadline: now.Add(time.Hour), MaxErrors: "0", ParamsJSON: []byte("{}")}
	tasks := make([]*store.Task, n)
	for i := range tasks {
		tasks[i] = &store.Task{ID: fmt.Sprintf("%s-t%05d", id, i), RunID: id, Seq: i, AgentID: fmt.Sprintf("agt-%05d", i), Hostname: fmt.Sprintf("host-%05d", i),
			Status: agentv1.TaskStatus_TASK_STATUS_SUCCEEDED, OutputJSON: []byte(`{"ok":true}`)}
	}
	if err := rc.c.Store.CreateRun(context.Background(), run, tasks); err != nil {
		tb.Fatal(err)
	}
}

func (rc *realConsole) page(tb testing.TB, path string) []byte {
	tb.Helper()
	resp, err := rc.browser.Get(rc.base + path)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

// TestRunPageBytesDoNotGrowWithTheTargets renders the run page of a
// 1,000- and a 10,000-target run through a real controller: the page holds
// one page of targets and the total, so it is the same size within the
// width of the numbers.
func TestRunPageBytesDoNotGrowWithTheTargets(t *testing.T) {
	rc := startRealConsole(t)
	rc.storeRun(t, "run-1k", 1000)
	rc.storeRun(t, "run-10k", 10000)
	small, big := rc.page(t, "/runs/run-1k"), rc.page(t, "/runs/run-10k")
	if d := len(big) - len(small); d < -200 || d > 200 {
		t.Fatalf("the 10,000-target page is %d bytes, the 1,000-target page %d", len(big), len(small))
	}
	t.Logf("run page: %d bytes for 1,000 targets, %d bytes for 10,000", len(small), len(big))
}

// BenchmarkRunPage10000Targets is the first render of a 10,000-target run
// page through a real controller (HTTPS on loopback included), with the
// bytes sent.
func BenchmarkRunPage10000Targets(b *testing.B) {
	rc := startRealConsole(b)
	rc.storeRun(b, "run-10k", 10000)
	var n int
	b.ResetTimer()
	for b.Loop() {
		n = len(rc.page(b, "/runs/run-10k"))
	}
	b.ReportMetric(float64(n), "bytes/page")
}
