package hostcollect

import (
	"bytes"
	"io"
	"regexp"
	"strings"
)

// Kinds of secret the collector redacts, as counted in the manifest.
const (
	// RedactJoinToken is a Firebreak join token (fbj_ and 43 base64url
	// characters, from `firebreak token create`), or what looks like one:
	// fbj_ and at least 32 of them.
	RedactJoinToken = "firebreak-join-token"
	// RedactPrivateKey is the body of a PEM private key block, such as an
	// operator credential's key.
	RedactPrivateKey = "private-key"
	// RedactAWSSecretKey is the value given to an AWS secret access key
	// setting (AWS_SECRET_ACCESS_KEY=, aws_secret_access_key =,
	// "SecretAccessKey": …).
	RedactAWSSecretKey = "aws-secret-access-key"
	// RedactAWSSessionToken is an AWS session token, by the setting it is
	// given to or by its own shape.
	RedactAWSSessionToken = "aws-session-token"
)

// RedactionPolicy is what the manifest states about redaction.
const RedactionPolicy = "host-collect overwrites secret values before they enter the bundle: Firebreak join tokens (fbj_…), " +
	"the bodies of PEM private keys, AWS secret access keys and session tokens, and the whole values of the environment " +
	"variables FIREBREAK_JOIN_TOKEN, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_SECURITY_TOKEN; in every record, " +
	"and in the copies of shell histories, persistence files and logs. A value is overwritten with a run of the same " +
	"length (\"[REDACTED:kind]\" then '*'), so offsets stay true. Each artifact and member counts what it replaced, by kind " +
	"or variable name, under \"redactions\"; a redacted member's sha256 is that of its redacted bytes, not of the source. " +
	"Compressed log rotations, journal fields the journal compressed, executables and memory are not examined."

// secretEnvKinds maps environment variables whose whole value is a secret,
// whatever its shape, to the kind of secret.
var secretEnvKinds = map[string]string{
	"FIREBREAK_JOIN_TOKEN":  RedactJoinToken,
	"AWS_SECRET_ACCESS_KEY": RedactAWSSecretKey,
	"AWS_SESSION_TOKEN":     RedactAWSSessionToken,
	"AWS_SECURITY_TOKEN":    RedactAWSSessionToken,
}

// A secret is found by an anchor, a literal searched for with bytes.Index
// (regular expressions are far too slow for logs of hundreds of MiB), then
// checked around it by hand:
//   - a shape: the anchor starts the secret, which runs on over its alphabet
//     (fbj_ and base64url for join tokens; the STS prefixes and base64 for
//     session tokens) for at least minRun characters;
//   - a setting: the anchor is part of a setting's name (case ignored, parts
//     joined by nothing, "_" or "-", any prefix such as "aws_" allowed), then
//     a separator — "=" or ":" with optional quotes and blanks (env, INI,
//     YAML, JSON), or blanks alone (`aws configure set NAME VALUE`) — then a
//     value of at least 16 base64 characters.
type valuePattern struct {
	kind string
	// anchor is searched for; fold searches it in the lower-cased input.
	anchor string
	fold   bool
	// before and after are the name parts that must stand right before
	// and after the anchor (any one of before), for a setting.
	before []string
	after  string
	// setting is set for a setting, clear for a shape.
	setting bool
	// minRun is the least length of a shape, anchor included; base64url
	// selects the alphabet of join tokens.
	minRun    int
	base64url bool
}

// maxSecretValue bounds a secret value; AWS session tokens run to a few
// thousand characters.
const maxSecretValue = 4096

// minSettingValue is the shortest value a secret setting is redacted for:
// shorter ones are placeholders, not keys.
const minSettingValue = 16

