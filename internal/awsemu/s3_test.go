package awsemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func labBucket(member int) string { return "lab-public-assets-" + LabAccountID(member) }

func pathStyle(o *s3.Options) { o.UsePathStyle = true }

func TestS3BucketControls(t *testing.T) {
	l := newLab(t, 4)
	c := s3.NewFromConfig(l.assumeResponder(t, 2), pathStyle)
	b := aws.String(labBucket(2))

	// With an IP address as endpoint the SDK falls back to path style by
	// itself; UsePathStyle is needed only for host names.
	_, err := s3.NewFromConfig(l.assumeResponder(t, 2)).GetBucketLocation(ctx(t), &s3.GetBucketLocationInput{Bucket: b})
	ok(t, err)

	list, err := c.ListBuckets(ctx(t), &s3.ListBucketsInput{})
	ok(t, err)
	if len(list.Buckets) != 1 || aws.ToString(list.Buckets[0].Name) != labBucket(2) {
		t.Fatalf("buckets %+v", list.Buckets)
	}
	loc, err := c.GetBucketLocation(ctx(t), &s3.GetBucketLocationInput{Bucket: b})
	ok(t, err)
	if loc.LocationConstraint != "" {
		t.Fatalf("location %q, want the empty us-east-1 constraint", loc.LocationConstraint)
	}
	pol, err := c.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: b})
	ok(t, err)
	prior := aws.ToString(pol.Policy)
	if !strings.Contains(prior, `"Principal":"*"`) {
		t.Fatalf("policy %s", prior)
	}
	st, err := c.GetBucketPolicyStatus(ctx(t), &s3.GetBucketPolicyStatusInput{Bucket: b})
	ok(t, err)
	if !aws.ToBool(st.PolicyStatus.IsPublic) {
		t.Fatal("public policy not reported public")
	}
	acl, err := c.GetBucketAcl(ctx(t), &s3.GetBucketAclInput{Bucket: b})
	ok(t, err)
	public := false
	for _, g := range acl.Grants {
		if g.Grantee.Type == s3types.TypeGroup && aws.ToString(g.Grantee.URI) == groupAllUsers && g.Permission == s3types.PermissionRead {
			public = true
		}
	}
	if !public {
		t.Fatalf("ACL grants %+v", acl.Grants)
	}
	_, err = c.GetPublicAccessBlock(ctx(t), &s3.GetPublicAccessBlockInput{Bucket: b})
	wantCode(t, err, "NoSuchPublicAccessBlockConfiguration")

	// Contain: block public access, keeping the prior policy to restore.
	all := &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(true), IgnorePublicAcls: aws.Bool(true),
		BlockPublicPolicy: aws.Bool(true), RestrictPublicBuckets: aws.Bool(true)}
	_, err = c.PutPublicAccessBlock(ctx(t), &s3.PutPublicAccessBlockInput{Bucket: b, PublicAccessBlockConfiguration: all})
	ok(t, err)
	pab, err := c.GetPublicAccessBlock(ctx(t), &s3.GetPublicAccessBlockInput{Bucket: b})
	ok(t, err)
	if !aws.ToBool(pab.PublicAccessBlockConfiguration.BlockPublicPolicy) {
		t.Fatalf("PAB %+v", pab.PublicAccessBlockConfiguration)
	}
	_, err = c.PutBucketPolicy(ctx(t), &s3.PutBucketPolicyInput{Bucket: b, Policy: aws.String(prior)})
	wantCode(t, err, "AccessDenied")
	_, err = c.PutBucketAcl(ctx(t), &s3.PutBucketAclInput{Bucket: b, ACL: s3types.BucketCannedACLPublicRead})
	wantCode(t, err, "AccessDenied")
	_, err = c.DeleteBucketPolicy(ctx(t), &s3.DeleteBucketPolicyInput{Bucket: b})
	ok(t, err)
	_, err = c.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: b})
	wantCode(t, err, "NoSuchBucketPolicy")
	_, err = c.GetBucketPolicyStatus(ctx(t), &s3.GetBucketPolicyStatusInput{Bucket: b})
	wantCode(t, err, "NoSuchBucketPolicy")
	_, err = c.PutBucketAcl(ctx(t), &s3.PutBucketAclInput{Bucket: b, ACL: s3types.BucketCannedACLPrivate})
	ok(t, err)

	// Roll back.
	_, err = c.DeletePublicAccessBlock(ctx(t), &s3.DeletePublicAccessBlockInput{Bucket: b})
	ok(t, err)
	_, err = c.PutBucketPolicy(ctx(t), &s3.PutBucketPolicyInput{Bucket: b, Policy: aws.String(prior)})
	ok(t, err)
	pol, err = c.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: b})
	ok(t, err)
	if aws.ToString(pol.Policy) != prior {
		t.Fatalf("restored policy %s", aws.ToString(pol.Policy))
	}

	tests := []struct {
		name string
		run  func() error
		code string
	}{
		{"missing bucket", func() error {
			_, err := c.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: aws.String("no-such-bucket-here")})
			return err
		}, "NoSuchBucket"},
		{"another account's bucket", func() error {
			_, err := c.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: aws.String(labBucket(3))})
			return err
		}, "AccessDenied"},
		{"malformed policy", func() error {
			_, err := c.PutBucketPolicy(ctx(t), &s3.PutBucketPolicyInput{Bucket: b, Policy: aws.String("not json")})
			return err
		}, "MalformedPolicy"},
		{"policy for another bucket", func() error {
			_, err := c.PutBucketPolicy(ctx(t), &s3.PutBucketPolicyInput{Bucket: b, Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other"}]}`)})
			return err
		}, "MalformedPolicy"},
		{"wrong region", func() error {
			west := s3.NewFromConfig(l.assumeResponder(t, 2), pathStyle, func(o *s3.Options) { o.Region = "us-west-2" })
			_, err := west.GetBucketPolicy(ctx(t), &s3.GetBucketPolicyInput{Bucket: b})
			return err
		}, "AuthorizationHeaderMalformed"},
		{"no permission", func() error {
			_, err := s3.NewFromConfig(l.assumeWorker(t), pathStyle).ListBuckets(ctx(t), &s3.ListBucketsInput{})
			return err
		}, "AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.run(), tt.code) })
	}
}

// TestS3VirtualHostAndTLS sends virtual-hosted requests over TLS.
func TestS3VirtualHostAndTLS(t *testing.T) {
	l := newLabFrom(t, LabSeed(3), true)
	var mu sync.Mutex
	seen := map[string]string{}
	inner := l.srv.Config.Handler
	l.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.RawQuery] = r.Host + " " + r.Header.Get("X-Amz-Content-Sha256")
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	cfg := l.assumeResponder(t, 2)
	addr := l.srv.Listener.Addr().String()
	base := l.srv.Client().Transport.(*http.Transport).Clone()
	base.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	_, port, _ := net.SplitHostPort(addr)
	cfg.BaseEndpoint = aws.String("https://example.com:" + port)
	cfg.HTTPClient = &http.Client{Transport: base}
	c := s3.NewFromConfig(cfg)
	b := aws.String(labBucket(2))
	_, err := c.PutPublicAccessBlock(ctx(t), &s3.PutPublicAccessBlockInput{Bucket: b, PublicAccessBlockConfiguration: &s3types.PublicAccessBlockConfiguration{
		BlockPublicAcls: aws.Bool(true), BlockPublicPolicy: aws.Bool(true)}})
	ok(t, err)
	pab, err := c.GetPublicAccessBlock(ctx(t), &s3.GetPublicAccessBlockInput{Bucket: b})
	ok(t, err)
	if !aws.ToBool(pab.PublicAccessBlockConfiguration.BlockPublicAcls) || aws.ToBool(pab.PublicAccessBlockConfiguration.IgnorePublicAcls) {
		t.Fatalf("PAB %+v", pab.PublicAccessBlockConfiguration)
	}
	mu.Lock()
	defer mu.Unlock()
	put := seen["PUT publicAccessBlock="]
	if !strings.HasPrefix(put, labBucket(2)+".example.com:") {
		t.Fatalf("PutPublicAccessBlock arrived as %q, want a virtual-hosted request", put)
	}
}

