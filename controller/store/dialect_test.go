package store

import (
	"reflect"
	"testing"
)

func TestRebind(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no placeholders", `SELECT 1`, `SELECT 1`},
		{"in order", `UPDATE t SET a = ?, b = ? WHERE id = ?`, `UPDATE t SET a = $1, b = $2 WHERE id = $3`},
		{"inside a string literal", `SELECT '?', x FROM t WHERE y = ? AND z = 'it''s ?'`, `SELECT '?', x FROM t WHERE y = $1 AND z = 'it''s ?'`},
		{"inside a quoted identifier", `SELECT "a?" FROM t WHERE b = ?`, `SELECT "a?" FROM t WHERE b = $1`},
		{"in comments", "SELECT a -- b = ?\nFROM t /* ? */ WHERE c = ?", "SELECT a -- b = ?\nFROM t /* ? */ WHERE c = $1"},
		{"dollar-quoted body", `CREATE FUNCTION f() AS $fn$ SELECT '?' $fn$; SELECT ?`, `CREATE FUNCTION f() AS $fn$ SELECT '?' $fn$; SELECT $1`},
		{"a dollar that opens no quote", `SELECT a$b, $ ?`, `SELECT a$b, $ $1`},
		{"an unterminated literal is copied", `SELECT ? WHERE a = 'x?`, `SELECT $1 WHERE a = 'x?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rebind(tt.in); got != tt.want {
				t.Fatalf("rebind(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestMigrationsHaveNoQuestionMarks checks that no migration holds a `?`,
// which rebind would number on PostgreSQL (migrations take no arguments).
func TestMigrationsHaveNoQuestionMarks(t *testing.T) {
	for _, m := range allMigrations() {
		for _, pg := range []bool{false, true} {
			if q := m.text(pg); rebind(q) != q {
				t.Errorf("migration %s (postgres %v) holds a ?: %s", m.name, pg, q)
			}
		}
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no password", "postgres://fb@db.internal/firebreak?sslmode=verify-full", "postgres://fb@db.internal/firebreak?sslmode=verify-full"},
		{"user password", "postgres://fb:s3cret@db.internal:5432/firebreak?sslmode=require", "postgres://fb:xxxxx@db.internal:5432/firebreak?sslmode=require"},
		{"password parameter", "postgresql://fb@db/firebreak?password=s3cret&sslmode=disable", "postgresql://fb@db/firebreak?password=xxxxx&sslmode=disable"},
		{"key=value form", "host=db user=fb password=s3cret dbname=firebreak", "host=db user=fb password=xxxxx dbname=firebreak"},
		{"an unparsable URL", "postgres://fb:s3c%ret@db/firebreak", "postgres://fb:xxxxx@db/firebreak"},
		{"a path", "/var/lib/firebreak", "/var/lib/firebreak"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactDSN(tt.in); got != tt.want {
				t.Fatalf("RedactDSN(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestWithoutNUL checks what reaches PostgreSQL of an argument that may
// hold NUL characters: strings and string arrays lose them, every other
// value passes as it is.
func TestWithoutNUL(t *testing.T) {
	tests := []struct {
		name    string
		in      any
		want    any
		changed bool
	}{
		{"a clean string", "ok", nil, false},
		{"a string with NULs", "a\x00b\x00", "a\uFFFDb\uFFFD", true},
		{"a clean string array", []string{"a", "b"}, nil, false},
		{"a string array with a NUL", []string{"a", "b\x00", "c"}, []string{"a", "b\uFFFD", "c"}, true},
		{"bytes keep their NULs", []byte{0, 1}, nil, false},
		{"an integer array", []int64{0, 1}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := withoutNUL(tt.in)
			if changed != tt.changed || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("withoutNUL(%q) = %q, %v; want %q, %v", tt.in, got, changed, tt.want, tt.changed)
			}
		})
	}
	// The caller's array is left as it was.
	in := []string{"x\x00"}
	withoutNUL(in)
	if in[0] != "x\x00" {
		t.Fatalf("withoutNUL changed its argument: %q", in)
	}
}
