package bundle_test

import (
	"bytes"
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
