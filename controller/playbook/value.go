package playbook

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// ValueKind says what shape a Value has.
type ValueKind int

// The shapes a Value may have.
const (
	// ValueLiteral is a plain YAML scalar: string, int64, float64, bool or nil.
	ValueLiteral ValueKind = iota + 1
	// ValueExpr is a whole "${{ expr }}" scalar; it keeps the expression's type.
	ValueExpr
	// ValueTemplate is a string with one or more expressions inside text.
	ValueTemplate
	// ValueList is a YAML sequence of values.
	ValueList
	// ValueMap is a YAML mapping from strings to values.
	ValueMap
)

// Value is a value as written in a playbook: a literal, an expression, an
// interpolated string, or a list or map of values.
type Value struct {
	// Kind is the value's shape.
	Kind ValueKind
	// Literal is set for ValueLiteral.
	Literal any
	// Text is the scalar's text as written, for scalars.
	Text string
	// Expr is set for ValueExpr.
	Expr *Expr
	// Parts are the pieces of a ValueTemplate: literal text and expressions,
	// in order.
	Parts []Part
	// List holds a ValueList's elements.
	List []*Value
	// Map holds a ValueMap's entries, in file order.
	Map []*Param
	// Pos is where the value starts.
	Pos Pos
}

// Part is a piece of an interpolated string: either literal text or an
// expression.
type Part struct {
	// Text is literal text when Expr is nil.
	Text string
	// Expr is the interpolated expression, or nil.
	Expr *Expr
}

// Expr is one CEL expression found between "${{" and "}}".
type Expr struct {
	// Source is the CEL text between the delimiters.
	Source string
	// Pos is where the expression's "${{" is in the file.
	Pos Pos

	node  *yaml.Node
	start int // byte offset of Source within node.Value
	src   *source
}

// String shows the expression as written, with its delimiters.
func (e *Expr) String() string { return "${{" + e.Source + "}}" }

// posAt returns the file position of a byte offset within the expression.
func (e *Expr) posAt(off int) Pos {
	return e.src.scalarPos(e.node, e.start+off)
}

// Exprs returns every expression in the value, depth first.
func (v *Value) Exprs() []*Expr {
	if v == nil {
		return nil
	}
	var out []*Expr
	switch v.Kind {
	case ValueExpr:
		out = append(out, v.Expr)
	case ValueTemplate:
		for _, p := range v.Parts {
			if p.Expr != nil {
				out = append(out, p.Expr)
			}
		}
	case ValueList:
		for _, e := range v.List {
			out = append(out, e.Exprs()...)
		}
	case ValueMap:
		for _, p := range v.Map {
			out = append(out, p.Value.Exprs()...)
		}
	}
	return out
}

// source is the playbook text, kept to map offsets inside YAML scalars to
// file columns.
type source struct {
	lines []string
}

func newSource(data []byte) *source {
	return &source{lines: strings.Split(string(data), "\n")}
}

// line returns the 1-based line n without its line ending, or "".
func (s *source) line(n int) string {
	if n < 1 || n > len(s.lines) {
		return ""
	}
	return strings.TrimSuffix(s.lines[n-1], "\r")
}

