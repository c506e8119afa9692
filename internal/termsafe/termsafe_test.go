package termsafe_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/firebreak-ir/firebreak/internal/termsafe"
)

func TestClean(t *testing.T) {
	tests := []struct {
		name, in string
		allow    termsafe.Allowed
		want     string
	}{
		{"plain text is kept", "host i-0abc: done ✓", 0, "host i-0abc: done ✓"},
		{"OSC 0 title set", "\x1b]0;pwned\x07rest", 0, `\x1b]0;pwned\x07rest`},
		{"OSC 8 hyperlink", "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", 0, `\x1b]8;;http://evil\x1b\click\x1b]8;;\x1b\`},
		{"CSI clear screen", "\x1b[2J\x1b[H", 0, `\x1b[2J\x1b[H`},
		{"DEL", "a\x7fb", 0, `a\x7fb`},
		{"C1 CSI as a rune", "a\u009b2Jb", 0, `a\x9b2Jb`},
		{"raw C1 byte (not UTF-8)", "a\x9b2Jb", 0, `a\x9b2Jb`},
		{"bidi override", "file\u202Etxt.exe", 0, `file\u202etxt.exe`},
		{"bidi isolate", "a\u2066b\u2069", 0, `a\u2066b\u2069`},
		{"carriage return", "ok\rFAKE", termsafe.Tab | termsafe.Newline, `ok\x0dFAKE`},
		{"newline escaped in a line", "a\nb", termsafe.Tab, `a\x0ab`},
		{"newline kept in text", "a\nb\tc", termsafe.Tab | termsafe.Newline, "a\nb\tc"},
		{"tab escaped when not allowed", "a\tb", 0, `a\x09b`},
		{"NUL", "a\x00b", 0, `a\x00b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := termsafe.Clean(tt.in, tt.allow); got != tt.want {
				t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLineAndText(t *testing.T) {
	if got := termsafe.Line("a\nb\tc"); got != `a\x0ab`+"\tc" {
		t.Errorf("Line = %q", got)
	}
	if got := termsafe.Text("a\nb\x1b"); got != "a\nb"+`\x1b` {
		t.Errorf("Text = %q", got)
	}
}

func TestWriterSplitsRunes(t *testing.T) {
	in := "é\u202E✓\x1b[2J\n"
	var out bytes.Buffer
	w := termsafe.NewWriter(&out)
	// Write one byte at a time: sequences are split across every write.
	for i := 0; i < len(in); i++ {
		if _, err := w.Write([]byte{in[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := termsafe.Text(in); out.String() != want {
		t.Errorf("writer = %q, want %q", out.String(), want)
	}
}

func TestWriterFlushEscapesATruncatedSequence(t *testing.T) {
	var out bytes.Buffer
	w := termsafe.NewWriter(&out)
	_, _ = w.Write([]byte("ok\xe2\x80"))
	_ = w.Flush()
	if out.String() != `ok\xe2\x80` {
		t.Errorf("got %q", out.String())
	}
}

// checkSafe fails when s holds an unsafe character outside the allowed set.
func checkSafe(t *testing.T, s string, a termsafe.Allowed) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("output is not valid UTF-8: %q", s)
	}
	for _, r := range s {
		if termsafe.Unsafe(r) && !(r == '\t' && a&termsafe.Tab != 0) && !(r == '\n' && a&termsafe.Newline != 0) {
			t.Fatalf("output holds %U: %q", r, s)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b]0;t\x07", "\x9b2J", "\u202e", "a\nb\tc\r", "\xe2\x80", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkSafe(t, termsafe.Line(s), termsafe.Tab)
		checkSafe(t, termsafe.Text(s), termsafe.Tab|termsafe.Newline)
		checkSafe(t, termsafe.Clean(s, 0), 0)
		if !strings.ContainsFunc(s, termsafe.Unsafe) && utf8.ValidString(s) && termsafe.Clean(s, 0) != s {
			t.Fatalf("safe text changed: %q", s)
		}
		var out bytes.Buffer
		w := termsafe.NewWriter(&out)
		half := len(s) / 2
		_, _ = w.Write([]byte(s[:half]))
		_, _ = w.Write([]byte(s[half:]))
		_ = w.Flush()
		checkSafe(t, out.String(), termsafe.Tab|termsafe.Newline)
	})
}
