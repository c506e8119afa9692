package hostcollect_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// collected is one run of the action through the real plugin transport.
type collected struct {
	result   hostcollect.Result
	manifest *bundle.Manifest
	report   *bundle.Report
	archive  []byte
	members  map[string][]byte
	outcome  *sdktest.Outcome
}

// collect runs host-collect with params, verifies the streamed bundle and
// reads its members back.
func collect(t *testing.T, req *pluginv1.ExecuteRequest, params map[string]any) *collected {
	t.Helper()
	c := sdktest.Start(t, hostcollect.New())
	o := sdktest.Execute(context.Background(), t, c, req, params)
	if o.Err != nil {
		t.Fatalf("Execute: %v", o.Err)
	}
	out := &collected{outcome: o}
	o.Output(t, &out.result)
	out.archive = o.Artifacts[out.result.Archive.Name]
	if len(out.archive) == 0 || !slices.Contains(o.Closed, out.result.Archive.Name) {
		t.Fatalf("no closed archive %q among %v", out.result.Archive.Name, o.Closed)
	}
	var err error
	out.manifest, out.report, err = bundle.Verify(bytes.NewReader(out.archive))
	if err != nil {
		t.Fatalf("the streamed bundle does not verify: %v", err)
	}
	if out.report.CompressedSHA256 != out.result.Archive.SHA256 || out.report.CompressedBytes != out.result.Archive.Bytes {
		t.Errorf("result archive %+v does not describe the stream (%+v)", out.result.Archive, out.report)
	}
	out.members = readMembers(t, out.archive)
	return out
}

func readMembers(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	var r io.Reader
	if bytes.HasPrefix(archive, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(archive))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	} else {
		zr, err := zstd.NewReader(bytes.NewReader(archive))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	out := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

// records decodes an artifact's JSON Lines (all parts).
func (c *collected) records(t *testing.T, artifact string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for part := 1; ; part++ {
		b, ok := c.members[bundle.RecordsPath(artifact, part)]
		if !ok {
			return out
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: bad JSON line %q: %v", artifact, sc.Text(), err)
			}
			out = append(out, m)
		}
	}
}

func (c *collected) status(name string) *bundle.ArtifactStatus {
	for i := range c.manifest.Artifacts {
		if c.manifest.Artifacts[i].Name == name {
			return &c.manifest.Artifacts[i]
		}
	}
	return nil
}

func TestDescribeAndCatalogue(t *testing.T) {
	d, err := hostcollect.New().Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := sdk.CheckDescription(d); err != nil {
		t.Fatal(err)
	}
	if d.GetDestructive() || !slices.Equal(d.GetRoles(), []string{"host"}) || d.GetDomain() != pluginv1.Domain_DOMAIN_INFRASTRUCTURE {
		t.Errorf("description %+v", d)
	}
	// The controller's defaults must pass the action's own checks.
	params, err := sdk.ResolveParams(d, map[string]string{"artifacts": "users,logins"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(params)
	var p hostcollect.Params
	if err := (&sdk.Request{Params: b}).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	cat := hostcollect.Catalogue()
	names := map[string]bool{}
	for _, a := range cat {
		if names[a.Name] || !bundle.ArtifactName(a.Name) || a.Description == "" || len(a.Profiles) == 0 {
			t.Errorf("catalogue entry %+v", a)
		}
		names[a.Name] = true
	}
	for _, want := range []string{"processes", "process_environ", "process_fds", "network_sockets", "listening_services", "users",
		"logins", "lastlog", "persistence", "shell_history", "logs", "system", "suid_sgid", "tmp_executables", "recently_modified",
		"bodyfile", "hashes", "process_memory"} {
		if !names[want] {
			t.Errorf("catalogue lacks %s", want)
		}
	}
}

func TestParamsCheckAndSetDefaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       hostcollect.Params
		wantErr string
		check   func(*hostcollect.Params) bool
	}{
		{"triage defaults", hostcollect.Params{}, "", func(p *hostcollect.Params) bool {
			return p.Profile == "triage" && p.MaxBytes == 2<<30 && p.MaxFileBytes == 64<<20 && p.MaxLogBytes == 16<<20 &&
				p.TimeBudget == "5m0s" && p.RecentDays == 7 && p.Compression == "gzip" && p.IMDSEndpoint == hostcollect.DefaultIMDSEndpoint
		}},
		{"full defaults", hostcollect.Params{Profile: "full", Compression: "zstd"}, "", func(p *hostcollect.Params) bool {
			return p.MaxBytes == 16<<30 && p.MaxFileBytes == 512<<20 && p.TimeBudget == "1h0m0s" && p.Compression == "zstd"
		}},
		{"caps nest", hostcollect.Params{MaxBytes: 1000}, "", func(p *hostcollect.Params) bool {
			return p.MaxFileBytes == 1000 && p.MaxLogBytes == 1000
		}},
		{"unknown profile", hostcollect.Params{Profile: "quick"}, "profile", nil},
		{"unknown artifact", hostcollect.Params{Artifacts: []string{"registry"}}, "registry", nil},
		{"relative path", hostcollect.Params{Paths: []string{"etc"}}, "absolute", nil},
		{"negative cap", hostcollect.Params{MaxFileBytes: -1}, "max_file_bytes", nil},
		{"bad budget", hostcollect.Params{TimeBudget: "soon"}, "time_budget", nil},
		{"bad compression", hostcollect.Params{Compression: "lz4"}, "compression", nil},
		{"bad endpoint", hostcollect.Params{IMDSEndpoint: "169.254.169.254"}, "imds_endpoint", nil},
		{"negative pid", hostcollect.Params{PID: -3}, "pid", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			err := p.CheckAndSetDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(&p) {
				t.Fatalf("err = %v, params %+v", err, p)
			}
		})
	}
	c := sdktest.Start(t, hostcollect.New())
	o := sdktest.Execute(context.Background(), t, c, nil, map[string]any{"profil": "triage"})
	if o.Err == nil || !strings.Contains(o.Err.Error(), "profil") {
		t.Errorf("a misspelt parameter gave %v", o.Err)
	}
}

