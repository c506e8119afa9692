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

// secretSeparator is what may stand between a setting's name and its value:
// "=", ":" with optional quotes and blanks (env, INI, YAML, JSON), or blanks
// alone (a command line such as `aws configure set NAME VALUE`).
const secretSeparator = `(?:["']?[ \t]*[:=][ \t]*["']?|["']?[ \t]+["']?)`

// valuePattern is one way a secret value is recognised: re matches it, and
// its first group, if it has one, is the value (else the whole match).
// trigger is a literal the input must hold for re to be tried; fold makes
// that test ignore case.
type valuePattern struct {
	kind    string
	re      *regexp.Regexp
	trigger []byte
	fold    bool
	// extend carries the value on over base64 characters past what re
	// can count (a regexp repeats at most 1000 times), up to maxSecretValue.
	extend bool
}

// maxSecretValue bounds a secret value; AWS session tokens run to a few
// thousand characters.
const maxSecretValue = 4096

var valuePatterns = []valuePattern{
	{RedactJoinToken, regexp.MustCompile(`fbj_[A-Za-z0-9_-]{32,256}`), []byte("fbj_"), false, false},
	{RedactAWSSecretKey, regexp.MustCompile(`(?i)(?:aws[-_]?)?secret[-_]?access[-_]?key` + secretSeparator + `([A-Za-z0-9/+=]{16,1000})`), []byte("ccess"), true, true},
	{RedactAWSSessionToken, regexp.MustCompile(`(?i)(?:aws[-_]?)?(?:session|security)[-_]?token` + secretSeparator + `([A-Za-z0-9/+=]{16,1000})`), []byte("oken"), true, true},
	{RedactAWSSessionToken, regexp.MustCompile(`IQoJb3JpZ2luX2Vj[A-Za-z0-9/+=]{100,1000}`), []byte("IQoJb3JpZ2luX2Vj"), false, true},
	{RedactAWSSessionToken, regexp.MustCompile(`FwoGZXIvYXdzE[A-Za-z0-9/+=]{100,1000}`), []byte("FwoGZXIvYXdzE"), false, true},
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
		// The earliest match of any pattern from i.
		start, end, vs, ve, kind := -1, 0, 0, 0, ""
		for _, p := range active {
			loc := p.re.FindSubmatchIndex(b[i:])
			if loc == nil || (start >= 0 && i+loc[0] >= start) {
				continue
			}
			start, end, vs, ve, kind = i+loc[0], i+loc[1], i+loc[0], i+loc[1], p.kind
			if len(loc) >= 4 && loc[2] >= 0 {
				vs, ve = i+loc[2], i+loc[3]
			}
			if p.extend {
				for ve < len(b) && ve-vs < maxSecretValue && base64Byte(b[ve]) {
					ve++
				}
				end = max(end, ve)
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
// private key block may be in it: a pattern whose trigger b lacks cannot
// match, and most input has none.
func activePatterns(b []byte) ([]valuePattern, bool) {
	var lower []byte
	var out []valuePattern
	for _, p := range valuePatterns {
		hay := b
		if p.fold {
			if lower == nil {
				lower = bytes.ToLower(b)
			}
			hay = lower
		}
		if bytes.Contains(hay, p.trigger) {
			out = append(out, p)
		}
	}
	return out, bytes.Contains(b, []byte("PRIVATE KEY"))
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
