package evidence_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

const testBucket = "firebreak-evidence"

// fakeS3 starts an S3-protocol server in the process and points the AWS
// SDK's standard environment at it, as an operator would with
// AWS_ENDPOINT_URL. It returns a client for checking what was stored.
func fakeS3(t *testing.T) *s3.Client {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY": "secret", "AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "none"),
		"AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	c, err := evidence.NewS3Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatal(err)
	}
	return c
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "staged")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func hexSum(b []byte) string { return hex.EncodeToString(sum256(b)) }

// TestS3BackendThroughTheSDK stores, reads and re-stores objects through
// the real SDK against an S3-protocol server, single-part and multipart.
func TestS3BackendThroughTheSDK(t *testing.T) {
	client := fakeS3(t)
	ctx := context.Background()
	be, err := evidence.OpenBackend(ctx, "s3://"+testBucket+"/fleet/prod/", evidence.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if be.Kind() != "s3" || be.Describe() != "s3://"+testBucket+"/fleet/prod" {
		t.Fatalf("backend %s %s", be.Kind(), be.Describe())
	}
	small := randomBytes(t, 300<<10)
	st, err := be.Put(ctx, hexSum(small), int64(len(small)), writeTemp(t, small))
	if err != nil {
		t.Fatal(err)
	}
	key := "fleet/prod/sha256/" + hexSum(small)[:2] + "/" + hexSum(small)
	if st.Location != "s3://"+testBucket+"/"+key {
		t.Fatalf("location %s", st.Location)
	}
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if !bytes.Equal(got, small) || obj.Metadata["firebreak-sha256"] != hexSum(small) {
		t.Fatalf("stored object: %d bytes, metadata %v", len(got), obj.Metadata)
	}
	// Storing the same content again is a no-op; a different size under
	// the same sum is refused.
	if _, err := be.Put(ctx, hexSum(small), int64(len(small)), filepath.Join(t.TempDir(), "gone")); err != nil {
		t.Fatalf("idempotent put: %v", err)
	}
	if _, err := be.Put(ctx, hexSum(small), 5, writeTemp(t, small[:5])); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("conflicting put: %v", err)
	}
	if n, err := be.Stat(ctx, hexSum(small)); err != nil || n != int64(len(small)) {
		t.Fatalf("stat %d %v", n, err)
	}
	missing := hexSum([]byte("never stored"))
	if _, err := be.Open(ctx, missing); !errors.Is(err, evidence.ErrObjectNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := be.Stat(ctx, missing); !errors.Is(err, evidence.ErrObjectNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	if _, err := be.Open(ctx, "../../etc/passwd"); err == nil {
		t.Fatal("a path was accepted as a sum")
	}

	// Multipart, with parts small enough for the test.
	mp, err := evidence.OpenS3(ctx, evidence.S3Config{Bucket: testBucket, Prefix: "mp", MultipartThreshold: 1 << 20, PartSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	large := randomBytes(t, 1<<20+100<<10)
	if _, err := mp.Put(ctx, hexSum(large), int64(len(large)), writeTemp(t, large)); err != nil {
		t.Fatal(err)
	}
	rc, err := mp.Open(ctx, hexSum(large))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, large) {
		t.Fatalf("multipart object: %d bytes, want %d", len(got), len(large))
	}
}

// recordingS3 passes calls to a real client and records the inputs that
// carry integrity and protection settings.
type recordingS3 struct {
	evidence.S3Client
	mu    sync.Mutex
	puts  []*s3.PutObjectInput
	mps   []*s3.CreateMultipartUploadInput
	parts []*s3.UploadPartInput
}

func (r *recordingS3) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	r.mu.Lock()
	r.puts = append(r.puts, in)
	r.mu.Unlock()
	return r.S3Client.PutObject(ctx, in, o...)
}

func (r *recordingS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	r.mu.Lock()
	r.mps = append(r.mps, in)
	r.mu.Unlock()
	return r.S3Client.CreateMultipartUpload(ctx, in, o...)
}

func (r *recordingS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	r.mu.Lock()
	r.parts = append(r.parts, in)
	r.mu.Unlock()
	return r.S3Client.UploadPart(ctx, in, o...)
}

// TestS3ProtectionSettings checks what each configuration asks S3 for:
// the object's SHA-256, SSE-KMS and compliance-mode Object Lock.
func TestS3ProtectionSettings(t *testing.T) {
	client := fakeS3(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		retention time.Duration
		kms       string
		multipart bool
	}{
		{"plain", 0, "", false},
		{"retention", 90 * 24 * time.Hour, "", false},
		{"kms", 0, "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"retention and kms, multipart", 7 * 24 * time.Hour, "alias/evidence", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingS3{S3Client: client}
			cfg := evidence.S3Config{Bucket: testBucket, Prefix: "p" + string(rune('a'+i)), Retention: tt.retention, KMSKeyID: tt.kms,
				Client: rec, Clock: func() time.Time { return now }}
			if tt.multipart {
				cfg.MultipartThreshold, cfg.PartSize = 64<<10, 32<<10
			}
			be, err := evidence.OpenS3(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			data := randomBytes(t, 100<<10)
			st, err := be.Put(context.Background(), hexSum(data), int64(len(data)), writeTemp(t, data))
			if err != nil {
				t.Fatal(err)
			}
			wantUntil := time.Time{}
			if tt.retention > 0 {
				wantUntil = now.Add(tt.retention)
			}
			if !st.RetainUntil.Equal(wantUntil) {
				t.Errorf("retain until %s, want %s", st.RetainUntil, wantUntil)
			}
			var sse types.ServerSideEncryption
			var kms *string
			var mode types.ObjectLockMode
			var until *time.Time
			if tt.multipart {
				if len(rec.mps) != 1 || len(rec.parts) != 4 || rec.mps[0].ChecksumAlgorithm != types.ChecksumAlgorithmSha256 {
					t.Fatalf("%d multipart uploads, %d parts", len(rec.mps), len(rec.parts))
				}
				for _, p := range rec.parts {
					if aws.ToString(p.ChecksumSHA256) == "" {
						t.Errorf("part %d without its SHA-256", aws.ToInt32(p.PartNumber))
					}
				}
				in := rec.mps[0]
				sse, kms, mode, until = in.ServerSideEncryption, in.SSEKMSKeyId, in.ObjectLockMode, in.ObjectLockRetainUntilDate
			} else {
				if len(rec.puts) != 1 {
					t.Fatalf("%d puts", len(rec.puts))
				}
				in := rec.puts[0]
				if aws.ToString(in.ChecksumSHA256) != base64.StdEncoding.EncodeToString(sum256(data)) || aws.ToString(in.IfNoneMatch) != "*" {
					t.Errorf("put checksum %q, if-none-match %q", aws.ToString(in.ChecksumSHA256), aws.ToString(in.IfNoneMatch))
				}
				sse, kms, mode, until = in.ServerSideEncryption, in.SSEKMSKeyId, in.ObjectLockMode, in.ObjectLockRetainUntilDate
			}
			if tt.kms != "" && (sse != types.ServerSideEncryptionAwsKms || aws.ToString(kms) != tt.kms) {
				t.Errorf("encryption %q key %q", sse, aws.ToString(kms))
			}
			if tt.kms == "" && (sse != "" || kms != nil) {
				t.Errorf("unasked encryption %q %v", sse, kms)
			}
			if tt.retention > 0 && (mode != types.ObjectLockModeCompliance || until == nil || !until.Equal(wantUntil)) {
				t.Errorf("object lock %q until %v", mode, until)
			}
			if tt.retention == 0 && (mode != "" || until != nil) {
				t.Errorf("unasked object lock %q %v", mode, until)
			}
		})
	}
}

// TestS3EvidenceEndToEnd receives an upload into the S3 backend, then
// replaces the object behind the controller's back and checks that
// verification and download catch it.
func TestS3EvidenceEndToEnd(t *testing.T) {
	client := fakeS3(t)
	be, err := evidence.OpenBackend(context.Background(), "s3://"+testBucket+"/case-7", evidence.BackendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{backend: be})
	data := randomBytes(t, 1<<20+5)
	it := h.store("triage.bin", data)
	if it.Backend != "s3" || !strings.HasPrefix(it.Location, "s3://"+testBucket+"/case-7/sha256/") {
		t.Fatalf("item %+v", it)
	}
	if left, _ := os.ReadDir(h.cfg.StagingDir); len(left) != 0 {
		t.Errorf("staging not cleaned: %v", left)
	}
	got, _, _, err := h.download(it.ID, "")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %v", err)
	}
	res, err := h.verify("")
	if err != nil || len(res) != 1 || res[0].GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
		t.Fatalf("verify %v %v", res, err)
	}
	altered := append([]byte(nil), data...)
	altered[12345] ^= 1
	key := strings.TrimPrefix(it.Location, "s3://"+testBucket+"/")
	if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key),
		Body: bytes.NewReader(altered)}); err != nil {
		t.Fatal(err)
	}
	res, err = h.verify(it.ID)
	if err != nil || res[0].GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_MISMATCH {
		t.Fatalf("verify after replacing the object: %v %v", res, err)
	}
	_, _, _, err = h.download(it.ID, "")
	if err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("download of the replaced object: %v", err)
	}
}

