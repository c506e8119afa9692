package bundle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

func validArchive(t testing.TB, comp bundle.Compression) []byte {
	var out bytes.Buffer
	w := bundle.NewWriter(&out, comp, meta(0))
	a := w.Artifact("processes")
	_ = a.Record(map[string]any{"pid": 1, "exe": "/sbin/init"})
	_, _ = a.AddBytes("/proc/1/maps", []byte("x"), 0o444, fixedClock())
	_, _ = a.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// FuzzVerify feeds arbitrary streams to the reader: it must refuse or accept
// them without panicking, and anything it accepts must be self-consistent.
func FuzzVerify(f *testing.F) {
	f.Add(validArchive(f, bundle.Gzip))
	f.Add(validArchive(f, bundle.Zstd))
	good := reg("artifacts/users.jsonl", "{}\n")
	f.Add(craft(f, bundle.Gzip, reg("../x", "x"), manifestFor()))
	f.Add(craft(f, bundle.Gzip, good, good, manifestFor(good)))
	f.Add(craft(f, bundle.Zstd, good, manifestFor(good)))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	opts := bundle.DefaultVerifyOptions
	opts.MaxUncompressedBytes = 32 << 20
	opts.RatioFloor = 1 << 20
	opts.MaxRatio = 200
	f.Fuzz(func(t *testing.T, data []byte) {
		man, rep, err := opts.Verify(bytes.NewReader(data))
		if err != nil {
			return
		}
		if man == nil || rep.Verified != len(man.Members) {
			t.Fatalf("accepted with manifest %v and report %+v", man, rep)
		}
		for _, m := range man.Members {
			if bundle.CheckName(m.Path) != nil {
				t.Fatalf("accepted unsafe member %q", m.Path)
			}
		}
	})
}

// FuzzManifest feeds arbitrary JSON to the manifest decoder: no panic, and an
// accepted manifest survives a round trip.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"members":[]}`))
	f.Add([]byte(`{"format_version":1,"members":[{"path":"files/etc/passwd","kind":"file","artifact":"users","size":3,"sha256":"` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"format_version":1,"artifacts":[{"name":"x","status":"ok","items":1,"skipped":[{"item":"a","reason":"b"}]}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"format_version":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bundle.DecodeManifest(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encoding an accepted manifest: %v", err)
		}
		if _, err := bundle.DecodeManifest(b); err != nil {
			t.Fatalf("an accepted manifest does not survive a round trip: %v\n%s", err, b)
		}
	})
}

// FuzzFilePath checks that any host path maps to a safe archive name that
// gives the path back.
func FuzzFilePath(f *testing.F) {
	for _, s := range []string{"/etc/passwd", "/tmp/\x00\xff%", "/..", "", "a/../../b", "/x\\y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		name := bundle.FilePath(src)
		if err := bundle.CheckName(name); err != nil {
			t.Fatalf("FilePath(%q) = %q: %v", src, name, err)
		}
		clean := filepath.Clean("/" + src)
		if got, ok := bundle.SourcePath(name); ok && got != clean && clean != "/" {
			t.Fatalf("SourcePath(FilePath(%q)) = %q, want %q", src, got, clean)
		}
	})
}

// FuzzRoundTrip writes a bundle holding one file and one record from the
// fuzzer's input, and checks that verifying and reading it gives back
// exactly what was written: the bytes, their hash and size, the host path,
// and the record.
func FuzzRoundTrip(f *testing.F) {
	f.Add("/etc/passwd", []byte("root:x:0:0::/root:/bin/sh\n"), "web-1")
	f.Add("/tmp/\x00\xff%/../x", []byte{}, "\xff")
	f.Add("relative/dir/../f", bytes.Repeat([]byte{0}, 4096), `"quoted"`)
	f.Fuzz(func(t *testing.T, src string, content []byte, field string) {
		if len(content) > 1<<20 {
			return
		}
		var out bytes.Buffer
		w := bundle.NewWriter(&out, bundle.Gzip, meta(0))
		a := w.Artifact("files")
		m, err := a.AddBytes(src, content, 0o640, fixedClock())
		if err != nil {
			t.Fatalf("AddBytes(%q): %v", src, err)
		}
		if err := a.Record(map[string]string{"field": field}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		man, rep, err := bundle.Verify(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("a bundle the writer made does not verify: %v", err)
		}
		if rep.Verified != len(man.Members) {
			t.Fatalf("verified %d of %d members", rep.Verified, len(man.Members))
		}
		members := readAll(t, out.Bytes())
		if got := members[m.Path]; !bytes.Equal(got, content) {
			t.Fatalf("member %q holds %d bytes, want the %d written", m.Path, len(got), len(content))
		}
		sum := sha256.Sum256(content)
		var file, records *bundle.Member
		for i := range man.Members {
			switch mm := &man.Members[i]; mm.Kind {
			case bundle.KindFile:
				file = mm
			case bundle.KindRecords:
				records = mm
			}
		}
		if file == nil || file.Path != m.Path || file.Size != int64(len(content)) || file.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("manifest file member %+v does not describe the %d bytes written at %q", file, len(content), m.Path)
		}
		if got, ok := bundle.SourcePath(m.Path); ok && got != filepath.Clean("/"+src) && filepath.Clean("/"+src) != "/" {
			t.Fatalf("SourcePath(%q) = %q, want %q", m.Path, got, filepath.Clean("/"+src))
		}
		if records == nil {
			t.Fatal("the record was not archived")
		}
		var rec map[string]string
		if err := json.Unmarshal(bytes.TrimSpace(members[records.Path]), &rec); err != nil {
			t.Fatalf("record line: %v", err)
		}
		if want := strings.ToValidUTF8(field, "\uFFFD"); rec["field"] != want {
			t.Fatalf("record field %q, want %q", rec["field"], want)
		}
	})
}
