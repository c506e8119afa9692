package bundle_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

var fixedClock = func() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }

func meta(maxBytes int64) bundle.Meta {
	return bundle.Meta{
		Collector: bundle.Collector{Name: "test", Version: "0"},
		Profile:   "triage",
		Host:      bundle.HostIdentity{Hostname: "web-1", BootID: "b"},
		Task:      bundle.TaskIdentity{TaskID: "t-1", CaseID: "case-9"},
		Limits:    bundle.Limits{MaxBytes: maxBytes, MaxFileBytes: 1 << 20},
		Clock:     fixedClock,
	}
}

// failingMemory reads like /proc/PID/mem with one unreadable page.
type failingMemory struct{ bad int64 }

func (f failingMemory) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		if (off+int64(i))/bundle.PageSize == f.bad/bundle.PageSize {
			if i == 0 {
				return 0, errors.New("input/output error")
			}
			return i, nil
		}
		p[i] = byte(off + int64(i))
	}
	return len(p), nil
}

func TestWriterRoundTrip(t *testing.T) {
	for _, comp := range []bundle.Compression{bundle.Gzip, bundle.Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			dir := t.TempDir()
			logPath := filepath.Join(dir, "auth.log")
			if err := os.WriteFile(logPath, []byte(strings.Repeat("old line\n", 100)+"newest\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			weird := filepath.Join(dir, "we\nird|na%me\xff")
			if err := os.WriteFile(weird, []byte("x"), 0o4755); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			w := bundle.NewWriter(&out, comp, meta(0))
			a := w.Artifact("processes")
			for i := range 3 {
				if err := a.Record(map[string]any{"pid": i}); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.RenderLine("body", "0|/x|1|r/rrw-r--r--|0|0|1|1|1|1|0"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Close(); err != nil {
				t.Fatal(err)
			}
			logs := w.Artifact("logs")
			f, err := os.Open(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := logs.AddFile(logPath, f, bundle.FileOptions{MaxBytes: 7, Tail: true})
			if err != nil {
				t.Fatal(err)
			}
			if !m.Truncated || m.Offset != 900 || m.Size != 7 {
				t.Errorf("tail copy: %+v", m)
			}
			if err := os.Chmod(weird, 0o755|os.ModeSetuid); err != nil {
				t.Fatal(err)
			}
			wf, _ := os.Open(weird)
			defer wf.Close()
			if _, err := logs.AddFile(weird, wf, bundle.FileOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := logs.AddBytes("/proc/1/maps", []byte("00400000-00401000 r-xp 0 0:0 0\n"), 0o444, time.Time{}); err != nil {
				t.Fatal(err)
			}
			logs.Skip("/var/log/secure", "permission denied")
			st, err := logs.Close()
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != bundle.StatusPartial || st.SkippedCount != 1 || !st.Truncated {
				t.Errorf("logs status %+v", st)
			}
			mem := w.Artifact("process_memory")
			reg := bundle.MemoryRegion{PID: 42, Start: 0x10000, End: 0x13000, Perms: "rw-p", Pathname: "[heap]"}
			mm, err := mem.AddMemoryRegion(reg, failingMemory{bad: 0x11000}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if mm.ZeroFilled != bundle.PageSize || mm.Region.Pathname != "[heap]" {
				t.Errorf("memory member %+v", mm)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			stats := w.Stats()
			sum := sha256.Sum256(out.Bytes())
			if stats.SHA256 != hex.EncodeToString(sum[:]) || stats.CompressedBytes != int64(out.Len()) {
				t.Errorf("stats %+v do not describe the stream", stats)
			}

			man, rep, err := bundle.Verify(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.Compression != comp || rep.Verified != len(man.Members) || rep.Members != len(man.Members)+1 || rep.CompressedSHA256 != stats.SHA256 {
				t.Errorf("report %+v", rep)
			}
			if man.Task.CaseID != "case-9" || man.Host.Hostname != "web-1" || man.Profile != "triage" || man.Compression != comp {
				t.Errorf("manifest header %+v", man)
			}
			paths := map[string]bundle.Member{}
			for _, m := range man.Members {
				paths[m.Path] = m
			}
			for _, want := range []string{"artifacts/processes.jsonl", "artifacts/processes.body", "artifacts/logs.jsonl",
				bundle.FilePath(logPath), bundle.FilePath(weird), "files/proc/1/maps", "memory/42/0000000000010000-0000000000013000.bin"} {
				if _, ok := paths[want]; !ok {
					t.Errorf("member %q missing from %v", want, paths)
				}
			}
			if got := paths[bundle.FilePath(weird)].Mode; got != "4755" {
				t.Errorf("mode %q, want 4755", got)
			}
			if src, ok := bundle.SourcePath(bundle.FilePath(weird)); !ok || src != weird {
				t.Errorf("SourcePath = %q, %v; want %q", src, ok, weird)
			}
			if man.Artifacts[0].Items != 3 {
				t.Errorf("processes items %d", man.Artifacts[0].Items)
			}
			rm, err := bundle.ReadManifest(bytes.NewReader(out.Bytes()))
			if err != nil || len(rm.Members) != len(man.Members) {
				t.Errorf("ReadManifest: %v", err)
			}
		})
	}
}

func TestWriterSplitsLargeArtifactsAndHonoursTheCap(t *testing.T) {
	var out bytes.Buffer
	const capBytes = bundle.PartBytes + bundle.PartBytes/2
	w := bundle.NewWriter(&out, bundle.Gzip, meta(capBytes))
	a := w.Artifact("bodyfile")
	line := strings.Repeat("x", 1000)
	var err error
	n := 0
	for ; n < 20000 && err == nil; n++ {
		err = a.Record(map[string]string{"line": line})
	}
	if !errors.Is(err, bundle.ErrCapReached) {
		t.Fatalf("writing past the cap: %v after %d records", err, n)
	}
	st, err := a.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Truncated || st.Status != bundle.StatusPartial || len(st.Members) != 2 {
		t.Errorf("status %+v", st)
	}
	if w.Remaining() > 1100 {
		t.Errorf("remaining %d after cutting at a line", w.Remaining())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	man, _, err := bundle.Verify(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !man.Truncated || man.Members[1].Path != "artifacts/bodyfile.2.jsonl" {
		t.Errorf("manifest: truncated=%v members=%v", man.Truncated, man.Members)
	}
	if st.Items != int64(man.Members[0].Size+man.Members[1].Size)/int64(len(line)+12) {
		t.Errorf("items %d do not match the bytes written", st.Items)
	}
}

func TestWriterRefusesUnknownCompressionAndBadArtifactNames(t *testing.T) {
	w := bundle.NewWriter(io.Discard, "lz4", meta(0))
	if err := w.Close(); !errors.Is(err, bundle.ErrUnknownCompression) {
		t.Errorf("Close with lz4: %v", err)
	}
	var out bytes.Buffer
	w = bundle.NewWriter(&out, "", meta(0))
	bad := w.Artifact("../etc")
	if err := bad.Record(1); err == nil {
		t.Error("a record for an invalidly named artifact was accepted")
	}
	w.Artifact("users")
	dup := w.Artifact("users")
	if st, _ := dup.Close(); st.Status != bundle.StatusError {
		t.Errorf("duplicate artifact status %+v", st)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bundle.Verify(&out); err != nil {
		t.Fatal(err)
	}
}

// member is one raw tar member for crafting hostile archives.
type member struct {
	hdr  tar.Header
	body []byte
}

func reg(name string, body string) member {
	return member{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o644}, body: []byte(body)}
}

func manifestFor(ms ...member) member {
	m := bundle.Manifest{FormatVersion: bundle.FormatVersion, Compression: bundle.Gzip, Members: []bundle.Member{}}
	for _, x := range ms {
		s := sha256.Sum256(x.body)
		m.Members = append(m.Members, bundle.Member{Path: x.hdr.Name, Kind: bundle.KindFile, Size: int64(len(x.body)), SHA256: hex.EncodeToString(s[:])})
	}
	b, _ := json.Marshal(m)
	return reg(bundle.ManifestName, string(b))
}

func craft(t testing.TB, comp bundle.Compression, ms ...member) []byte {
	t.Helper()
	var out bytes.Buffer
	var zw io.WriteCloser = nopCloser{&out}
	switch comp {
	case bundle.Gzip:
		zw = gzip.NewWriter(&out)
	case bundle.Zstd:
		zw, _ = zstd.NewWriter(&out)
	}
	tw := tar.NewWriter(zw)
	for _, m := range ms {
		h := m.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("crafting %q: %v", h.Name, err)
		}
		if _, err := tw.Write(m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// gnuSparse returns a gzip stream whose first member is an old-GNU sparse
// file: a tiny member that would expand to 32 KiB of holes.
func gnuSparse(t *testing.T) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "files/x", Size: 1, Mode: 0o644, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte("a"))
	_ = tw.Close()
	raw := b.Bytes()
	raw[156] = tar.TypeGNUSparse
	copy(raw[386:410], "00000000000\x0000000000001\x00") // one sparse entry: offset 0, 1 byte
	copy(raw[483:495], "00000100000\x00")                // real size 32 KiB
	copy(raw[148:156], "        ")
	sum := 0
	for _, c := range raw[:512] {
		sum += int(c)
	}
	copy(raw[148:156], fmt.Sprintf("%06o\x00 ", sum))
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	return out.Bytes()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func TestVerifyRefusesHostileArchives(t *testing.T) {
	good := reg("artifacts/users.jsonl", "{}\n")
	link := func(name string, flag byte) member {
		return member{hdr: tar.Header{Typeflag: flag, Name: name, Linkname: "/etc/shadow", Mode: 0o644}}
	}
	tampered := manifestFor(reg("artifacts/users.jsonl", "{\"x\":1}\n"))
	big := reg("files/zeros", strings.Repeat("\x00", 8<<20))
	smallCaps := bundle.DefaultVerifyOptions
	smallCaps.MaxManifestBytes = 10
	bombCaps := bundle.DefaultVerifyOptions
	bombCaps.MaxUncompressedBytes = 4 << 20
	ratioCaps := bundle.DefaultVerifyOptions
	ratioCaps.RatioFloor, ratioCaps.MaxRatio = 1<<20, 50

	cases := []struct {
		name    string
		archive []byte
		opts    *bundle.VerifyOptions
		want    error
	}{
		{"absolute name", craft(t, bundle.Gzip, reg("/etc/cron.d/evil", "x"), manifestFor()), nil, bundle.ErrUnsafePath},
		{"dot-dot traversal", craft(t, bundle.Gzip, reg("files/../../root/.ssh/authorized_keys", "k"), manifestFor()), nil, bundle.ErrUnsafePath},
		{"backslash", craft(t, bundle.Gzip, reg(`files\..\x`, "k"), manifestFor()), nil, bundle.ErrUnsafePath},
		{"outside the layout", craft(t, bundle.Gzip, reg("etc/passwd", "k"), manifestFor()), nil, bundle.ErrUnsafePath},
		{"symlink", craft(t, bundle.Gzip, link("files/etc/shadow", tar.TypeSymlink), manifestFor()), nil, bundle.ErrNotRegular},
		{"hard link", craft(t, bundle.Gzip, link("files/etc/shadow", tar.TypeLink), manifestFor()), nil, bundle.ErrNotRegular},
		{"device", craft(t, bundle.Gzip, member{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "files/dev/sda", Devmajor: 8, Mode: 0o600}}, manifestFor()), nil, bundle.ErrNotRegular},
		{"directory", craft(t, bundle.Gzip, member{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "files/etc", Mode: 0o755}}, manifestFor()), nil, bundle.ErrNotRegular},
		{"fifo", craft(t, bundle.Zstd, member{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "files/run/x", Mode: 0o600}}, manifestFor()), nil, bundle.ErrNotRegular},
		{"GNU sparse file", gnuSparse(t), nil, bundle.ErrNotRegular},
		{"duplicate name", craft(t, bundle.Gzip, good, good, manifestFor(good)), nil, bundle.ErrDuplicate},
		{"member not in manifest", craft(t, bundle.Gzip, good, reg("files/extra", "e"), manifestFor(good)), nil, bundle.ErrUnlisted},
		{"manifest entry not in archive", craft(t, bundle.Gzip, manifestFor(good)), nil, bundle.ErrMissing},
		{"tampered member", craft(t, bundle.Zstd, good, tampered), nil, bundle.ErrDigestMismatch},
		{"no manifest", craft(t, bundle.Gzip, good), nil, bundle.ErrNoManifest},
		{"member after manifest", craft(t, bundle.Gzip, manifestFor(), good), nil, bundle.ErrManifestNotLast},
		{"malformed manifest", craft(t, bundle.Gzip, reg(bundle.ManifestName, "{\"format_version\":1,")), nil, bundle.ErrMalformedManifest},
		{"manifest with unknown field", craft(t, bundle.Gzip, reg(bundle.ManifestName, `{"format_version":1,"evil":true}`)), nil, bundle.ErrMalformedManifest},
		{"manifest of another version", craft(t, bundle.Gzip, reg(bundle.ManifestName, `{"format_version":99}`)), nil, bundle.ErrMalformedManifest},
		{"manifest listing a traversal", craft(t, bundle.Gzip, reg(bundle.ManifestName, `{"format_version":1,"members":[{"path":"../x","sha256":"`+strings.Repeat("0", 64)+`"}]}`)), nil, bundle.ErrMalformedManifest},
		{"oversized manifest", craft(t, bundle.Gzip, manifestFor()), &smallCaps, bundle.ErrManifestTooLarge},
		{"uncompressed size bomb", craft(t, bundle.Gzip, big, manifestFor(big)), &bombCaps, bundle.ErrBomb},
		{"ratio bomb", craft(t, bundle.Zstd, big, manifestFor(big)), &ratioCaps, bundle.ErrBomb},
		{"plain tar", craft(t, "", good, manifestFor(good)), nil, bundle.ErrUnknownCompression},
		{"empty stream", nil, nil, bundle.ErrUnknownCompression},
		{"corrupt gzip", append([]byte{0x1f, 0x8b, 8, 0}, bytes.Repeat([]byte{0xff}, 64)...), nil, bundle.ErrCorrupt},
		{"truncated stream", craft(t, bundle.Gzip, good, manifestFor(good))[:40], nil, bundle.ErrCorrupt},
		{"trailing garbage", append(craft(t, bundle.Gzip, good, manifestFor(good)), "junk"...), nil, bundle.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := bundle.DefaultVerifyOptions
			if tc.opts != nil {
				opts = *tc.opts
			}
			_, _, err := opts.Verify(bytes.NewReader(tc.archive))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("well-formed crafted archive passes", func(t *testing.T) {
		if _, _, err := bundle.Verify(bytes.NewReader(craft(t, bundle.Gzip, good, manifestFor(good)))); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCheckNameAndFilePath(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string
	}{
		{"/etc/passwd", "files/etc/passwd"},
		{"/var/log/../log/auth.log", "files/var/log/auth.log"},
		{"/tmp/a b/c%d", "files/tmp/a b/c%25d"},
		{"/tmp/new\nline", "files/tmp/new%0Aline"},
		{"/tmp/\xffbad", "files/tmp/%FFbad"},
		{"/tmp/back\\slash", "files/tmp/back%5Cslash"},
		{"relative/x", "files/relative/x"},
		{"/tmp/ünïcode", "files/tmp/ünïcode"},
	} {
		got := bundle.FilePath(tc.src)
		if got != tc.want {
			t.Errorf("FilePath(%q) = %q, want %q", tc.src, got, tc.want)
		}
		if err := bundle.CheckName(got); err != nil {
			t.Errorf("CheckName(FilePath(%q)): %v", tc.src, err)
		}
	}
	long := "/" + strings.Repeat("d/", 3000) + "f"
	if got := bundle.FilePath(long); len(got) > bundle.MaxNameBytes || bundle.CheckName(got) != nil {
		t.Errorf("long path gives %d bytes, CheckName %v", len(got), bundle.CheckName(got))
	}
	for _, bad := range []string{"", "/abs", "files/../x", "files/./x", "files//x", "files/", "files/x/", "memory/\x00", "other/x", "files/a\\b", strings.Repeat("a", 5000)} {
		if err := bundle.CheckName(bad); !errors.Is(err, bundle.ErrUnsafePath) {
			t.Errorf("CheckName(%q) = %v", bad, err)
		}
	}
}

func ExampleVerify() {
	var archive bytes.Buffer
	w := bundle.NewWriter(&archive, bundle.Zstd, bundle.Meta{Collector: bundle.Collector{Name: "host-collect", Version: "1"}, Profile: "triage"})
	a := w.Artifact("users")
	_ = a.Record(map[string]any{"user": "root", "uid": 0})
	_, _ = a.Close()
	_ = w.Close()
	man, rep, err := bundle.Verify(&archive)
	fmt.Println(err, man.Profile, rep.Verified, man.Members[0].Path)
	// Output: <nil> triage 1 artifacts/users.jsonl
}
