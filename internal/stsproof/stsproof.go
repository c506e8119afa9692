// Package stsproof is the signed sts:GetCallerIdentity request by which an
// API worker proves its AWS identity without handing over its credentials:
// the worker signs the request (Sign) and sends it to the controller, which
// checks that it is exactly a GetCallerIdentity to an STS endpoint, naming
// this controller and freshly signed (Check), then sends it to STS itself
// (Execute) and so learns the caller's ARN from AWS.
package stsproof

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// ServerIDHeader names the controller the request is for. It is among the
// signed headers, so a request made for one controller cannot be replayed
// to another service.
const ServerIDHeader = "X-Firebreak-Server-Id"

// Body is the only body accepted: the GetCallerIdentity action and nothing
// else.
const Body = "Action=GetCallerIdentity&Version=2011-06-15"

// MaxAge is how old a signature may be when the controller checks it.
const MaxAge = 5 * time.Minute

// Request is a signed HTTP request as the worker sends it.
type Request struct {
	Method  string
	URL     string
	Headers http.Header
	Body    []byte
}

// Endpoint is the regional STS endpoint of the aws partition.
func Endpoint(region string) string { return "https://sts." + region + ".amazonaws.com/" }

// Sign builds and signs a GetCallerIdentity request to endpoint (an STS
// URL; Endpoint(region) for AWS) with creds, naming serverID.
func Sign(ctx context.Context, creds aws.CredentialsProvider, endpoint, region, serverID string, now time.Time) (*Request, error) {
	if serverID == "" {
		return nil, errors.New("stsproof: the controller's server id is empty")
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("stsproof: retrieve the worker's AWS credentials: %w", err)
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(Body))
	if err != nil {
		return nil, fmt.Errorf("stsproof: the STS endpoint %q is not a URL: %w", endpoint, err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	r.Header.Set(ServerIDHeader, serverID)
	sum := sha256.Sum256([]byte(Body))
	if err := v4.NewSigner().SignHTTP(ctx, c, r, hex.EncodeToString(sum[:]), "sts", region, now.UTC()); err != nil {
		return nil, fmt.Errorf("stsproof: sign: %w", err)
	}
	h := r.Header.Clone()
	h.Set("Host", r.URL.Host)
	return &Request{Method: r.Method, URL: r.URL.String(), Headers: h, Body: []byte(Body)}, nil
}

// CheckConfig says what a request must look like.
type CheckConfig struct {
	// ServerID is this controller's id.
	ServerID string
	// Partition is the AWS partition allowed: aws (default), aws-cn or
	// aws-us-gov.
	Partition string
	// Endpoint, when set, is the one STS endpoint allowed instead of the
	// partition's (an emulator or a VPC endpoint), as scheme://host[:port].
	Endpoint string
	// Now is the controller's clock.
	Now time.Time
}

var partitionHosts = map[string]*regexp.Regexp{
	"aws":        regexp.MustCompile(`^sts(\.[a-z]{2}(-[a-z]+)+-[0-9])?\.amazonaws\.com$`),
	"aws-cn":     regexp.MustCompile(`^sts\.cn-[a-z]+-[0-9]\.amazonaws\.com\.cn$`),
	"aws-us-gov": regexp.MustCompile(`^sts\.us-gov-[a-z]+-[0-9]\.amazonaws\.com$`),
}

// Limits on what the controller reads.
const (
	maxHeaders     = 32
	maxHeaderBytes = 8 << 10
)

// Check refuses anything but a GetCallerIdentity, signed within MaxAge,
// for this controller, to an STS endpoint of the allowed partition. It
// returns the URL to send it to.
func Check(req *Request, cfg CheckConfig) (*url.URL, error) {
	if req == nil {
		return nil, errors.New("no signed request was sent")
	}
	if req.Method != http.MethodPost {
		return nil, fmt.Errorf("the signed request's method is %q; only POST is accepted", req.Method)
	}
	u, err := url.Parse(req.URL)
	if err != nil {
		return nil, fmt.Errorf("the signed request's URL does not parse: %w", err)
	}
	// Security-critical: the controller sends this request with its own
	// network position, so it may only ever go to STS.
	if cfg.Endpoint != "" {
		want, err := url.Parse(cfg.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("the configured STS endpoint does not parse: %w", err)
		}
		if u.Scheme != want.Scheme || u.Host != want.Host {
			return nil, fmt.Errorf("the signed request goes to %s://%s, not to the STS endpoint %s://%s", u.Scheme, u.Host, want.Scheme, want.Host)
		}
	} else {
		partition := cfg.Partition
		if partition == "" {
			partition = "aws"
		}
		re := partitionHosts[partition]
		if re == nil {
			return nil, fmt.Errorf("partition %q is not known (aws, aws-cn, aws-us-gov)", partition)
		}
		if u.Scheme != "https" || u.Port() != "" || !re.MatchString(u.Hostname()) {
			return nil, fmt.Errorf("the signed request goes to %s, which is not an STS endpoint of the %s partition", u.Redacted(), partition)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, errors.New("the signed request's URL carries a path, query or user; GetCallerIdentity is sent to / with a form body")
	}
	// Security-critical: the body is the whole action; anything else in
	// it could be another STS action riding on the signature.
	if !bytes.Equal(req.Body, []byte(Body)) {
		form, err := url.ParseQuery(string(req.Body))
		if err == nil && form.Get("Action") != "" && form.Get("Action") != "GetCallerIdentity" {
			return nil, fmt.Errorf("the signed request is sts:%s, not sts:GetCallerIdentity", form.Get("Action"))
		}
		return nil, fmt.Errorf("the signed request's body is not exactly %q: nothing but GetCallerIdentity is accepted", Body)
	}
	if len(req.Headers) > maxHeaders {
		return nil, fmt.Errorf("the signed request has %d headers; the limit is %d", len(req.Headers), maxHeaders)
	}
	size := 0
	for k, vs := range req.Headers {
		if len(vs) != 1 {
			return nil, fmt.Errorf("the signed request's header %s appears %d times", k, len(vs))
		}
		size += len(k) + len(vs[0])
	}
	if size > maxHeaderBytes {
		return nil, errors.New("the signed request's headers are too large")
	}
	if h := req.Headers.Get("Host"); h != "" && h != u.Host {
		return nil, fmt.Errorf("the signed request's Host header %q is not its URL's host %q", h, u.Host)
	}
	signed, err := signedHeaders(req.Headers.Get("Authorization"))
	if err != nil {
		return nil, err
	}
	for _, must := range []string{"host", "x-amz-date", strings.ToLower(ServerIDHeader)} {
		if !slices.Contains(signed, must) {
			return nil, fmt.Errorf("the signature does not cover the %s header", must)
		}
	}
	// Security-critical: the server id names this controller, so a
	// request signed for another service is refused here.
	if got := req.Headers.Get(ServerIDHeader); got != cfg.ServerID {
		return nil, fmt.Errorf("the signed request names server %q, not this controller (%q)", got, cfg.ServerID)
	}
	at, err := time.Parse("20060102T150405Z", req.Headers.Get("X-Amz-Date"))
	if err != nil {
		return nil, errors.New("the signed request has no valid X-Amz-Date")
	}
	// Security-critical: a captured request stops working after MaxAge.
	if age := cfg.Now.Sub(at); age > MaxAge {
		return nil, fmt.Errorf("the signature is %s old; the limit is %s (sign a fresh request)", age.Round(time.Second), MaxAge)
	} else if age < -MaxAge {
		return nil, fmt.Errorf("the signature is dated %s in the future; check the worker's clock", (-age).Round(time.Second))
	}
	return u, nil
}

// signedHeaders reads the SignedHeaders of a SigV4 Authorization header.
func signedHeaders(auth string) ([]string, error) {
	alg, rest, ok := strings.Cut(auth, " ")
	if !ok || alg != "AWS4-HMAC-SHA256" {
		return nil, errors.New("the request is not signed with SigV4 (AWS4-HMAC-SHA256)")
	}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if k == "SignedHeaders" {
			return strings.Split(v, ";"), nil
		}
	}
	return nil, errors.New("the SigV4 Authorization header has no SignedHeaders")
}

// Identity is what STS says about the caller.
type Identity struct {
	Account string
	Arn     string
	UserID  string
}

// Execute sends a checked request to u and returns the caller's identity.
// client should not follow redirects.
func Execute(ctx context.Context, client *http.Client, u *url.URL, req *Request) (*Identity, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range req.Headers {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") {
			continue
		}
		r.Header[http.CanonicalHeaderKey(k)] = vs
	}
	resp, err := client.Do(r)
	if err != nil {
		return nil, fmt.Errorf("send the signed request to STS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read STS's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    string `xml:"Code"`
				Message string `xml:"Message"`
			} `xml:"Error"`
		}
		if xml.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("STS refused the signed request: %s: %s", e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("STS answered HTTP %d", resp.StatusCode)
	}
	var out struct {
		Result struct {
			Arn     string `xml:"Arn"`
			UserID  string `xml:"UserId"`
			Account string `xml:"Account"`
		} `xml:"GetCallerIdentityResult"`
	}
	if err := xml.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("STS's answer is not a GetCallerIdentity response: %w", err)
	}
	if out.Result.Arn == "" || out.Result.Account == "" {
		return nil, errors.New("STS's answer names no caller")
	}
	return &Identity{Account: out.Result.Account, Arn: out.Result.Arn, UserID: out.Result.UserID}, nil
}

// ServerIDFor is the default server id of a controller: the SHA-256 of its
// CA certificate (DER) in hex. Every controller of a cluster shares the CA,
// an agent pins it at enrollment, and another deployment's CA differs, so
// neither side needs it configured.
func ServerIDFor(caDER []byte) string {
	sum := sha256.Sum256(caDER)
	return hex.EncodeToString(sum[:])
}