var bodyfileLine = regexp.MustCompile(`^(0|[0-9a-f]{32})\|[^\n]+\|[0-9]+\|[-rdlcbps]/[-rdlcbps][-r][-w][-xsS][-r][-w][-xsS][-r][-w][-xtT]\|[0-9]+\|[0-9]+\|[0-9]+\|[0-9]+\|[0-9]+\|[0-9]+\|[0-9]+$`)

func TestBodyfileRoundTrip(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "payload.bin")
	if err := os.WriteFile(file, []byte("hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	weird := filepath.Join(root, "dir", "pipe|and\nnewline")
	if err := os.WriteFile(weird, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(root, "etc-link")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, nil, map[string]any{"artifacts": []string{"bodyfile"}, "paths": []string{root}, "bodyfile_md5": true})
	body, ok := got.members["artifacts/bodyfile.body"]
	if !ok {
		t.Fatalf("no bodyfile rendering among %d members", len(got.members))
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	byName := map[string]hostcollect.BodyfileLine{}
	for _, line := range lines {
		if !bodyfileLine.MatchString(line) {
			t.Errorf("line %q is not TSK 3.x bodyfile format", line)
		}
		l, err := hostcollect.ParseBodyfileLine(line)
		if err != nil {
			t.Fatalf("parsing %q back: %v", line, err)
		}
		if l.String() != line {
			t.Errorf("round trip %q → %q", line, l.String())
		}
		byName[l.Name] = l
	}
	if len(lines) != 4 {
		t.Errorf("%d lines for 4 entries:\n%s", len(lines), body)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(file, &st); err != nil {
		t.Fatal(err)
	}
	f := byName[file]
	if f.MD5 != "5d41402abc4b2a76b9719d911017c592" || f.Mode != "r/rrwsr-xr-x" || f.Inode != st.Ino || f.Size != 5 ||
		f.UID != st.Uid || f.GID != st.Gid || f.Mtime != st.Mtim.Sec || f.Atime != st.Atim.Sec || f.Ctime != st.Ctim.Sec {
		t.Errorf("file line %+v does not match lstat %+v", f, st)
	}
	if d := byName[filepath.Join(root, "dir")]; d.Mode != "d/drwxr-x---" || d.MD5 != "0" {
		t.Errorf("directory line %+v", d)
	}
	link := filepath.Join(root, "etc-link") + " -> /etc"
	if l, ok := byName[link]; !ok || l.Mode != "l/lrwxrwxrwx" {
		t.Errorf("symlink line missing or wrong: %+v in %v", l, byName)
	}
	if _, ok := byName[filepath.Join(root, "dir", "pipe|and^newline")]; !ok {
		t.Errorf("a name with '|' and a control character did not round-trip: %v", byName)
	}
	for name := range byName {
		if strings.HasPrefix(name, "/etc/") || strings.Contains(name, "etc-link/") {
			t.Errorf("the walk followed the symlink out of the tree: %s", name)
		}
	}
	if recs := got.records(t, "bodyfile"); len(recs) != 4 {
		t.Errorf("%d bodyfile records", len(recs))
	}
}

func TestCapsAndTimeBudgetCloseTheBundleCleanly(t *testing.T) {
	t.Run("time budget", func(t *testing.T) {
		got := collect(t, nil, map[string]any{"time_budget": "1ns", "artifacts": []string{"users", "system"}})
		if !got.result.Truncated || !got.manifest.Truncated || len(got.result.Errors) != 2 {
			t.Errorf("result %+v", got.result)
		}
		for _, a := range got.manifest.Artifacts {
			if a.Status != bundle.StatusError || !strings.Contains(a.Reason, "time budget") {
				t.Errorf("artifact %+v", a)
			}
		}
	})
	t.Run("byte cap", func(t *testing.T) {
		got := collect(t, nil, map[string]any{"max_bytes": 4096, "artifacts": []string{"users", "system", "persistence"}, "compression": "zstd"})
		if !got.result.Truncated || got.report.PayloadBytes > 4096 || got.result.Archive.Compression != "zstd" {
			t.Errorf("result %+v, payload %d", got.result, got.report.PayloadBytes)
		}
	})
}

func TestIMDSv2(t *testing.T) {
	var tokenSeen bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "ttl", http.StatusBadRequest)
				return
			}
			io.WriteString(w, "tok-123")
		case r.Header.Get("X-aws-ec2-metadata-token") != "tok-123":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/instance-id":
			tokenSeen = true
			io.WriteString(w, "i-0abc123")
		case r.URL.Path == "/latest/dynamic/instance-identity/document":
			io.WriteString(w, `{"instanceId":"i-0abc123","region":"eu-west-1"}`)
		case strings.Contains(r.URL.Path, "security-credentials") || strings.Contains(r.URL.Path, "user-data"):
			t.Errorf("the collector asked for a secret: %s", r.URL.Path)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	got := collect(t, nil, map[string]any{"artifacts": []string{"system"}, "imds_endpoint": srv.URL})
	var imds map[string]any
	for _, r := range got.records(t, "system") {
		if r["kind"] == "imds" {
			imds = r["imds"].(map[string]any)
		}
	}
	if imds == nil || imds["available"] != true || !tokenSeen {
		t.Fatalf("imds record %v", imds)
	}
	if imds["values"].(map[string]any)["instance-id"] != "i-0abc123" || imds["identity_document"].(map[string]any)["region"] != "eu-west-1" {
		t.Errorf("imds %v", imds)
	}
	// Off EC2 with no endpoint given, the service is not contacted at all.
	got = collect(t, &pluginv1.ExecuteRequest{Host: &pluginv1.HostContext{OnEc2: false}}, map[string]any{"artifacts": []string{"system"}})
	for _, r := range got.records(t, "system") {
		if r["kind"] == "imds" {
			t.Errorf("IMDS queried off EC2: %v", r)
		}
	}
	// An endpoint that does not answer is recorded as unavailable, not an error.
	snap := hostcollect.QueryIMDS(context.Background(), "http://127.0.0.1:1")
	if snap.Available || snap.Reason == "" {
		t.Errorf("unreachable endpoint: %+v", snap)
	}
}

func TestProcessMemoryDumpsReadableRegions(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(l, "sleep") {
			break
		}
	}
	got := collect(t, nil, map[string]any{"artifacts": []string{"process_memory"}, "pid": pid, "max_bytes": 64 << 20, "max_file_bytes": 8 << 20})
	st := got.status("process_memory")
	if st == nil || st.Status == bundle.StatusError || st.Files == 0 {
		t.Fatalf("status %+v", st)
	}
	if _, ok := got.members[fmt.Sprintf("files/proc/%d/maps", pid)]; !ok {
		t.Error("the maps file was not kept")
	}
	var sawELF, sawStack bool
	for _, m := range got.manifest.Members {
		if m.Kind != bundle.KindMemory {
			continue
		}
		r := m.Region
		if r == nil || r.PID != pid || r.Perms[0] != 'r' || m.Path != bundle.MemoryPath(pid, r.Start, r.End) {
			t.Errorf("region member %+v", m)
			continue
		}
		if r.Pathname == "[vvar]" || r.Pathname == "[vsyscall]" {
			t.Errorf("dumped %s", r.Pathname)
		}
		if int64(r.End-r.Start) != m.Size && !m.Truncated {
			t.Errorf("region %x-%x stored as %d bytes", r.Start, r.End, m.Size)
		}
		b := got.members[m.Path]
		if strings.HasSuffix(r.Pathname, "/sleep") && r.Offset == 0 && bytes.HasPrefix(b, []byte("\x7fELF")) {
			sawELF = true
		}
		if r.Pathname == "[stack]" {
			sawStack = true
		}
	}
	if !sawELF || !sawStack {
		t.Errorf("missing the executable's first mapping (%v) or the stack (%v)", sawELF, sawStack)
	}
}