var valuePatterns = []valuePattern{
	{kind: RedactJoinToken, anchor: "fbj_", minRun: 4 + 32, base64url: true},
	{kind: RedactAWSSecretKey, anchor: "access", fold: true, before: []string{"secret"}, after: "key", setting: true},
	{kind: RedactAWSSessionToken, anchor: "token", fold: true, before: []string{"session", "security"}, setting: true},
	{kind: RedactAWSSessionToken, anchor: "IQoJb3JpZ2luX2Vj", minRun: 16 + 100},
	{kind: RedactAWSSessionToken, anchor: "FwoGZXIvYXdzE", minRun: 13 + 100},
}

// find returns the first secret of the pattern in b at or after i: the
// span of the whole match and of the value to overwrite; ok is false when
// there is none. lower is b lower-cased (ASCII only, same length).
func (p *valuePattern) find(b, lower []byte, i int) (start, end, vs, ve int, ok bool) {
	hay := b
	if p.fold {
		hay = lower
	}
	for {
		k := bytes.Index(hay[i:], []byte(p.anchor))
		if k < 0 {
			return 0, 0, 0, 0, false
		}
		at := i + k
		i = at + 1
		if !p.setting {
			n := len(p.anchor)
			for at+n < len(b) && n < maxSecretValue && p.alphabet(b[at+n]) {
				n++
			}
			if n >= p.minRun {
				return at, at + n, at, at + n, true
			}
			continue
		}
		start = at - 1
		if start >= 0 && (lower[start] == '_' || lower[start] == '-') {
			start--
		}
		matched := false
		for _, w := range p.before {
			if start+1 >= len(w) && string(lower[start+1-len(w):start+1]) == w {
				start, matched = start+1-len(w), true
				break
			}
		}
		if !matched {
			continue
		}
		r := at + len(p.anchor)
		if p.after != "" {
			if r < len(b) && (lower[r] == '_' || lower[r] == '-') {
				r++
			}
			if !bytes.HasPrefix(lower[r:], []byte(p.after)) {
				continue
			}
			r += len(p.after)
		}
		v, ok := settingSeparator(b, r)
		if !ok {
			continue
		}
		e := v
		for e < len(b) && e-v < maxSecretValue && base64Byte(b[e]) {
			e++
		}
		if e-v < minSettingValue {
			continue
		}
		return start, e, v, e, true
	}
}

// alphabet reports whether c may continue a shape.
func (p *valuePattern) alphabet(c byte) bool {
	if p.base64url {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	return base64Byte(c)
}

// settingSeparator returns where a setting's value starts after its name
// ends at r: `["']?[ \t]*[:=][ \t]*["']?` or `["']?[ \t]+["']?`.
func settingSeparator(b []byte, r int) (int, bool) {
	quote := func(k int) bool { return k < len(b) && (b[k] == '"' || b[k] == '\'') }
	blanks := func(k int) int {
		for k < len(b) && (b[k] == ' ' || b[k] == '\t') {
			k++
		}
		return k
	}
	k := r
	if quote(k) {
		k++
	}
	afterBlanks := blanks(k)
	if afterBlanks < len(b) && (b[afterBlanks] == ':' || b[afterBlanks] == '=') {
		k = blanks(afterBlanks + 1)
	} else if afterBlanks == k {
		return 0, false
	} else {
		k = afterBlanks
	}
	if quote(k) {
		k++
	}
	return k, true
}

// asciiLower returns b with A-Z lower-cased, keeping every other byte, so
// offsets match b's.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for k, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[k] = c
	}
	return out
}

