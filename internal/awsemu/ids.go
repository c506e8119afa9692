package awsemu

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// idSource mints identifiers that look like AWS's and are a pure function of
// the salt and of how many identifiers of the same kind were minted before.
// Two emulators with the same salt that receive the same sequence of seeds
// and calls therefore hand out the same identifiers, which lets tests compare
// dumps.
type idSource struct {
	salt string

	mu       sync.Mutex
	counters map[string]uint64
}

func newIDSource(salt string) *idSource {
	return &idSource{salt: salt, counters: make(map[string]uint64)}
}

// digest returns 32 pseudo-random bytes for the next identifier of kind.
func (s *idSource) digest(kind string) [32]byte {
	s.mu.Lock()
	s.counters[kind]++
	n := s.counters[kind]
	s.mu.Unlock()
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	h := sha256.New()
	h.Write([]byte(s.salt))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(buf[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// resource returns an EC2-style identifier: prefix, a dash and 17 hex digits
// (i-0123456789abcdef0, sg-…, vol-…).
func (s *idSource) resource(prefix string) string {
	d := s.digest(prefix)
	return prefix + "-" + hex.EncodeToString(d[:9])[:17]
}

// hexString returns n lowercase hex digits.
func (s *idSource) hexString(kind string, n int) string {
	d := s.digest(kind)
	x := hex.EncodeToString(d[:])
	for len(x) < n {
		d = sha256.Sum256(d[:])
		x += hex.EncodeToString(d[:])
	}
	return x[:n]
}

var upperBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// accessKeyID returns an access key id: a four-letter prefix (AKIA for
// long-term keys, ASIA for session keys) and 16 base32 characters.
func (s *idSource) accessKeyID(prefix string) string {
	d := s.digest("key/" + prefix)
	return prefix + upperBase32.EncodeToString(d[:10])[:16]
}

// uniqueID returns an IAM unique id (AIDA… for users, AROA… for roles, ANPA…
// for policies, AIPA… for instance profiles): the prefix and 17 characters.
func (s *idSource) uniqueID(prefix string) string {
	d := s.digest("uid/" + prefix)
	return prefix + upperBase32.EncodeToString(d[:11])[:17]
}

// secret returns a 40-character secret access key.
func (s *idSource) secret() string {
	d := s.digest("secret")
	return base64.StdEncoding.EncodeToString(d[:30])[:40]
}

// sessionToken returns an opaque session token of the length AWS uses.
func (s *idSource) sessionToken() string {
	var b strings.Builder
	b.WriteString("FwoGZXIvYXdzE")
	for b.Len() < 356 {
		d := s.digest("token")
		b.WriteString(base64.StdEncoding.EncodeToString(d[:]))
	}
	return strings.TrimRight(b.String()[:356], "=")
}

// uuid returns a version-4 style UUID, as AWS uses for request and event ids.
func (s *idSource) uuid(kind string) string {
	d := s.digest("uuid/" + kind)
	d[6] = d[6]&0x0f | 0x40
	d[8] = d[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", d[0:4], d[4:6], d[6:8], d[8:10], d[10:16])
}

// lowerAlnum returns n characters from [a-z0-9], the alphabet of
// Organizations identifiers.
func (s *idSource) lowerAlnum(kind string, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	d := s.digest(kind)
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[int(d[i%len(d)]+byte(i/len(d)))%len(alphabet)]
	}
	return string(out)
}
