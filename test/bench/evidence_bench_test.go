// Package bench holds benchmarks that run the real controller and agent
// code in one process, over real loopback mTLS.
package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/auth"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/internal/bandwidth/bandwidthtest"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// uploadBytes is the size of the artifact each measured upload carries.
const uploadBytes = 256 << 20

// block is the pseudo-random content artifacts are made of.
var block = func() []byte {
	b := make([]byte, 4<<20)
	rand.Read(b)
	return b
}()

// source yields n bytes cycling through block, in the writes a plugin makes.
type source struct{ n, off int64 }

func (s *source) Read(p []byte) (int, error) {
	if s.off >= s.n {
		return 0, io.EOF
	}
	i := s.off % int64(len(block))
	k := copy(p, block[i:])
	k = int(min(int64(k), s.n-s.off))
	s.off += int64(k)
	return k, nil
}

// emitAction is a built-in action that streams an artifact of the
// requested size, as host-collect streams its bundle.
type emitAction struct{}

func (emitAction) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{Name: "bench-artifact", Version: "1.0.0", Domain: pluginv1.Domain_DOMAIN_INFRASTRUCTURE,
		Description: "streams an artifact of pseudo-random bytes", Roles: []string{"host"},
		Params: []*pluginv1.ParamSpec{{Name: "bytes", Type: pluginv1.ParamType_PARAM_TYPE_INT, Description: "artifact size"}}}, nil
}

func (emitAction) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p struct {
		Bytes int64 `json:"bytes"`
	}
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	w := emit.Artifact("bench.bin", "application/octet-stream")
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(w, &source{n: p.Bytes}, buf); err != nil {
		return nil, err
	}
	return map[string]int64{"bytes": p.Bytes}, w.Close()
}

// lab is an in-process controller with one agent offering emitAction.
type lab struct {
	c     *controller.Controller
	op    context.Context
	agent string
}