// scalarPos maps a byte offset within a scalar's decoded value to its file
// position. It is exact for single-line plain and quoted scalars and for
// literal blocks; for folded or multi-line scalars, where the mapping is
// ambiguous, it returns the scalar's start.
func (s *source) scalarPos(n *yaml.Node, off int) Pos {
	start := Pos{Line: n.Line, Column: n.Column}
	v := n.Value
	if off < 0 || off > len(v) {
		return start
	}
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		i := strings.Count(v[:off], "\n")
		lineStart := strings.LastIndexByte(v[:off], '\n') + 1
		lineEnd := strings.IndexByte(v[lineStart:], '\n')
		if lineEnd < 0 {
			lineEnd = len(v) - lineStart
		}
		content := v[lineStart : lineStart+lineEnd]
		raw := s.line(n.Line + 1 + i)
		if !strings.HasSuffix(raw, content) {
			return start
		}
		indent := utf8.RuneCountInString(raw) - utf8.RuneCountInString(content)
		return Pos{Line: n.Line + 1 + i, Column: indent + utf8.RuneCountInString(v[lineStart:off]) + 1}
	case strings.Contains(v, "\n"):
		return start
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		raw := []rune(s.line(n.Line))
		if n.Column < 1 || n.Column > len(raw) {
			return start
		}
		col, ok := quotedColumn(raw[n.Column:], v[:off], n.Style&yaml.DoubleQuotedStyle != 0)
		if !ok {
			return start
		}
		return Pos{Line: n.Line, Column: n.Column + 1 + col}
	default:
		raw := []rune(s.line(n.Line))
		if n.Column < 1 || n.Column-1 > len(raw) || !strings.HasPrefix(string(raw[n.Column-1:]), v) {
			return start
		}
		return Pos{Line: n.Line, Column: n.Column + utf8.RuneCountInString(v[:off])}
	}
}

// quotedColumn walks the raw characters of a quoted scalar (after its
// opening quote) until prefix, the decoded text before the offset, is used
// up, and returns how many raw characters that took.
func quotedColumn(raw []rune, prefix string, double bool) (int, bool) {
	col := 0
	for len(prefix) > 0 {
		if col >= len(raw) {
			return 0, false
		}
		r := raw[col]
		switch {
		case !double && r == '\'' && col+1 < len(raw) && raw[col+1] == '\'':
			col += 2
			prefix = prefix[1:]
		case double && r == '\\' && col+1 < len(raw):
			width := 2
			switch raw[col+1] {
			case 'x':
				width = 4
			case 'u':
				width = 6
			case 'U':
				width = 10
			}
			_, size := utf8.DecodeRuneInString(prefix)
			col += width
			prefix = prefix[size:]
		default:
			_, size := utf8.DecodeRuneInString(prefix)
			col++
			prefix = prefix[size:]
		}
	}
	return col, true
}

// splitTemplate cuts a string into literal text and "${{ … }}" expressions.
// On a malformed expression it returns the byte offset to blame and a
// message.
func splitTemplate(s string) (parts []Part, starts []int, badOff int, msg string) {
	rest := 0
	for {
		i := strings.Index(s[rest:], "${{")
		if i < 0 {
			if rest < len(s) {
				parts = append(parts, Part{Text: s[rest:]})
				starts = append(starts, rest)
			}
			return parts, starts, 0, ""
		}
		open := rest + i
		if open > rest {
			parts = append(parts, Part{Text: s[rest:open]})
			starts = append(starts, rest)
		}
		body := open + 3
		end, ok := closeExpr(s, body)
		if !ok {
			return nil, nil, open, `expression is not closed with "}}"`
		}
		if strings.TrimSpace(s[body:end]) == "" {
			return nil, nil, open, "expression is empty"
		}
		parts = append(parts, Part{Expr: &Expr{Source: s[body:end]}})
		starts = append(starts, body)
		rest = end + 2
	}
}

// closeExpr finds the "}}" that ends the expression starting at from,
// skipping CEL string literals and balanced braces of map literals.
func closeExpr(s string, from int) (int, bool) {
	depth := 0
	for i := from; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '"':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return 0, false
			}
			i = j
		case '{':
			depth++
		case '}':
			if depth > 0 {
				depth--
				continue
			}
			if i+1 < len(s) && s[i+1] == '}' {
				return i, true
			}
			return 0, false
		}
	}
	return 0, false
}

// describeGo names the YAML-level type of a Go literal for error messages.
func describeGo(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// describe names the shape of a Value for error messages.
func (v *Value) describe() string {
	switch v.Kind {
	case ValueLiteral:
		return describeGo(v.Literal)
	case ValueExpr:
		return "an expression"
	case ValueTemplate:
		return "an interpolated string"
	case ValueList:
		return "a list"
	case ValueMap:
		return "a mapping"
	}
	return "nothing"
}
