package awsemu

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	sigAlgorithm          = "AWS4-HMAC-SHA256"
	sigTimeFormat         = "20060102T150405Z"
	sigDateFormat         = "20060102"
	emptySHA256           = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	unsignedPayload       = "UNSIGNED-PAYLOAD"
	streamingSigned       = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	streamingSignedTrail  = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	streamingUnsignedTail = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

// signature is the SigV4 authentication a request carries, either in its
// Authorization header or, presigned, in its query string.
type signature struct {
	AccessKeyID   string
	Date          string // the scope's yyyymmdd
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
	Time          time.Time
	SecurityToken string
	Presigned     bool
	Expires       time.Duration
}

// scope is the credential scope the signature was made for.
func (s *signature) scope() string {
	return s.Date + "/" + s.Region + "/" + s.Service + "/aws4_request"
}

// errNoSignature means the request carries no SigV4 authentication at all.
var errNoSignature = errors.New("request is not signed")

// signatureError is a malformed or mismatching signature; the text goes into
// the service's SignatureDoesNotMatch (or equivalent) message.
type signatureError struct{ msg string }

func (e *signatureError) Error() string { return e.msg }

// parseSignature extracts the SigV4 fields of a request without checking
// them.
func parseSignature(r *http.Request) (*signature, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return parseAuthorizationHeader(r, auth)
	}
	q := r.URL.Query()
	if q.Get("X-Amz-Algorithm") != "" || q.Get("X-Amz-Credential") != "" {
		return parsePresigned(r, q)
	}
	return nil, errNoSignature
}

func parseAuthorizationHeader(r *http.Request, auth string) (*signature, error) {
	alg, rest, ok := strings.Cut(strings.TrimSpace(auth), " ")
	if !ok || alg != sigAlgorithm {
		return nil, &signatureError{"Authorization header requires the " + sigAlgorithm + " algorithm."}
	}
	s := &signature{}
	var credential, signed string
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			s.Signature = v
		}
	}
	if credential == "" || signed == "" || s.Signature == "" {
		return nil, &signatureError{"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters."}
	}
	if err := s.setCredential(credential); err != nil {
		return nil, err
	}
	s.SignedHeaders = strings.Split(signed, ";")
	date := r.Header.Get("X-Amz-Date")
	if date == "" {
		date = r.Header.Get("Date")
	}
	t, err := parseSigningTime(date)
	if err != nil {
		return nil, err
	}
	s.Time = t
	s.SecurityToken = r.Header.Get("X-Amz-Security-Token")
	return s, nil
}

func parsePresigned(r *http.Request, q url.Values) (*signature, error) { //nolint:unparam // same signature as parseAuthorization, which reads the request
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return nil, &signatureError{"X-Amz-Algorithm only supports " + sigAlgorithm + "."}
	}
	s := &signature{Presigned: true}
	if err := s.setCredential(q.Get("X-Amz-Credential")); err != nil {
		return nil, err
	}
	s.SignedHeaders = strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
	s.Signature = q.Get("X-Amz-Signature")
	if s.Signature == "" || q.Get("X-Amz-SignedHeaders") == "" {
		return nil, &signatureError{"Query-string authentication requires the X-Amz-Signature, X-Amz-SignedHeaders and X-Amz-Credential parameters."}
	}
	t, err := parseSigningTime(q.Get("X-Amz-Date"))
	if err != nil {
		return nil, err
	}
	s.Time = t
	if e := q.Get("X-Amz-Expires"); e != "" {
		n, err := strconv.Atoi(e)
		if err != nil || n < 1 || n > 604800 {
			return nil, &signatureError{"X-Amz-Expires must be between 1 and 604800 seconds."}
		}
		s.Expires = time.Duration(n) * time.Second
	} else {
		s.Expires = 15 * time.Minute
	}
	s.SecurityToken = q.Get("X-Amz-Security-Token")
	return s, nil
}

func (s *signature) setCredential(credential string) error {
	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return &signatureError{"Credential should be scoped with a valid terminator: 'aws4_request', not '" + credential + "'."}
	}
	s.AccessKeyID, s.Date, s.Region, s.Service = parts[0], parts[1], parts[2], parts[3]
	return nil
}

func parseSigningTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, &signatureError{"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."}
	}
	if t, err := time.Parse(sigTimeFormat, v); err == nil {
		return t, nil
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, &signatureError{"Date must be in ISO-8601 'basic format'. Got '" + v + "'."}
}

// signedPayload is the request body as the service must read it, after
// aws-chunked decoding, with the trailing headers the chunks carried.
type signedPayload struct {
	Body     []byte
	Trailers http.Header
}

// verify recomputes the signature with the secret and compares it with the
// one the request carries. The body is the raw request body; for streaming
// uploads it is decoded and each chunk signature is checked.
//
// Security-critical: this is the only thing standing between a request and
// the principal its access key names.
func (s *signature) verify(r *http.Request, rawBody []byte, secret string, s3Style bool) (*signedPayload, error) {
	if s.Date != s.Time.Format(sigDateFormat) {
		return nil, &signatureError{"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" + s.Date + "' != '" + s.Time.Format(sigDateFormat) + "'"}
	}
	if !slices.Contains(s.SignedHeaders, "host") {
		return nil, &signatureError{"'Host' must be a 'SignedHeader' in the AWS Authorization."}
	}
	if !s.Presigned && r.Header.Get("X-Amz-Date") != "" && !slices.Contains(s.SignedHeaders, "x-amz-date") {
		return nil, &signatureError{"'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."}
	}

	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if s.Presigned {
		if v := r.URL.Query().Get("X-Amz-Content-Sha256"); v != "" {
			payloadHash = v
		} else if payloadHash == "" && s3Style {
			payloadHash = unsignedPayload
		}
	}
	actual := sha256.Sum256(rawBody)
	actualHex := hex.EncodeToString(actual[:])
	switch payloadHash {
	case "":
		payloadHash = actualHex
	case unsignedPayload, streamingSigned, streamingSignedTrail, streamingUnsignedTail:
	default:
		if payloadHash != actualHex {
			return nil, &signatureError{"The provided 'x-amz-content-sha256' header does not match what was computed."}
		}
	}

	canonical := s.canonicalRequest(r, payloadHash, s3Style)
	sum := sha256.Sum256([]byte(canonical))
	stringToSign := sigAlgorithm + "\n" + s.Time.Format(sigTimeFormat) + "\n" + s.scope() + "\n" + hex.EncodeToString(sum[:])
	key := signingKey(secret, s.Date, s.Region, s.Service)
	want := hex.EncodeToString(hmacSHA256(key, []byte(stringToSign)))
	// Security-critical: constant-time comparison of the signature.
	if !hmac.Equal([]byte(want), []byte(s.Signature)) {
		return nil, &signatureError{msgBadSignature}
	}

	switch payloadHash {
	case streamingSigned, streamingSignedTrail:
		return decodeChunked(rawBody, func(prev string, chunk []byte) string {
			h := sha256.Sum256(chunk)
			sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + s.Time.Format(sigTimeFormat) + "\n" + s.scope() + "\n" + prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(h[:])
			return hex.EncodeToString(hmacSHA256(key, []byte(sts)))
		}, func(prev string, trailer []byte) string {
			h := sha256.Sum256(trailer)
			sts := "AWS4-HMAC-SHA256-TRAILER\n" + s.Time.Format(sigTimeFormat) + "\n" + s.scope() + "\n" + prev + "\n" + hex.EncodeToString(h[:])
			return hex.EncodeToString(hmacSHA256(key, []byte(sts)))
		}, s.Signature)
	case streamingUnsignedTail:
		return decodeChunked(rawBody, nil, nil, "")
	}
	return &signedPayload{Body: rawBody}, nil
}