// startLab starts the lab with its data directories in dir (a temporary
// directory when empty); the agent caps its uploads at bandwidth bytes per
// second (0: no cap), paced by pace (the wall clock when nil).
func startLab(b testing.TB, dir string, bandwidth int64, pace bandwidth.Clock) *lab {
	b.Helper()
	if dir == "" {
		dir = b.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	emit, err := emitAction{}.Describe(ctx)
	if err != nil {
		b.Fatal(err)
	}
	c, err := controller.New(ctx, controller.Config{DataDir: filepath.Join(dir, "controller"), Listen: "127.0.0.1:0", Logger: quiet,
		Actions: []*pluginv1.ActionDescription{emit}})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	op := auth.WithOperator(ctx, &store.Operator{Name: "bench", Role: operatorv1.OperatorRole_OPERATOR_ROLE_ADMIN})
	tok, err := c.Operator.CreateJoinToken(op, &operatorv1.CreateJoinTokenRequest{Role: agentv1.AgentRole_AGENT_ROLE_HOST, Uses: 1,
		Ttl: durationpb.New(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	a, err := agent.New(ctx, agent.Config{Controller: c.Addr(), CAFile: filepath.Join(dir, "controller", "ca.pem"), JoinToken: tok.GetToken(),
		DataDir: filepath.Join(dir, "agent"), Builtins: []sdk.Action{emitAction{}}, Logger: quiet, Bandwidth: bandwidth, PaceClock: pace})
	if err != nil {
		b.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-agentDone
		<-done
	})
	for !c.Fleet.Connected(a.ID()) {
		time.Sleep(5 * time.Millisecond)
	}
	return &lab{c: c, op: op, agent: a.ID()}
}

// TestEvidenceUploadInProcess runs uploads through the real agent and
// controller code in one process (`make test-race` runs it under the race
// detector, which then sees both sides), with and without bandwidth caps,
// and checks the stored bytes. The agent paces its uploads on a virtual
// clock, so a capped upload runs at full speed while the clock shows how
// long the caps made it take: the first chunk goes at once (the lower
// cap's burst, one chunk: a quarter of a second's worth, at most 1 MiB),
// the rest at the lower cap.
func TestEvidenceUploadInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("bench: -short runs unit tests only; this moves 40 MiB through a controller and an agent in the full suite (make test)")
	}
	tests := []struct {
		name     string
		agentCap int64
		runCap   uint64
		bytes    int64
		// paced is the virtual time the caps make the upload take.
		paced time.Duration
	}{
		{name: "uncapped", bytes: 24 << 20},
		{name: "agent capped at 8 MiB/s", agentCap: 8 << 20, bytes: 4 << 20, paced: 375 * time.Millisecond},
		{name: "run capped at 2 MiB/s", runCap: 2 << 20, bytes: 4 << 20, paced: 1750 * time.Millisecond},
		{name: "both capped, the run lower", agentCap: 8 << 20, runCap: 2 << 20, bytes: 4 << 20, paced: 1750 * time.Millisecond},
		{name: "both capped, the agent lower", agentCap: 1 << 20, runCap: 2 << 20, bytes: 4 << 20, paced: 3750 * time.Millisecond},
		{name: "empty artifact", bytes: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pace := bandwidthtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			l := startLab(t, "", tt.agentCap, pace)
			runID := l.uploadCapped(t, tt.bytes, tt.runCap)
			ids, err := l.c.Evidence.ListItems(l.op, evidence.Filter{})
			if err != nil || len(ids) != 1 {
				t.Fatalf("items %v %v", ids, err)
			}
			// The task records the item the controller stored for it.
			_, tasks, err := l.c.Store.GetRun(l.op, runID)
			if err != nil || len(tasks) != 1 {
				t.Fatalf("run %s: %d tasks, %v", runID, len(tasks), err)
			}
			if got := tasks[0].EvidenceIDs; len(got) != 1 || got[0] != ids[0].ID {
				t.Fatalf("the task records evidence %v, want [%s]", got, ids[0].ID)
			}
			h := sha256.New()
			io.Copy(h, &source{n: tt.bytes})
			if it := ids[0]; it.SHA256 != hex.EncodeToString(h.Sum(nil)) || it.Size != tt.bytes || it.AgentID != l.agent {
				t.Fatalf("stored %+v", it)
			}
			// The virtual clock moves only when the pacer sleeps; the
			// limiter's float arithmetic rounds each sleep to a nanosecond.
			slept, waits := pace.Slept()
			if d := slept - tt.paced; d > time.Millisecond || -d > time.Millisecond {
				t.Fatalf("the caps paced the upload for %v of virtual time in %d waits; want %v", slept, waits, tt.paced)
			}
		})
	}
}

// upload runs the action once and returns the run's id when its evidence
// is stored.
func (l *lab) upload(b testing.TB, n int64) string { return l.uploadCapped(b, n, 0) }