// pemBeginRE finds the start of a PEM private key block.
var pemBeginRE = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----`)

// pemEnd starts the line that ends a PEM block.
var pemEnd = []byte("-----END")

// redactWindow is the longest match any pattern can make: a chunk's last
// redactWindow bytes wait for the next chunk before they are decided.
const redactWindow = 8 << 10

// redactChunk is how much a redacting reader reads at a time.
const redactChunk = 256 << 10

// redactor implements bundle.Redactor for host-collect.
type redactor struct{}

// Policy implements bundle.Redactor.
func (redactor) Policy() string { return RedactionPolicy }

// Redact implements bundle.Redactor.
func (redactor) Redact(b []byte) map[string]int64 {
	var st redactState
	st.process(b, true)
	return st.counts
}

// Reader implements bundle.Redactor.
func (redactor) Reader(r io.Reader) (io.Reader, func() map[string]int64) {
	rr := &redactingReader{src: r}
	return rr, func() map[string]int64 { return rr.st.counts }
}

// RedactText overwrites the secrets in b, keeping its length, and returns
// what it replaced by kind.
func RedactText(b []byte) map[string]int64 { return redactor{}.Redact(b) }

// redactEnvVariable overwrites the value of a NAME=value environment entry
// whose name is in secretEnvKinds, and returns the name when it did. A
// value already overwritten (all '*', as the agent leaves its own) is left.
func redactEnvVariable(v string) (string, string) {
	name, value, ok := strings.Cut(v, "=")
	kind := secretEnvKinds[name]
	if !ok || kind == "" || strings.Trim(value, "*") == "" {
		return v, ""
	}
	b := []byte(value)
	fillLabelled(b, kind)
	return name + "=" + string(b), name
}

// redactState carries redaction across the chunks of one stream.
type redactState struct {
	counts map[string]int64
	// inKey is set inside the body of a private key block; keyBytes
	// counts the bytes of it overwritten so far.
	inKey    bool
	keyBytes int64
}

func (st *redactState) count(kind string) {
	if st.counts == nil {
		st.counts = map[string]int64{}
	}
	st.counts[kind]++
}

// process overwrites the secrets in b and returns how many leading bytes
// are decided. When final is false, b is not the end of the input: a match
// could still run past b, so only what lies before the last redactWindow
// bytes is decided, and the caller passes the rest again with more input.
// Bytes past the returned length are left as they were.
func (st *redactState) process(b []byte, final bool) int {
	limit := len(b)
	if !final {
		limit = len(b) - redactWindow
		if limit <= 0 && !st.inKey {
			return 0
		}
	}
	active, pem := activePatterns(b)
	var lower []byte
	for _, p := range active {
		if p.fold {
			lower = asciiLower(b)
			break
		}
	}
	if lower == nil && len(active) > 0 {
		lower = b
	}
	next := make([]nextMatch, len(active))
	i := 0
	for {
		if st.inKey {
			j := pemBodyEnd(b[i:])
			if j < 0 {
				if final {
					st.fillKey(b[i:])
					st.endKey()
					return len(b)
				}
				// Keep enough to see an END marker cut by the chunk.
				keep := len(b) - len(pemEnd)
				if keep <= i {
					return i
				}
				st.fillKey(b[i:keep])
				return keep
			}
			st.fillKey(b[i : i+j])
			st.endKey()
			i += j
			continue
		}
		if i >= limit {
			return max(i, limit)
		}
		// The earliest match of any pattern from i. A pattern's next match
		// is remembered while it lies ahead of i: the search never goes
		// over the same bytes twice for one pattern.
		start, end, vs, ve, kind := -1, 0, 0, 0, ""
		for k := range active {
			m := &next[k]
			if !m.searched || m.ok && m.start < i {
				m.start, m.end, m.vs, m.ve, m.ok = active[k].find(b, lower, i)
				m.searched = true
			}
			if m.ok && (start < 0 || m.start < start) {
				start, end, vs, ve, kind = m.start, m.end, m.vs, m.ve, active[k].kind
			}
		}
		if pem {
			if loc := pemBeginRE.FindIndex(b[i:]); loc != nil && (start < 0 || i+loc[0] < start) {
				start, end, kind = i+loc[0], i+loc[1], RedactPrivateKey
			}
		}
		if start < 0 || start >= limit {
			return limit
		}
		if kind == RedactPrivateKey {
			st.inKey, st.keyBytes = true, 0
		} else {
			fillLabelled(b[vs:ve], kind)
			st.count(kind)
		}
		i = end
	}
}

// activePatterns returns the patterns worth trying on b, and whether a
// private key block may be in it: a pattern whose anchor b lacks cannot
// match, and most input has none.
func activePatterns(b []byte) ([]valuePattern, bool) {
	var out []valuePattern
	for _, p := range valuePatterns {
		if p.fold && containsFold(b, p.anchor) || !p.fold && bytes.Contains(b, []byte(p.anchor)) {
			out = append(out, p)
		}
	}
	return out, bytes.Contains(b, []byte("PRIVATE KEY"))
}

// containsFold reports whether b holds the lower-case ASCII word w in any
// case.
func containsFold(b []byte, w string) bool {
	upper := strings.ToUpper(w)
	for k := 0; k+len(w) <= len(b); k++ {
		c := b[k]
		if c != w[0] && c != upper[0] {
			continue
		}
		j := 1
		for j < len(w) && (b[k+j] == w[j] || b[k+j] == upper[j]) {
			j++
		}
		if j == len(w) {
			return true
		}
	}
	return false
}

// nextMatch is a pattern's next match as last searched from from.
type nextMatch struct {
	searched, ok       bool
	start, end, vs, ve int
}

// fillKey overwrites a stretch of a private key body with '*', keeping
// line breaks.
func (st *redactState) fillKey(b []byte) {
	for k, c := range b {
		if c != '\n' && c != '\r' && c != '*' {
			b[k] = '*'
			st.keyBytes++
		}
	}
}

// endKey ends a private key body, counting it when anything in it was
// overwritten.
func (st *redactState) endKey() {
	if st.keyBytes > 0 {
		st.count(RedactPrivateKey)
	}
	st.inKey, st.keyBytes = false, 0
}

// pemBodyEnd returns where the body of a PEM block at the start of b ends:
// at its END marker, or at the first byte that cannot be part of a PEM body
// (such as the quote closing a JSON string); -1 when b ends first.
func pemBodyEnd(b []byte) int {
	for k, c := range b {
		if c == '-' && bytes.HasPrefix(b[k:], pemEnd) {
			return k
		}
		if !pemBodyByte(c) {
			return k
		}
	}
	return -1
}

// pemBodyByte reports whether c may appear in a PEM body: base64, line
// breaks (raw or escaped as \n), and the "Proc-Type: 4,ENCRYPTED" and
// "DEK-Info: AES-128-CBC,…" headers of encrypted keys.
func pemBodyByte(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("+/=\n\r \t:,-\\*", c) >= 0
}

// base64Byte reports whether c is in the standard base64 alphabet.
func base64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// fillLabelled overwrites b with "[REDACTED:kind]" followed by '*', or with
// '*' alone when b is shorter than the label.
func fillLabelled(b []byte, kind string) {
	label := "[REDACTED:" + kind + "]"
	n := 0
	if len(b) >= len(label) {
		n = copy(b, label)
	}
	for k := n; k < len(b); k++ {
		b[k] = '*'
	}
}

// redactingReader redacts a stream: it reads redactChunk bytes at a time
// and returns only bytes that are decided.
type redactingReader struct {
	src   io.Reader
	st    redactState
	buf   []byte
	ready int
	eof   bool
	err   error
}

// Read implements io.Reader.
func (r *redactingReader) Read(p []byte) (int, error) {
	for r.ready == 0 {
		if r.eof {
			if r.err != nil {
				return 0, r.err
			}
			return 0, io.EOF
		}
		if r.buf == nil {
			r.buf = make([]byte, 0, redactChunk+redactWindow)
		}
		for !r.eof && len(r.buf) < cap(r.buf) {
			n, err := r.src.Read(r.buf[len(r.buf):cap(r.buf)])
			r.buf = r.buf[:len(r.buf)+n]
			if err != nil {
				r.eof = true
				if err != io.EOF {
					r.err = err
				}
			}
		}
		r.ready = r.st.process(r.buf, r.eof)
		if r.eof {
			r.ready = len(r.buf)
		}
	}
	n := copy(p, r.buf[:r.ready])
	r.ready -= n
	rest := copy(r.buf, r.buf[n:])
	r.buf = r.buf[:rest]
	return n, nil
}