// TestS3StreamingPayloads sends the payload forms the SDK uses for S3 beyond
// a plain hash: UNSIGNED-PAYLOAD, unsigned aws-chunked with a trailing
// checksum, and signed chunks.
func TestS3StreamingPayloads(t *testing.T) {
	l := newLab(t, 3)
	key := labKey("ci/" + LabAccountID(2))
	doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::%s/*"}]}`, labBucket(2))
	endpoint := l.srv.URL + "/" + labBucket(2) + "?policy="
	sum := crc32.ChecksumIEEE([]byte(doc))
	crc := base64.StdEncoding.EncodeToString([]byte{byte(sum >> 24), byte(sum >> 16), byte(sum >> 8), byte(sum)})
	now := time.Now().UTC()
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}

	tests := []struct {
		name    string
		hash    string
		body    func(seed string) []byte
		code    int
		trailer bool
	}{
		{"unsigned payload", unsignedPayload, func(string) []byte { return []byte(doc) }, http.StatusNoContent, false},
		{"unsigned chunks with a trailing checksum", streamingUnsignedTail, func(string) []byte {
			return []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n", len(doc), doc, crc))
		}, http.StatusNoContent, true},
		{"unsigned chunks with a wrong checksum", streamingUnsignedTail, func(string) []byte {
			return []byte(fmt.Sprintf("%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", len(doc), doc))
		}, http.StatusBadRequest, true},
		{"signed chunks", streamingSigned, func(seed string) []byte {
			return signedChunks(key.Secret, now, seed, [][]byte{[]byte(doc[:40]), []byte(doc[40:]), nil}, false)
		}, http.StatusNoContent, false},
		{"signed chunks, one forged", streamingSigned, func(seed string) []byte {
			return signedChunks(key.Secret, now, seed, [][]byte{[]byte(doc[:40]), []byte(doc[40:]), nil}, true)
		}, http.StatusForbidden, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Sign the headers first to learn the seed signature, then build
			// the body chained from it.
			req, _ := http.NewRequest(http.MethodPut, endpoint, nil)
			req.Header.Set("X-Amz-Content-Sha256", tt.hash)
			if tt.hash != unsignedPayload {
				req.Header.Set("Content-Encoding", "aws-chunked")
				req.Header.Set("X-Amz-Decoded-Content-Length", fmt.Sprint(len(doc)))
			}
			if tt.trailer {
				req.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
			}
			ok(t, signer.SignHTTP(ctx(t), creds, req, tt.hash, "s3", "us-east-1", now))
			seed := req.Header.Get("Authorization")[strings.LastIndex(req.Header.Get("Authorization"), "=")+1:]
			body := tt.body(seed)
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
			resp, err := l.srv.Client().Do(req)
			ok(t, err)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
		})
	}
}

// signedChunks builds an aws-chunked body whose chunks carry chained
// signatures; forge corrupts the second one.
func signedChunks(secret string, at time.Time, seed string, chunks [][]byte, forge bool) []byte {
	key := signingKey(secret, at.Format(sigDateFormat), "us-east-1", "s3")
	scope := at.Format(sigDateFormat) + "/us-east-1/s3/aws4_request"
	var b bytes.Buffer
	prev := seed
	for i, c := range chunks {
		h := sha256.Sum256(c)
		sts := "AWS4-HMAC-SHA256-PAYLOAD\n" + at.Format(sigTimeFormat) + "\n" + scope + "\n" + prev + "\n" + emptySHA256 + "\n" + hex.EncodeToString(h[:])
		sig := hex.EncodeToString(hmacSHA256(key, []byte(sts)))
		prev = sig
		if forge && i == 1 {
			sig = strings.Repeat("0", len(sig))
		}
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n%s\r\n", len(c), sig, c)
	}
	return b.Bytes()
}

func TestPresignedRequest(t *testing.T) {
	l := newLab(t, 3)
	key := labKey("controller/" + LabAccountID(1))
	req, _ := http.NewRequest(http.MethodGet, l.srv.URL+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	q := req.URL.Query()
	q.Set("X-Amz-Expires", "60")
	req.URL.RawQuery = q.Encode()
	signed, hdr, err := v4.NewSigner().PresignHTTP(ctx(t), aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, req, emptySHA256, "sts", "us-east-1", time.Now())
	ok(t, err)
	u, _ := url.Parse(signed)
	out, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	for k, v := range hdr {
		if !strings.EqualFold(k, "host") {
			out.Header[k] = v
		}
	}
	resp, err := l.srv.Client().Do(out)
	ok(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned GetCallerIdentity: status %d", resp.StatusCode)
	}
}