// uploadCapped is upload with the run's cap on the upload (0: no cap).
func (l *lab) uploadCapped(b testing.TB, n int64, runCap uint64) string {
	b.Helper()
	resp, err := l.c.Operator.CreateRun(l.op, &operatorv1.CreateRunRequest{Action: "bench-artifact", Selector: "all",
		Params: map[string]string{"bytes": fmt.Sprint(n)}, Deadline: durationpb.New(10 * time.Minute), UploadBytesPerSecond: runCap})
	if err != nil {
		b.Fatal(err)
	}
	for {
		r, err := l.c.Dispatcher.Snapshot(l.op, resp.GetRun().GetId())
		if err != nil {
			b.Fatal(err)
		}
		if r == nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := l.c.Dispatcher.Sync(l.op); err != nil {
		b.Fatal(err)
	}
	got, _, err := l.c.Store.GetRun(l.op, resp.GetRun().GetId())
	if err != nil || got.Status != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED {
		_, tasks, _ := l.c.Store.GetRun(l.op, resp.GetRun().GetId())
		b.Fatalf("run %v (%v): %+v", got.Status, err, tasks[0])
	}
	return resp.GetRun().GetId()
}

// mtlsPair returns a loopback TLS 1.3 connection pair authenticated both
// ways by certificates of one CA, as agent and controller are.
func mtlsPair(b testing.TB) (client, server net.Conn) {
	b.Helper()
	ca, err := pki.LoadOrCreateCA(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	skey, _ := pki.NewKey()
	scert, err := ca.IssueServer(skey.Public(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ckey, _ := pki.NewKey()
	ccert, err := ca.IssueClientForKey(ckey.Public(), pki.Identity{Kind: pki.KindAgent, Name: "agt-bench", Role: "host"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	srvTLS := pki.ServerTLS(ca, tls.Certificate{Certificate: [][]byte{scert.Raw}, PrivateKey: skey, Leaf: scert})
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		if err != nil {
			b.Error(err)
		}
		accepted <- c
	}()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cl, err := tls.Dial("tcp", lis.Addr().String(), pki.ClientTLS(pool, func() (*tls.Certificate, error) {
		return &tls.Certificate{Certificate: [][]byte{ccert.Raw}, PrivateKey: ckey, Leaf: ccert}, nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	return cl, <-accepted
}

// BenchmarkEvidenceUpload measures an evidence upload end to end — a
// plugin streaming an artifact, the agent's uploader (window, each chunk's
// CRC32C, the whole artifact's SHA-256), loopback mTLS gRPC, the
// controller's receiver (each chunk's CRC32C, the whole SHA-256, staging,
// checkpoints) and the local store — against two baselines measured in the
// same run: SHA-256 of the same bytes in memory (io.Copy into sha256), and
// io.Copy of the bytes over a loopback mTLS connection into SHA-256. It
// prints the rates and the ratios.
func BenchmarkEvidenceUpload(b *testing.B) {
	// Wall-clock rates depend on what else the machine runs; the bytes
	// hashed per CPU-second of this process do not.
	rates, perCPU := map[string]float64{}, map[string]float64{}
	measure := func(name string, f func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(uploadBytes)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				f(b)
			}
			mb := float64(uploadBytes) * float64(b.N) / 1e6
			rates[name] = mb / time.Since(start).Seconds()
			perCPU[name] = mb / (cpuTime() - cpu0).Seconds()
			b.ReportMetric(perCPU[name], "MB/cpu-s")
		})
	}
	measure("sha256-memory", func(b *testing.B) {
		h := sha256.New()
		if _, err := io.CopyBuffer(h, &source{n: uploadBytes}, make([]byte, 256<<10)); err != nil {
			b.Fatal(err)
		}
		h.Sum(nil)
	})
	measure("mtls-copy-sha256", func(b *testing.B) {
		b.StopTimer()
		cl, srv := mtlsPair(b)
		b.StartTimer()
		done := make(chan error, 1)
		go func() {
			h := sha256.New()
			_, err := io.Copy(h, srv)
			h.Sum(nil)
			done <- err
		}()
		if _, err := io.CopyBuffer(cl, &source{n: uploadBytes}, make([]byte, 256<<10)); err != nil {
			b.Fatal(err)
		}
		cl.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		srv.Close()
	})
	measure("crc32c-memory", func(b *testing.B) {
		h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		if _, err := io.CopyBuffer(h, &source{n: uploadBytes}, make([]byte, 256<<10)); err != nil {
			b.Fatal(err)
		}
		h.Sum32()
	})
	// The controller stages every byte in a file before it stores it;
	// this is that write alone, on the filesystem the "upload" lab uses.
	stageDir := b.TempDir()
	measure("staging-write", func(b *testing.B) {
		f, err := os.CreateTemp(stageDir, "staged-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if _, err := io.CopyBuffer(struct{ io.Writer }{f}, &source{n: uploadBytes}, make([]byte, 1<<20)); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	})
	onDisk := startLab(b, "", 0, nil)
	measure("upload", func(b *testing.B) { onDisk.upload(b, uploadBytes) })
	// The same with the controller's staging and store in memory, which
	// separates the transport's cost from the disk's.
	if shm, err := os.MkdirTemp("/dev/shm", "firebreak-bench-"); err == nil {
		b.Cleanup(func() { os.RemoveAll(shm) })
		inMemory := startLab(b, shm, 0, nil)
		measure("upload-tmpfs", func(b *testing.B) { inMemory.upload(b, uploadBytes) })
	}
	if up := rates["upload"]; up > 0 {
		fmt.Printf("GOMAXPROCS %d, %d MiB per upload, wall clock: upload %.0f MB/s; SHA-256 in memory %.0f MB/s (upload at %.0f%%); io.Copy over loopback mTLS into SHA-256 %.0f MB/s (upload at %.0f%%)\n",
			runtime.GOMAXPROCS(0), uploadBytes>>20, up, rates["sha256-memory"], 100*up/rates["sha256-memory"], rates["mtls-copy-sha256"],
			100*up/rates["mtls-copy-sha256"])
		fmt.Printf("per CPU-second of this process: upload %.0f MB; SHA-256 in memory %.0f MB (upload at %.0f%%); io.Copy over loopback mTLS into SHA-256 %.0f MB (upload at %.0f%%)\n",
			perCPU["upload"], perCPU["sha256-memory"], 100*perCPU["upload"]/perCPU["sha256-memory"], perCPU["mtls-copy-sha256"],
			100*perCPU["upload"]/perCPU["mtls-copy-sha256"])
		// The ceiling the protocol allows on this machine: an upload does
		// all the baseline does (one SHA-256 pass, TLS both ways, loopback
		// TCP) plus one more SHA-256 pass (the agent's whole-artifact hash;
		// the controller's is the baseline's) and two CRC32C passes (each
		// chunk's, on both sides). Were nothing else to cost anything and
		// every core busy all the time, it would move GOMAXPROCS /
		// (baseline CPU per byte + SHA-256 CPU per byte + 2 CRC32C CPU per
		// byte). The controller's staging write is as unavoidable; the
		// second ceiling counts it too.
		if base, sha, crc, stage := perCPU["mtls-copy-sha256"], perCPU["sha256-memory"], perCPU["crc32c-memory"], perCPU["staging-write"]; base > 0 && sha > 0 && crc > 0 && stage > 0 {
			cores := float64(runtime.GOMAXPROCS(0))
			ceiling, staged := cores/(1/base+1/sha+2/crc), cores/(1/base+1/sha+2/crc+1/stage)
			fmt.Printf("ceiling of the protocol on this machine, all %d cores busy and nothing else costing anything: baseline work + 1 more SHA-256 pass + 2 CRC32C passes %.0f MB/s (%.0f%% of the mTLS copy); with the staging write too %.0f MB/s (%.0f%%); the upload reaches %.0f%% of the second\n",
				runtime.GOMAXPROCS(0), ceiling, 100*ceiling/rates["mtls-copy-sha256"], staged, 100*staged/rates["mtls-copy-sha256"], 100*up/staged)
		}
		if r := rates["upload-tmpfs"]; r > 0 {
			fmt.Printf("with the controller's data on tmpfs: upload %.0f MB/s wall (%.0f%% of in-memory SHA-256, %.0f%% of mTLS copy), %.0f MB per CPU-second (%.0f%%, %.0f%%)\n",
				r, 100*r/rates["sha256-memory"], 100*r/rates["mtls-copy-sha256"], perCPU["upload-tmpfs"],
				100*perCPU["upload-tmpfs"]/perCPU["sha256-memory"], 100*perCPU["upload-tmpfs"]/perCPU["mtls-copy-sha256"])
		}
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