// canonicalRequest builds the SigV4 canonical request from what arrived on
// the wire.
func (s *signature) canonicalRequest(r *http.Request, payloadHash string, s3Style bool) string {
	uri := r.URL.EscapedPath()
	if uri == "" {
		uri = "/"
	}
	if !s3Style {
		// Every service but S3 signs the path escaped a second time.
		uri = escapePath(uri)
	}

	type pair struct{ k, v string }
	var pairs []pair
	query, _ := url.ParseQuery(r.URL.RawQuery)
	for k, vs := range query {
		if s.Presigned && k == "X-Amz-Signature" {
			continue
		}
		ek := encodeQueryComponent(k)
		for _, v := range vs {
			pairs = append(pairs, pair{ek, encodeQueryComponent(v)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var q strings.Builder
	for i, p := range pairs {
		if i > 0 {
			q.WriteByte('&')
		}
		q.WriteString(p.k)
		q.WriteByte('=')
		q.WriteString(p.v)
	}

	var h strings.Builder
	for _, name := range s.SignedHeaders {
		h.WriteString(name)
		h.WriteByte(':')
		switch name {
		case "host":
			h.WriteString(stripExcessSpaces(r.Host))
		case "content-length":
			if v := r.Header.Get("Content-Length"); v != "" {
				h.WriteString(v)
			} else {
				h.WriteString(strconv.FormatInt(r.ContentLength, 10))
			}
		default:
			vals := r.Header.Values(textproto.CanonicalMIMEHeaderKey(name))
			for i, v := range vals {
				if i > 0 {
					h.WriteByte(',')
				}
				h.WriteString(strings.TrimSpace(stripExcessSpaces(v)))
			}
		}
		h.WriteByte('\n')
	}

	return strings.Join([]string{r.Method, uri, q.String(), h.String(), strings.Join(s.SignedHeaders, ";"), payloadHash}, "\n")
}

func signingKey(secret, date, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k, []byte(region))
	k = hmacSHA256(k, []byte(service))
	return hmacSHA256(k, []byte("aws4_request"))
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// escapePath percent-encodes every byte outside the RFC 3986 unreserved set,
// keeping slashes.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if isUnreserved(c) || c == '/' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// encodeQueryComponent percent-encodes a query name or value as SigV4 wants:
// every byte outside the unreserved set, with a space as %20.
func encodeQueryComponent(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func isUnreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func stripExcessSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(s[i])
	}
	return b.String()
}

// decodeChunked decodes an aws-chunked body. When chunkSig is set each chunk
// carries a signature chained from seed, which is checked; trailerSig checks
// the signature of the trailing headers, when the body carries one.
func decodeChunked(raw []byte, chunkSig func(prev string, chunk []byte) string, trailerSig func(prev string, trailer []byte) string, seed string) (*signedPayload, error) {
	br := bufio.NewReader(bytes.NewReader(raw))
	var body bytes.Buffer
	prev := seed
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, &signatureError{"aws-chunked body ends inside a chunk header"}
		}
		line = strings.TrimRight(line, "\r\n")
		sizeHex, ext, _ := strings.Cut(line, ";")
		size, err := strconv.ParseInt(sizeHex, 16, 64)
		if err != nil || size < 0 || size > int64(len(raw)) {
			return nil, &signatureError{"aws-chunked chunk size is malformed"}
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return nil, &signatureError{"aws-chunked chunk is shorter than announced"}
		}
		if chunkSig != nil {
			got, ok := strings.CutPrefix(ext, "chunk-signature=")
			want := chunkSig(prev, chunk)
			// Security-critical: each chunk must carry the chained signature.
			if !ok || !hmac.Equal([]byte(got), []byte(want)) {
				return nil, &signatureError{msgBadSignature}
			}
			prev = want
		}
		if size == 0 {
			break
		}
		body.Write(chunk)
		if crlf, err := br.ReadString('\n'); err != nil || strings.TrimRight(crlf, "\r\n") != "" {
			return nil, &signatureError{"aws-chunked chunk is not terminated by CRLF"}
		}
	}
	out := &signedPayload{Body: body.Bytes(), Trailers: http.Header{}}
	var trailerText strings.Builder
	var trailerSignature string
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(name, "x-amz-trailer-signature") {
			trailerSignature = strings.TrimSpace(value)
		} else if ok {
			out.Trailers.Add(name, strings.TrimSpace(value))
			trailerText.WriteString(name + ":" + strings.TrimSpace(value) + "\n")
		}
		if err != nil {
			break
		}
	}
	if trailerSig != nil && trailerText.Len() > 0 {
		want := trailerSig(prev, []byte(trailerText.String()))
		// Security-critical: signed trailers must carry their signature.
		if !hmac.Equal([]byte(trailerSignature), []byte(want)) {
			return nil, &signatureError{msgBadSignature}
		}
	}
	return out, nil
}
