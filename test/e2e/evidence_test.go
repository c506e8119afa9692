package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/test/e2e"
	"github.com/firebreak-ir/firebreak/test/planted"
)

// collectResult is the part of host-collect's output the tests read.
type collectResult struct {
	Archive struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
		Bytes  int64  `json:"bytes"`
	} `json:"archive"`
	ElapsedSeconds   float64  `json:"elapsed_seconds"`
	Truncated        bool     `json:"truncated"`
	TruncatedReasons []string `json:"truncated_reasons"`
}

// evidenceJSON is the part of `evidence list --json` the tests read.
type evidenceJSON struct {
	ID                   string `json:"id"`
	TaskID               string `json:"task_id"`
	RunID                string `json:"run_id"`
	Operator             string `json:"operator"`
	AgentID              string `json:"agent_id"`
	AgentCertFingerprint string `json:"agent_cert_fingerprint"`
	Hostname             string `json:"hostname"`
	Size                 int64  `json:"size"`
	SHA256               string `json:"sha256"`
	Backend              string `json:"backend"`
	Location             string `json:"location"`
	Resumes              int    `json:"upload_resumes"`
	Bundle               *struct {
		Valid   bool   `json:"valid"`
		Profile string `json:"profile"`
		Members int    `json:"members"`
		Host    struct {
			BootID string `json:"boot_id"`
		} `json:"host"`
	} `json:"bundle"`
}

// custodyJSON is `evidence custody --json`.
type custodyJSON struct {
	ChainOK bool `json:"chain_ok"`
	Records []struct {
		Seq    int             `json:"seq"`
		Actor  string          `json:"actor"`
		Action string          `json:"action"`
		Detail json.RawMessage `json:"detail"`
	} `json:"records"`
}

func (c custodyJSON) actions() string {
	var a []string
	for _, r := range c.Records {
		a = append(a, r.Action)
	}
	return strings.Join(a, " ")
}

// requireWhole fails the test when a cap or the time budget cut the whole
// collection short (a copy of one large log kept to its tail is by design
// and does not count): a cut collection hides what the tests look for. The
// suite's own binaries live outside /tmp for this; a checkout that is itself
// under a directory triage sweeps puts them back, and then the check says
// so instead of failing.
func requireWhole(t *testing.T, out collectResult) {
	t.Helper()
	if len(out.TruncatedReasons) == 0 {
		return
	}
	root := e2e.Build(t).Root
	for _, swept := range []string{"/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/"} {
		if strings.HasPrefix(root+"/", swept) {
			t.Logf("the collection was cut short (%v), as expected: this checkout (%s) is under %s, which triage sweeps", out.TruncatedReasons, root, swept)
			return
		}
	}
	t.Fatalf("the collection was cut short: %v", out.TruncatedReasons)
}

// onlyResult returns the single target's result of a run and its
// host-collect output.
func onlyResult(t *testing.T, run e2e.RunJSON) (evidenceID string, out collectResult) {
	t.Helper()
	if run.Targets != 1 || run.Succeeded != 1 || len(run.Results) != 1 {
		t.Fatalf("run %+v", run)
	}
	r := run.Results[0]
	if len(r.Evidence) != 1 {
		t.Fatalf("result carries evidence %v", r.Evidence)
	}
	if err := json.Unmarshal(r.Output, &out); err != nil {
		t.Fatal(err)
	}
	return r.Evidence[0], out
}

func evidenceItem(t *testing.T, c *e2e.Controller, id string) evidenceJSON {
	t.Helper()
	var list []evidenceJSON
	c.MustJSON(t, &list, 0, "evidence", "list")
	for _, it := range list {
		if it.ID == id {
			return it
		}
	}
	t.Fatalf("evidence %s not listed in %+v", id, list)
	return evidenceJSON{}
}

// archive is a downloaded bundle: its verified manifest and the members
// the tests look into.
type archive struct {
	manifest *bundle.Manifest
	members  map[string][]byte
}

