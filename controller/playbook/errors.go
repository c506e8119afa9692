package playbook

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a playbook file: 1-based line and column, with the
// column counted in characters as YAML counts them. The zero Pos means the
// error concerns the whole file.
type Pos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Error is one problem found in a playbook, at a position in its file.
type Error struct {
	// File is the file name given to Parse.
	File string
	// Pos is where the problem is; zero for whole-file problems.
	Pos Pos
	// Msg says what is wrong and, where it helps, what to write instead.
	Msg string
}

// Error formats the problem as file:line:column: message.
func (e Error) Error() string {
	if e.Pos.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Column, e.Msg)
}

// Errors is a list of playbook problems; Parse returns it as its error.
type Errors []Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sortErrors orders problems by position so that reports are stable and
// read top to bottom.
func sortErrors(es []Error) {
	slices.SortStableFunc(es, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
}