func TestParseS3URI(t *testing.T) {
	tests := []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://evidence", "evidence", "", true},
		{"s3://evidence/", "evidence", "", true},
		{"s3://my.evidence-bucket/org/prod/", "my.evidence-bucket", "org/prod", true},
		{"s3://Evidence/x", "", "", false},
		{"s3://ev", "", "", false},
		{"s3://evidence/a//b", "", "", false},
		{"s3://evidence/a/../b", "", "", false},
		{"s3://-evidence", "", "", false},
		{"https://evidence", "", "", false},
	}
	for _, tt := range tests {
		b, p, err := evidence.ParseS3URI(tt.in)
		if (err == nil) != tt.ok || b != tt.bucket || p != tt.prefix {
			t.Errorf("ParseS3URI(%q) = %q, %q, %v", tt.in, b, p, err)
		}
	}
}

// FuzzParseS3URI checks that every accepted URI yields a bucket and a
// prefix that cannot step out of the store.
func FuzzParseS3URI(f *testing.F) {
	for _, s := range []string{"s3://evidence/org/prod", "s3://a.b-c/..", "s3://x/./y", "s3://bucket//", "s3://b\x00ucket/p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, p, err := evidence.ParseS3URI(s)
		if err != nil {
			return
		}
		if b == "" || strings.ContainsAny(b, "/\\ \x00") || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
			t.Fatalf("ParseS3URI(%q) = %q, %q", s, b, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == ".." || seg == "." || (p != "" && seg == "") {
				t.Fatalf("ParseS3URI(%q) prefix %q", s, p)
			}
		}
	})
}
