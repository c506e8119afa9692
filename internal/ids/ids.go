// Package ids makes the short, typed, random identifiers Firebreak shows
// operators: "run-" followed by 16 base32 characters (80 random bits), easy
// to read aloud and to paste, never guessable.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

var enc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// New returns prefix + "-" + 16 random base32 characters.
func New(prefix string) string {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + "-" + enc.EncodeToString(b)
}

// Valid reports whether s looks like an id with the prefix.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"-")
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := enc.DecodeString(rest)
	return err == nil
}
