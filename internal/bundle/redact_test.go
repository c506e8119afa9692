package bundle_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/firebreak-ir/firebreak/internal/bundle"
)

// starRedactor overwrites every "SECRET" with "******".
type starRedactor struct{}

func (starRedactor) Redact(b []byte) map[string]int64 {
	n := int64(0)
	for i := bytes.Index(b, []byte("SECRET")); i >= 0; i = bytes.Index(b, []byte("SECRET")) {
		copy(b[i:], "******")
		n++
	}
	if n == 0 {
		return nil
	}
	return map[string]int64{"secret": n}
}

func (r starRedactor) Reader(src io.Reader) (io.Reader, func() map[string]int64) {
	b, err := io.ReadAll(src)
	counts := r.Redact(b)
	if err != nil {
		return io.MultiReader(bytes.NewReader(b), errReader{err}), func() map[string]int64 { return counts }
	}
	return bytes.NewReader(b), func() map[string]int64 { return counts }
}

func (starRedactor) Policy() string { return "SECRET becomes ******" }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestRedactorAppliesToRecordsAndMarkedCopies checks that a Writer with a
// Redactor redacts every record and the copies marked Redact, leaves other
// copies byte-exact, states the policy and counts each redaction on the
// member and the artifact, and that the bundle still verifies.
func TestRedactorAppliesToRecordsAndMarkedCopies(t *testing.T) {
	dir := t.TempDir()
	marked, plain := filepath.Join(dir, "history"), filepath.Join(dir, "binary")
	for _, p := range []string{marked, plain} {
		if err := os.WriteFile(p, []byte("a SECRET and another SECRET\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := meta(0)
	m.Redactor = starRedactor{}
	var out bytes.Buffer
	w := bundle.NewWriter(&out, bundle.Gzip, m)
	a := w.Artifact("shell_history")
	if err := a.Record(map[string]string{"command": "export X=SECRET"}); err != nil {
		t.Fatal(err)
	}
	a.NoteRecordRedactions(map[string]int64{"X": 1})
	if err := a.Record(map[string]string{"command": "export X=******"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path   string
		redact bool
	}{{marked, true}, {plain, false}} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.AddFile(c.path, f, bundle.FileOptions{Redact: c.redact}); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if _, err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	man, _, err := bundle.Verify(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatalf("the bundle does not verify: %v", err)
	}
	if man.Redaction != "SECRET becomes ******" {
		t.Errorf("policy %q", man.Redaction)
	}
	if got, want := man.Artifacts[0].Redactions, map[string]int64{"secret": 3, "X": 1}; !maps.Equal(got, want) {
		t.Errorf("artifact redactions %v, want %v", got, want)
	}
	byPath := map[string]bundle.Member{}
	for _, mem := range man.Members {
		byPath[mem.Path] = mem
	}
	if got := byPath[bundle.RecordsPath("shell_history", 1)].Redactions; !maps.Equal(got, map[string]int64{"secret": 1, "X": 1}) {
		t.Errorf("records member redactions %v", got)
	}
	if got := byPath[bundle.FilePath(marked)].Redactions; !maps.Equal(got, map[string]int64{"secret": 2}) {
		t.Errorf("marked copy redactions %v", got)
	}
	if got := byPath[bundle.FilePath(plain)].Redactions; got != nil {
		t.Errorf("unmarked copy redactions %v, want none", got)
	}
	members := readAll(t, out.Bytes())
	if bytes.Contains(members[bundle.RecordsPath("shell_history", 1)], []byte("SECRET")) ||
		bytes.Contains(members[bundle.FilePath(marked)], []byte("SECRET")) {
		t.Error("a redacted member holds the secret")
	}
	if !bytes.Equal(members[bundle.FilePath(plain)], []byte("a SECRET and another SECRET\n")) {
		t.Errorf("the unmarked copy changed: %q", members[bundle.FilePath(plain)])
	}
}

// readAll returns every member of a gzip bundle by path.
func readAll(t *testing.T, archive []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = b
	}
}
