// Package termsafe makes untrusted text safe to print on a terminal or to
// put in a report: control characters that a terminal or a viewer would
// act on (title-set, clear-screen and hyperlink escapes, bells, bidi
// overrides that reorder what is read) are replaced with a visible escape
// such as \x1b or \u202e, so what was sent stays readable as evidence
// and nothing acts on the reader.
//
// Removed (escaped): C0 controls (U+0000–U+001F) except the layout
// characters a caller allows, DEL (U+007F), C1 controls (U+0080–U+009F),
// the bidi embeddings and overrides U+202A–U+202E and the isolates
// U+2066–U+2069, and every byte that is not valid UTF-8 (a raw 0x9b is CSI
// to a terminal in 8-bit mode). Everything else is kept as it was.
package termsafe

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Allowed says which layout characters pass through unchanged.
type Allowed uint8

const (
	// Tab keeps horizontal tabs.
	Tab Allowed = 1 << iota
	// Newline keeps line feeds.
	Newline
)

// Unsafe reports whether r must not reach a terminal or a report as it is.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

func allowed(r rune, a Allowed) bool {
	return (r == '\t' && a&Tab != 0) || (r == '\n' && a&Newline != 0)
}

// Clean returns s with every unsafe character but those allowed replaced
// by a visible escape: \xNN for a C0, DEL or C1 control or a byte that is
// not UTF-8, \uNNNN for a bidi control. A backslash is kept as it is, so
// the result is for reading, not for decoding.
func Clean(s string, a Allowed) string {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || (Unsafe(r) && !allowed(r, a)) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case Unsafe(r) && !allowed(r, a):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// Line cleans one-line text, such as a table cell: tabs are kept, and a
// line feed is escaped too, so a value cannot add a row of its own.
func Line(s string) string { return Clean(s, Tab) }

// Text cleans free text printed as it is: tabs and line feeds are kept.
func Text(s string) string { return Clean(s, Tab|Newline) }

// Writer cleans everything written through it with Text's rules. A UTF-8
// sequence split across two writes is held until it is whole.
type Writer struct {
	w       io.Writer
	pending []byte
}

// NewWriter returns a Writer that cleans what it passes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write cleans p and writes it. It reports len(p) when the cleaned text
// was written whole.
func (w *Writer) Write(p []byte) (int, error) {
	buf := append(w.pending, p...)
	w.pending = nil
	// Hold back an incomplete sequence at the end (at most 3 bytes).
	cut := len(buf)
	for k := 1; k <= 3 && k <= len(buf); k++ {
		c := buf[len(buf)-k]
		if c < 0x80 {
			break
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(buf[len(buf)-k:]) {
				cut = len(buf) - k
			}
			break
		}
	}
	if cut < len(buf) {
		w.pending = append([]byte(nil), buf[cut:]...)
	}
	if _, err := io.WriteString(w.w, Text(string(buf[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a sequence held back by Write, escaped, since nothing can
// complete it any more.
func (w *Writer) Flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	s := Text(string(w.pending))
	w.pending = nil
	_, err := io.WriteString(w.w, s)
	return err
}
