package bundle

import (
	"bytes"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameBytes caps the length of an archive path.
const MaxNameBytes = 4096

// Archive path prefixes.
const (
	artifactsDir = "artifacts/"
	filesDir     = "files/"
	memoryDir    = "memory/"
)

// CheckName refuses an archive path that is unsafe to extract or that this
// format does not produce: empty or over-long names, absolute names, "." or
// ".." components, backslashes, control characters, invalid UTF-8, and
// anything outside artifacts/, files/ and memory/ other than the manifest.
//
// Security-critical: this is what keeps a hostile archive from writing
// outside an examiner's extraction directory.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrUnsafePath)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: name of %d bytes (limit %d)", ErrUnsafePath, len(name), MaxNameBytes)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: absolute name %q", ErrUnsafePath, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name %q is not UTF-8", ErrUnsafePath, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' || !unicode.IsPrint(r) && r != ' ' {
			return fmt.Errorf("%w: name %q holds a control character or backslash", ErrUnsafePath, name)
		}
	}
	for _, comp := range strings.Split(name, "/") {
		if comp == ".." || comp == "." || comp == "" {
			return fmt.Errorf("%w: name %q has an empty, \".\" or \"..\" component", ErrUnsafePath, name)
		}
	}
	if path.Clean(name) != name {
		return fmt.Errorf("%w: name %q is not clean", ErrUnsafePath, name)
	}
	if name == ManifestName {
		return nil
	}
	for _, p := range []string{artifactsDir, filesDir, memoryDir} {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return nil
		}
	}
	return fmt.Errorf("%w: name %q is outside artifacts/, files/ and memory/", ErrUnsafePath, name)
}

// ArtifactName reports whether s can name an artifact: lower-case letters,
// digits and underscores, at most 64 bytes.
func ArtifactName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// RecordsPath returns the archive path of part n (1-based) of an artifact's
// JSON Lines records.
func RecordsPath(artifact string, part int) string {
	if part <= 1 {
		return artifactsDir + artifact + ".jsonl"
	}
	return fmt.Sprintf("%s%s.%d.jsonl", artifactsDir, artifact, part)
}

// RenderingPath returns the archive path of part n (1-based) of an
// artifact's rendering with the given extension (without the dot).
func RenderingPath(artifact, ext string, part int) string {
	if part <= 1 {
		return artifactsDir + artifact + "." + ext
	}
	return fmt.Sprintf("%s%s.%d.%s", artifactsDir, artifact, part, ext)
}

// MemoryPath returns the archive path of a process memory region.
func MemoryPath(pid int, start, end uint64) string {
	return fmt.Sprintf("%s%d/%016x-%016x.bin", memoryDir, pid, start, end)
}

// FilePath returns the archive path of a raw copy of the file at src, an
// absolute path on the host. Every byte that is not a printable, safe
// character (control characters, invalid UTF-8, backslash, and '%' itself) is
// written as %XX, so the original path can be recovered exactly with
// [SourcePath] however hostile the file name.
func FilePath(src string) string {
	clean := filepath.Clean("/" + src)
	var b strings.Builder
	b.WriteString(filesDir)
	for i, comp := range strings.Split(strings.TrimPrefix(clean, "/"), "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		escapeComponent(&b, comp)
	}
	name := b.String()
	if len(name) > MaxNameBytes {
		// An absurdly deep or long path keeps its head and is made unique by
		// its digest; the source path in the manifest keeps the whole path.
		sum := sha256Hex([]byte(src))
		cut := MaxNameBytes - len(sum) - 2
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = strings.TrimRight(name[:cut], "/") + "/~" + sum
	}
	return name
}

func escapeComponent(b *strings.Builder, comp string) {
	switch comp {
	case "":
		// Only the root itself has an empty name; it is written as an escaped slash.
		b.WriteString("%2F")
		return
	case ".", "..":
		// Cannot come from a cleaned path, but never let one through.
		b.WriteString(strings.Repeat("%2E", len(comp)))
		return
	}
	for len(comp) > 0 {
		r, size := utf8.DecodeRuneInString(comp)
		if r == utf8.RuneError && size <= 1 || r < 0x20 || r == 0x7f || r == '\\' || r == '%' || r != ' ' && !unicode.IsPrint(r) {
			for _, c := range []byte(comp[:max(size, 1)]) {
				fmt.Fprintf(b, "%%%02X", c)
			}
		} else {
			b.WriteString(comp[:size])
		}
		comp = comp[max(size, 1):]
	}
}

// SourcePath recovers the host path of a files/ archive path written by
// [FilePath]. It returns false for other paths and for over-long paths that
// were shortened.
func SourcePath(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, filesDir)
	if !ok || strings.Contains(rest, "/~") {
		return "", false
	}
	var out bytes.Buffer
	out.WriteByte('/')
	for i := 0; i < len(rest); i++ {
		if rest[i] == '%' && i+2 < len(rest) && isHex(rest[i+1]) && isHex(rest[i+2]) {
			out.WriteByte(unhex(rest[i+1])<<4 | unhex(rest[i+2]))
			i += 2
			continue
		}
		out.WriteByte(rest[i])
	}
	return out.String(), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
