package hostcollect_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

var (
	buildOnce sync.Once
	pluginDir string
	pluginBin string
	buildErr  error
)

// TestMain removes the plugin binary built for the tests: left in /tmp it
// would be collected by the next run's tmp_executables.
func TestMain(m *testing.M) {
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// pluginBinary builds the real plugin binary once per test run.
func pluginBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		var err error
		pluginDir, err = os.MkdirTemp("", "host-collect-bin")
		if err != nil {
			buildErr = err
			return
		}
		pluginBin = filepath.Join(pluginDir, "firebreak-plugin-host-collect")
		out, err := exec.Command("go", "build", "-o", pluginBin, "github.com/firebreak-ir/firebreak/plugins/cmd/firebreak-plugin-host-collect").CombinedOutput()
		if err != nil {
			buildErr = err
			pluginBin = string(out)
		}
	})
	if buildErr != nil {
		tb.Fatalf("building the plugin: %v\n%s", buildErr, pluginBin)
	}
	return pluginBin
}

// pluginRun is one collection by the plugin process, as an agent runs it.
type pluginRun struct {
	elapsed  time.Duration
	bytes    int64
	sha256   string
	peakRSS  int64 // bytes, from VmHWM
	result   hostcollect.Result
	manifest *bundle.Manifest
}

// runPlugin starts the plugin binary the way the agent does (gRPC only, no
// host environment), streams the archive into bundle.Verify as it arrives,
// and reads the plugin's peak RSS before stopping it.
func runPlugin(tb testing.TB, params string) *pluginRun {
	tb.Helper()
	bin := pluginBinary(tb)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginMap,
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		SkipHostEnv:      true,
		StartTimeout:     30 * time.Second,
		Logger:           hclog.NewNullLogger(),
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		tb.Fatal(err)
	}
	pid := client.ReattachConfig().Pid

	pr, pw := io.Pipe()
	type verified struct {
		m   *bundle.Manifest
		err error
	}
	done := make(chan verified, 1)
	go func() {
		m, _, err := bundle.Verify(pr)
		io.Copy(io.Discard, pr)
		done <- verified{m, err}
	}()
	run := &pluginRun{}
	h := sha256.New()
	start := time.Now()
	res, err := raw.(*sdk.Client).Execute(context.Background(), &pluginv1.ExecuteRequest{ParamsJson: []byte(params)}, func(m *pluginv1.ExecuteResponse) error {
		if a := m.GetArtifact(); a != nil {
			run.bytes += int64(len(a.GetData()))
			h.Write(a.GetData())
			if _, err := pw.Write(a.GetData()); err != nil {
				return err
			}
			if a.GetEof() {
				pw.Close()
			}
		}
		return nil
	})
	run.elapsed = time.Since(start)
	pw.Close()
	if err != nil {
		tb.Fatal(err)
	}
	run.peakRSS = vmHWM(pid)
	v := <-done
	if v.err != nil {
		tb.Fatalf("the streamed bundle does not verify: %v", v.err)
	}
	run.manifest = v.m
	run.sha256 = hex.EncodeToString(h.Sum(nil))
	if err := json.Unmarshal(res.GetOutputJson(), &run.result); err != nil {
		tb.Fatal(err)
	}
	if run.result.Archive.SHA256 != run.sha256 || run.result.Archive.Bytes != run.bytes {
		tb.Errorf("the result says %s (%d bytes); the agent received %s (%d bytes)", run.result.Archive.SHA256, run.result.Archive.Bytes, run.sha256, run.bytes)
	}
	return run
}

// vmHWM reads a process's peak resident set size.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// TestPluginProcessStreamsAVerifiableBundle runs the real plugin binary over
// go-plugin, as the agent does, and reports the triage figures on this
// machine. It checks behaviour, not timings.
func TestPluginProcessStreamsAVerifiableBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the plugin binary")
	}
	run := runPlugin(t, `{"profile":"triage"}`)
	t.Logf("triage: %s wall, archive %.1f MB compressed (%.1f MB payload, %d members), plugin peak RSS %.1f MiB",
		run.elapsed.Round(time.Millisecond), float64(run.bytes)/1e6, float64(run.result.Archive.PayloadBytes)/1e6,
		run.result.Archive.Members, float64(run.peakRSS)/(1<<20))
	if run.manifest.Profile != "triage" || len(run.manifest.Artifacts) != len(run.result.Artifacts) {
		t.Errorf("manifest %+v", run.manifest.Artifacts)
	}
	if run.result.Priority.Nice != 15 || len(run.result.Priority.Errors) != 0 {
		t.Errorf("priority %+v", run.result.Priority)
	}
}

// BenchmarkTriage reports the triage profile's wall time, archive size and
// the plugin process's peak RSS on this machine.
func BenchmarkTriage(b *testing.B) {
	var last *pluginRun
	for b.Loop() {
		last = runPlugin(b, `{"profile":"triage"}`)
	}
	b.ReportMetric(last.elapsed.Seconds(), "s/triage")
	b.ReportMetric(float64(last.bytes)/1e6, "MB/archive")
	b.ReportMetric(float64(last.result.Archive.PayloadBytes)/1e6, "MB/payload")
	b.ReportMetric(float64(last.peakRSS)/(1<<20), "MiB/peak-RSS")
}