// readArchive verifies a bundle file against its manifest, then reads it
// again keeping the record members and small files.
func readArchive(t *testing.T, path string) *archive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	man, rep, err := bundle.Verify(f)
	if err != nil {
		t.Fatalf("the downloaded bundle does not verify: %v", err)
	}
	if rep.Verified != len(man.Members) {
		t.Fatalf("%d of %d members verified", rep.Verified, len(man.Members))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	a := &archive{manifest: man, members: map[string][]byte{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(hdr.Name, "artifacts/") || hdr.Size <= 4<<20 {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			a.members[hdr.Name] = b
		}
	}
	return a
}

// records returns an artifact's records, across its parts.
func (a *archive) records(t *testing.T, artifact string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range a.manifest.Members {
		if m.Artifact != artifact || m.Kind != bundle.KindRecords {
			continue
		}
		for _, line := range bytes.Split(a.members[m.Path], []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var r map[string]any
			if err := json.Unmarshal(line, &r); err != nil {
				t.Fatalf("%s: %v", m.Path, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

// TestCollectTriageFindsPlantedArtifacts plants what an intruder leaves
// behind on this machine, collects the triage profile through the real
// controller, agent and plugin, downloads the evidence, and checks each
// planted item and the manifest; then it tampers with the stored copy and
// checks that verification and custody show it.
func TestCollectTriageFindsPlantedArtifacts(t *testing.T) {
	p := planted.Plant(t, "firebreak-e2e-planted-")
	marker, exe, cronFile, cronLine, history, stamp, port := p.Marker, p.ExePath, p.CronFile, p.CronLine, p.HistoryFile, p.HistoryStamp, p.Port
	var exeSum [32]byte
	if _, err := hex.Decode(exeSum[:], []byte(p.ExeSHA256)); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid

	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	// The agent's /tmp is a private, empty one, so what the triage copies
	// from /tmp cannot fill its byte cap first, whatever this machine's /tmp
	// holds. (The planted process's deleted executable is read through
	// /proc, which the private mount does not hide.)
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "triage", Token: c.Token(t, "host", 1), Prefix: privateTmp(t, 0)})
	agentID := agent.AgentID(t)
	c.WaitConnected(t, agentID)

	start := time.Now()
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--profile", "triage", "--wait", "--reason", "e2e planted artifacts")
	wall := time.Since(start)
	evID, out := onlyResult(t, run)
	requireWhole(t, out)
	t.Logf("MEASURED triage: wall %s (collection %.1fs), archive %d bytes (%.1f MiB), agent peak RSS (VmHWM) %d KiB",
		wall.Round(time.Millisecond), out.ElapsedSeconds, out.Archive.Bytes, float64(out.Archive.Bytes)/(1<<20), vmHWM(agent.Pid()))

	it := evidenceItem(t, c, evID)
	if it.SHA256 != out.Archive.SHA256 || it.Size != out.Archive.Bytes || it.AgentID != agentID || it.Operator != "admin" ||
		it.RunID != run.RunID || it.Backend != "local" || it.AgentCertFingerprint == "" || it.Bundle == nil || !it.Bundle.Valid ||
		it.Bundle.Profile != "triage" || it.Bundle.Host.BootID == "" {
		t.Fatalf("evidence record %+v\ncollector said sha256 %s, %d bytes", it, out.Archive.SHA256, out.Archive.Bytes)
	}

	file := filepath.Join(t.TempDir(), "triage.tar.gz")
	var got struct {
		SHA256     string `json:"sha256"`
		Verified   bool   `json:"verified"`
		CustodySeq int    `json:"custody_seq"`
	}
	c.MustJSON(t, &got, 0, "evidence", "get", evID, "-o", file, "--reason", "e2e check")
	if got.SHA256 != out.Archive.SHA256 || !got.Verified || got.CustodySeq != 2 {
		t.Fatalf("evidence get: %+v", got)
	}
	a := readArchive(t, file)

	t.Run("deleted executable", func(t *testing.T) {
		var rec map[string]any
		for _, r := range a.records(t, "processes") {
			if int(r["pid"].(float64)) == pid {
				rec = r
			}
		}
		if rec == nil {
			t.Fatalf("process %d not collected", pid)
		}
		if rec["exe"] != exe || rec["exe_deleted"] != true || rec["suspicious_location"] != true || rec["exe_sha256"] != hex.EncodeToString(exeSum[:]) {
			t.Errorf("record %v: want exe %s deleted, suspicious, sha256 %x", rec, exe, exeSum)
		}
		copyPath, _ := rec["exe_copy"].(string)
		if b := a.members[copyPath]; sha256.Sum256(b) != exeSum {
			t.Errorf("the copied executable %q (%d bytes) does not hash to the binary's SHA-256", copyPath, len(b))
		}
	})
	t.Run("cron entry", func(t *testing.T) {
		found := false
		for _, r := range a.records(t, "persistence") {
			c, _ := r["cron"].(map[string]any)
			if r["mechanism"] == "cron" && r["path"] == cronFile && c != nil && c["command"] == "/usr/bin/true "+marker {
				found = c["schedule"] == "*/7 * * * *" && c["user"] == "root"
			}
		}
		if !found {
			t.Errorf("no cron record for %s", cronFile)
		}
		if raw := a.members[bundle.FilePath(cronFile)]; !strings.Contains(string(raw), cronLine) {
			t.Errorf("the raw copy of %s is %q", cronFile, raw)
		}
	})
	t.Run("authorized key", func(t *testing.T) {
		found := false
		for _, r := range a.records(t, "persistence") {
			k, _ := r["key"].(map[string]any)
			if r["mechanism"] == "authorized_keys" && k != nil && k["comment"] == marker {
				found = r["user"] == "root" && k["type"] == "ssh-ed25519" && k["fingerprint"] == "SHA256:ZkAslGjFiUHdGf/WUL8rQvkib4PTvQatUV0OUQSncCA"
			}
		}
		if !found {
			t.Errorf("no authorized_keys record with comment %s", marker)
		}
	})
	t.Run("listener", func(t *testing.T) {
		found := false
		for _, r := range a.records(t, "listening_services") {
			if r["port"] == float64(port) && r["address"] == "127.0.0.1" && r["protocol"] == "tcp" {
				for _, o := range r["owners"].([]any) {
					if int(o.(map[string]any)["pid"].(float64)) == os.Getpid() {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("no listening service on 127.0.0.1:%d owned by pid %d", port, os.Getpid())
		}
	})
	t.Run("history line", func(t *testing.T) {
		found := false
		for _, r := range a.records(t, "shell_history") {
			if strings.Contains(fmt.Sprint(r["command"]), marker) {
				ts, _ := time.Parse(time.RFC3339, fmt.Sprint(r["time"]))
				found = r["path"] == history && ts.Unix() == stamp
			}
		}
		if !found {
			t.Errorf("no history record for %s", marker)
		}
	})
	t.Run("manifest", func(t *testing.T) {
		m := a.manifest
		if m.Task.TaskID != it.TaskID || m.Task.RunID != run.RunID || m.Host.AgentID != agentID || m.Collector.Name != "host-collect" {
			t.Errorf("manifest ties the bundle to task %q run %q agent %q", m.Task.TaskID, m.Task.RunID, m.Host.AgentID)
		}
		for _, mem := range m.Members {
			if b, ok := a.members[mem.Path]; ok {
				sum := sha256.Sum256(b)
				if hex.EncodeToString(sum[:]) != mem.SHA256 || int64(len(b)) != mem.Size {
					t.Errorf("member %s does not match its manifest entry", mem.Path)
				}
			}
		}
	})

	t.Run("tampering and custody", func(t *testing.T) {
		var v struct {
			OK      bool `json:"ok"`
			Results []struct {
				Verdict         string `json:"verdict"`
				MembersVerified int    `json:"members_verified"`
			} `json:"results"`
		}
		c.MustJSON(t, &v, 0, "evidence", "verify", evID)
		if !v.OK || v.Results[0].Verdict != "ok" || v.Results[0].MembersVerified != len(a.manifest.Members) {
			t.Fatalf("verify %+v", v)
		}
		stored := it.Location
		flip := func() {
			f, err := os.OpenFile(stored, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			one := make([]byte, 1)
			off := it.Size / 2
			f.ReadAt(one, off)
			one[0] ^= 0x10
			f.WriteAt(one, off)
		}
		flip()
		r := c.CLI(t, "evidence", "verify", "--all", "--json")
		if r.Exit != 6 || !strings.Contains(r.Stdout, `"verdict": "mismatch"`) {
			t.Fatalf("verify after a flipped byte: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		bad := filepath.Join(t.TempDir(), "bad.tar.gz")
		if r := c.CLI(t, "evidence", "get", evID, "-o", bad); r.Exit != 6 {
			t.Fatalf("get of the altered copy: exit %d %s", r.Exit, r.Stderr)
		}
		if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("a download that did not verify left a file behind")
		}
		flip()
		c.MustJSON(t, nil, 0, "evidence", "verify", evID)

		var cu custodyJSON
		c.MustJSON(t, &cu, 0, "evidence", "custody", evID)
		if !cu.ChainOK || cu.actions() != "collected download verify verify download verify" {
			t.Fatalf("custody %s (chain ok %v)", cu.actions(), cu.ChainOK)
		}
		if cu.Records[0].Actor != "agent:"+agentID || cu.Records[1].Actor != "operator:admin" || !bytes.Contains(cu.Records[1].Detail, []byte("e2e check")) {
			t.Errorf("custody entries %+v", cu.Records[:2])
		}
		var audit []struct {
			Action  string `json:"action"`
			Subject string `json:"subject"`
		}
		c.MustJSON(t, &audit, 0, "audit", "list", "--limit", "1000")
		mirrored := 0
		for _, rec := range audit {
			switch rec.Action {
			case "evidence.collected", "evidence.download", "evidence.export", "evidence.verify":
				if rec.Subject == evID {
					mirrored++
				}
			case "evidence.mismatch":
				if rec.Subject != evID {
					t.Errorf("mismatch audited for %s", rec.Subject)
				}
			}
		}
		if mirrored != len(cu.Records) {
			t.Errorf("%d custody entries mirrored to the audit log, want %d", mirrored, len(cu.Records))
		}
		c.MustJSON(t, nil, 0, "audit", "verify")
	})
}

// cutProxy forwards TCP to a target and, once the client has sent more
// than threshold bytes in all, reports it and (when cut is set) closes
// every connection, as a network failure would.
type cutProxy struct {
	lis       net.Listener
	target    string
	threshold int64
	cut       bool

	up      atomic.Int64
	crossed chan struct{}
	once    sync.Once
	mu      sync.Mutex
	conns   []net.Conn
}

func startCutProxy(t *testing.T, target string, threshold int64, cut bool) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{lis: lis, target: target, threshold: threshold, cut: cut, crossed: make(chan struct{})}
	t.Cleanup(func() {
		lis.Close()
		p.closeAll()
	})
	go func() {
		for {
			cl, err := lis.Accept()
			if err != nil {
				return
			}
			go p.serve(cl)
		}
	}()
	return p
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutProxy) serve(cl net.Conn) {
	srv, err := net.Dial("tcp", p.target)
	if err != nil {
		cl.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, cl, srv)
	p.mu.Unlock()
	go func() {
		io.Copy(cl, srv)
		cl.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := cl.Read(buf)
		if n > 0 {
			if _, werr := srv.Write(buf[:n]); werr != nil {
				break
			}
			if p.up.Add(int64(n)) > p.threshold {
				p.once.Do(func() {
					close(p.crossed)
					if p.cut {
						go p.closeAll()
					}
				})
			}
		}
		if err != nil {
			break
		}
	}
	srv.Close()
}

// privateTmp returns a prefix that runs an agent in a mount namespace of
// its own, whose /tmp, /var/tmp and /dev/shm are fresh directories, with
// an incompressible executable of size bytes (none for 0) planted in its
// /tmp. The
// tmp_executables artifact then copies that payload and nothing else,
// whatever this machine's /tmp holds (a clone's bin/ when CI clones under
// /tmp, other suites' binaries), so an upload lasts long enough to be
// interrupted. The namespace needs root; without it the test skips.
func privateTmp(t *testing.T, size int) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the agent runs in a mount namespace with a private /tmp holding the planted executable")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare (util-linux) for the agent's private /tmp")
	}
	root := t.TempDir()
	for _, shadowed := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		if strings.HasPrefix(root, shadowed+"/") {
			t.Skipf("the test's temporary directory %s lies under %s, which the agent's private mounts hide: run through make test, or see e2e.TempOutsideTmp", root, shadowed)
		}
	}
	for _, d := range []string{"tmp", "var-tmp", "shm"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	if size > 0 {
		b := make([]byte, size)
		rand.Read(b)
		copy(b, "\x7fELF")
		if err := os.WriteFile(filepath.Join(root, "tmp", "payload"), b, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`set -e; mount --bind "$0/tmp" /tmp; mount --bind "$0/var-tmp" /var/tmp; mount --bind "$0/shm" /dev/shm; exec "$@"`, root}
}

// TestEvidenceUploadResumes interrupts an upload half-way, by cutting the
// agent's connections and by restarting the controller, and checks that
// the upload resumes and the stored evidence has the hash the collector
// computed.
func TestEvidenceUploadResumes(t *testing.T) {
	tests := []struct {
		name    string
		cut     bool
		restart bool
	}{
		{"connections cut", true, false},
		{"controller restarted", false, true},
	}
	b := e2e.Build(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := privateTmp(t, 24<<20)
			c := e2e.StartController(t, b, e2e.ControllerOptions{})
			proxy := startCutProxy(t, c.Addr, 3<<20, tt.cut)
			agent := c.StartAgent(t, e2e.AgentOptions{Name: "resume", Token: c.Token(t, "host", 1), Controller: proxy.lis.Addr().String(),
				Prefix: prefix, Args: []string{"--bandwidth", "4MiB/s"}})
			id := agent.AgentID(t)
			c.WaitConnected(t, id)
			var started struct {
				RunID string `json:"run_id"`
			}
			c.MustJSON(t, &started, 0, "collect", "--select", "all", "--artifact", "tmp_executables", "--param", "max_bytes=67108864")
			select {
			case <-proxy.crossed:
			case <-time.After(2 * time.Minute):
				t.Fatal("the upload never passed 3 MiB")
			}
			if tt.restart {
				c.Restart(t)
			}
			var run e2e.RunJSON
			c.MustJSON(t, &run, 0, "runs", "show", started.RunID, "--wait")
			evID, out := onlyResult(t, run)
			it := evidenceItem(t, c, evID)
			if it.Resumes < 1 {
				t.Errorf("the upload was not resumed (resumes %d)", it.Resumes)
			}
			if it.SHA256 != out.Archive.SHA256 || it.Size != out.Archive.Bytes || it.Bundle == nil || !it.Bundle.Valid {
				t.Fatalf("stored %s (%d bytes, bundle %+v); the collector streamed %s (%d bytes)", it.SHA256, it.Size, it.Bundle, out.Archive.SHA256, out.Archive.Bytes)
			}
			if it.Size < 3<<20 {
				t.Fatalf("the archive is only %d bytes; the interruption was not mid-upload", it.Size)
			}
			c.MustJSON(t, nil, 0, "evidence", "verify", evID)
			t.Logf("stored %d bytes after %d resume(s), SHA-256 %s", it.Size, it.Resumes, it.SHA256)
		})
	}
}

// TestEvidenceInS3 runs the controller with an S3 evidence store, served
// by an S3-protocol server in this process and reached through the AWS
// SDK's standard environment, and checks storing, fetching and tampering.
func TestEvidenceInS3(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	env := map[string]string{"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY": "secret", "AWS_EC2_METADATA_DISABLED": "true"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	client := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("ir-evidence")}); err != nil {
		t.Fatal(err)
	}

	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--evidence", "s3://ir-evidence/org-1/"}})
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "s3", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, agent.AgentID(t))

	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--artifact", "system", "--artifact", "users", "--wait")
	evID, out := onlyResult(t, run)
	requireWhole(t, out)
	it := evidenceItem(t, c, evID)
	key := "org-1/sha256/" + it.SHA256[:2] + "/" + it.SHA256
	if it.Backend != "s3" || it.Location != "s3://ir-evidence/"+key || it.SHA256 != out.Archive.SHA256 {
		t.Fatalf("evidence %+v", it)
	}
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("ir-evidence"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != it.SHA256 {
		t.Fatal("the object in the bucket does not hash to the evidence's SHA-256")
	}
	file := filepath.Join(t.TempDir(), "s3.tar.gz")
	c.MustJSON(t, nil, 0, "evidence", "get", evID, "-o", file)
	readArchive(t, file)

	body[len(body)/3] ^= 1
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("ir-evidence"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	if r := c.CLI(t, "evidence", "verify", "--all"); r.Exit != 6 || !strings.Contains(r.Stdout, "MISMATCH") {
		t.Fatalf("verify after replacing the object: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	var cu custodyJSON
	c.MustJSON(t, &cu, 0, "evidence", "custody", evID)
	if cu.actions() != "collected download verify" || !cu.ChainOK {
		t.Fatalf("custody %s", cu.actions())
	}
}

// TestEvidenceInS3ResumesAfterControllerKilled kills the controller with
// SIGKILL while an upload is staged in S3, removes its staging directory
// (the next controller has a disk of its own), starts a controller on the
// same data directory and bucket, and checks that the upload resumes from
// its committed S3 parts, verifies, and leaves no staging in the bucket.
func TestEvidenceInS3ResumesAfterControllerKilled(t *testing.T) {
	prefix := privateTmp(t, 40<<20)
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY": "secret", "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	client := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("ir-evidence")}); err != nil {
		t.Fatal(err)
	}

	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--evidence", "s3://ir-evidence/org-1/"}})
	// Past 20 MiB the controller holds two 8 MiB parts in S3.
	proxy := startCutProxy(t, c.Addr, 20<<20, false)
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "s3-resume", Token: c.Token(t, "host", 1), Controller: proxy.lis.Addr().String(),
		Prefix: prefix, Args: []string{"--bandwidth", "4MiB/s"}})
	c.WaitConnected(t, agent.AgentID(t))
	var started struct {
		RunID string `json:"run_id"`
	}
	c.MustJSON(t, &started, 0, "collect", "--select", "all", "--artifact", "tmp_executables", "--param", "max_bytes=67108864")
	select {
	case <-proxy.crossed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the upload never passed 20 MiB")
	}
	c.Kill()
	if err := os.RemoveAll(filepath.Join(c.DataDir, "evidence", "uploads")); err != nil {
		t.Fatal(err)
	}
	c.Restart(t)

	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "runs", "show", started.RunID, "--wait")
	evID, out := onlyResult(t, run)
	it := evidenceItem(t, c, evID)
	if it.Resumes < 1 || it.Backend != "s3" || it.SHA256 != out.Archive.SHA256 || it.Size != out.Archive.Bytes || it.Bundle == nil || !it.Bundle.Valid {
		t.Fatalf("stored %s (%d bytes, %d resumes, bundle %+v); the collector streamed %s (%d bytes)", it.SHA256, it.Size, it.Resumes, it.Bundle,
			out.Archive.SHA256, out.Archive.Bytes)
	}
	// The second controller resumed from the S3 parts the first committed.
	var resumedAt int64
	for _, line := range strings.Split(c.Log(), "\n") {
		var rec struct {
			Msg       string `json:"msg"`
			Committed int64  `json:"committed"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "evidence upload resumed" && rec.Committed > resumedAt {
			resumedAt = rec.Committed
		}
	}
	if resumedAt < 8<<20 {
		t.Errorf("the upload resumed at offset %d; want at least one 8 MiB part committed before the kill", resumedAt)
	}
	c.MustJSON(t, nil, 0, "evidence", "verify", evID)
	objs, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("ir-evidence"), Prefix: aws.String("org-1/uploads/")})
	if err != nil {
		t.Fatal(err)
	}
	mps, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("ir-evidence")})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Contents) != 0 || len(mps.Uploads) != 0 {
		t.Errorf("staging left in the bucket: %d objects, %d multipart uploads", len(objs.Contents), len(mps.Uploads))
	}
	t.Logf("stored %d bytes after %d resume(s), resumed at %d", it.Size, it.Resumes, resumedAt)
}
