package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// S3Client is the part of the S3 API the evidence store uses.
type S3Client interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	PutObjectRetention(ctx context.Context, in *s3.PutObjectRetentionInput, optFns ...func(*s3.Options)) (*s3.PutObjectRetentionOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, optFns ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, optFns ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, optFns ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CopyObject(ctx context.Context, in *s3.CopyObjectInput, optFns ...func(*s3.Options)) (*s3.CopyObjectOutput, error)
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, optFns ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Defaults for S3Config.
const (
	// DefaultMultipartThreshold is the size from which objects are sent in
	// parts (a single PutObject takes at most 5 GB).
	DefaultMultipartThreshold = 1 << 30
	// DefaultPartSize is the size of each part.
	DefaultPartSize = 64 << 20
)

// S3Config configures the S3 backend.
type S3Config struct {
	// Bucket and Prefix locate the store: s3://Bucket/Prefix/sha256/ab/<hex>.
	Bucket string
	Prefix string
	// Retention, when set, puts every new object under Object Lock in
	// compliance mode until now+Retention; the bucket must have Object Lock
	// enabled.
	Retention time.Duration
	// KMSKeyID, when set, encrypts objects with SSE-KMS under that key.
	KMSKeyID string
	// Client is the S3 client; OpenS3 builds one from the SDK's standard
	// configuration when it is nil.
	Client S3Client
	// Clock defaults to time.Now.
	Clock func() time.Time
	// MultipartThreshold and PartSize control multipart uploads.
	MultipartThreshold int64
	PartSize           int64
	// CopyObjectMaxBytes is the largest staged upload copied to its
	// content address with one CopyObject (default and at most
	// MaxCopyObjectBytes); larger ones are copied in parts of CopyPartSize
	// (default DefaultCopyPartBytes).
	CopyObjectMaxBytes int64
	CopyPartSize       int64
}

// CheckAndSetDefaults checks the configuration and sets defaults.
func (c *S3Config) CheckAndSetDefaults() error {
	if c.Bucket == "" {
		return errors.New("s3 evidence store: no bucket given (--evidence s3://bucket/prefix)")
	}
	if c.Client == nil {
		return errors.New("s3 evidence store: no S3 client")
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MultipartThreshold <= 0 {
		c.MultipartThreshold = DefaultMultipartThreshold
	}
	if c.PartSize <= 0 {
		c.PartSize = DefaultPartSize
	}
	if c.CopyObjectMaxBytes <= 0 || c.CopyObjectMaxBytes > MaxCopyObjectBytes {
		c.CopyObjectMaxBytes = MaxCopyObjectBytes
	}
	if c.CopyPartSize <= 0 {
		c.CopyPartSize = DefaultCopyPartBytes
	}
	return nil
}

// S3 stores evidence in an S3 bucket.
type S3 struct {
	cfg S3Config
}

// NewS3Client builds an S3 client from the SDK's standard configuration:
// environment (AWS_REGION, AWS_ENDPOINT_URL, credentials), shared config
// files and profiles, and instance roles. When an endpoint is configured it
// uses path-style addressing, which S3-compatible stores expect.
func NewS3Client(ctx context.Context) (*s3.Client, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration for the S3 evidence store: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
	}), nil
}

// OpenS3 returns the S3 backend after checking that the bucket is
// reachable with the configured credentials.
func OpenS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Client == nil {
		c, err := NewS3Client(ctx)
		if err != nil {
			return nil, err
		}
		cfg.Client = c
	}
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	b := &S3{cfg: cfg}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cfg.Client.HeadBucket(hctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		return nil, fmt.Errorf("the S3 evidence bucket %s is not reachable (check the bucket name, region, endpoint and credentials): %w", cfg.Bucket, err)
	}
	return b, nil
}

// Kind implements Backend.
func (b *S3) Kind() string { return "s3" }

// Describe implements Backend.
func (b *S3) Describe() string { return "s3://" + path.Join(b.cfg.Bucket, b.cfg.Prefix) }

func (b *S3) key(sum string) string { return path.Join(b.cfg.Prefix, ObjectKey(sum)) }

func (b *S3) location(sum string) string { return "s3://" + b.cfg.Bucket + "/" + b.key(sum) }

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// Put implements Backend. New objects carry their SHA-256 (S3 checks it on
// arrival), SSE-KMS when a key is configured, and compliance-mode Object
// Lock until now+Retention. An object already held keeps its content; its
// retention is extended when this put asks for longer.
func (b *S3) Put(ctx context.Context, sum string, size int64, file string) (*Stored, error) {
	if err := checkSum(sum); err != nil {
		return nil, err
	}
	key := b.key(sum)
	st := &Stored{Location: b.location(sum)}
	if b.cfg.Retention > 0 {
		st.RetainUntil = b.cfg.Clock().Add(b.cfg.Retention).UTC().Truncate(time.Second)
	}
	head, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		return b.held(ctx, key, head, size, st)
	case !isNotFound(err):
		return nil, fmt.Errorf("looking up %s: %w", st.Location, err)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, _ := hex.DecodeString(sum)
	if size >= b.cfg.MultipartThreshold {
		return st, b.putMultipart(ctx, key, f, size, st.RetainUntil)
	}
	in := &s3.PutObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(size),
		ContentType: aws.String("application/octet-stream"), ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(raw)),
		Metadata: map[string]string{"firebreak-sha256": sum},
		// Another controller storing the same content at the same moment
		// must not overwrite (or, under Object Lock, version) the object.
		IfNoneMatch: aws.String("*")}
	b.protect(&in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ObjectLockMode, &in.ObjectLockRetainUntilDate, st.RetainUntil)
	if _, err := b.cfg.Client.PutObject(ctx, in); err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed {
			head, herr := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
			if herr != nil {
				return nil, fmt.Errorf("storing %s: it appeared meanwhile but cannot be read: %w", st.Location, herr)
			}
			return b.held(ctx, key, head, size, st)
		}
		return nil, fmt.Errorf("storing %s: %w", st.Location, explainPut(err, b.cfg.Retention > 0))
	}
	return st, nil
}

// protect fills the encryption and lock fields shared by PutObject and
// CreateMultipartUpload.
func (b *S3) protect(sse *types.ServerSideEncryption, kms **string, mode *types.ObjectLockMode, until **time.Time, retain time.Time) {
	if b.cfg.KMSKeyID != "" {
		*sse, *kms = types.ServerSideEncryptionAwsKms, aws.String(b.cfg.KMSKeyID)
	}
	if !retain.IsZero() {
		*mode, *until = types.ObjectLockModeCompliance, aws.Time(retain)
	}
}

func explainPut(err error, locked bool) error {
	var ae smithy.APIError
	if locked && errors.As(err, &ae) && (ae.ErrorCode() == "InvalidRequest" || ae.ErrorCode() == "InvalidArgument") {
		return fmt.Errorf("%w (is Object Lock enabled on the bucket? --evidence-retention needs it)", err)
	}
	return err
}

// held accepts an object the store already holds under a sum.
func (b *S3) held(ctx context.Context, key string, head *s3.HeadObjectOutput, size int64, st *Stored) (*Stored, error) {
	if aws.ToInt64(head.ContentLength) != size {
		return nil, fmt.Errorf("the evidence store already holds %s with %d bytes, not %d: verify the store (firebreak evidence verify --all)",
			st.Location, aws.ToInt64(head.ContentLength), size)
	}
	if err := b.extendRetention(ctx, key, head, st.RetainUntil); err != nil {
		return nil, err
	}
	if head.ObjectLockRetainUntilDate != nil && head.ObjectLockRetainUntilDate.After(st.RetainUntil) && !st.RetainUntil.IsZero() {
		st.RetainUntil = head.ObjectLockRetainUntilDate.UTC()
	}
	return st, nil
}

func (b *S3) extendRetention(ctx context.Context, key string, head *s3.HeadObjectOutput, want time.Time) error {
	if want.IsZero() || (head.ObjectLockRetainUntilDate != nil && !head.ObjectLockRetainUntilDate.Before(want)) {
		return nil
	}
	_, err := b.cfg.Client.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key),
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(want)}})
	if err != nil {
		return fmt.Errorf("extending the Object Lock retention of s3://%s/%s to %s: %w", b.cfg.Bucket, key, want.Format(time.RFC3339), err)
	}
	return nil
}

// putMultipart sends a large object in parts, each with its own SHA-256.
func (b *S3) putMultipart(ctx context.Context, key string, f *os.File, size int64, retain time.Time) error {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), ContentType: aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256}
	b.protect(&in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ObjectLockMode, &in.ObjectLockRetainUntilDate, retain)
	mp, err := b.cfg.Client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return fmt.Errorf("starting a multipart upload of s3://%s/%s: %w", b.cfg.Bucket, key, explainPut(err, !retain.IsZero()))
	}
	abort := func(err error) error {
		_, aerr := b.cfg.Client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket),
			Key: aws.String(key), UploadId: mp.UploadId})
		return errors.Join(fmt.Errorf("storing s3://%s/%s: %w", b.cfg.Bucket, key, err), aerr)
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+b.cfg.PartSize, n+1 {
		length := min(b.cfg.PartSize, size-off)
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, off, length)); err != nil {
			return abort(err)
		}
		sum := base64.StdEncoding.EncodeToString(h.Sum(nil))
		out, err := b.cfg.Client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), UploadId: mp.UploadId,
			PartNumber: aws.Int32(n), Body: io.NewSectionReader(f, off, length), ContentLength: aws.Int64(length), ChecksumSHA256: aws.String(sum)})
		if err != nil {
			return abort(fmt.Errorf("part %d: %w", n, err))
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n), ChecksumSHA256: aws.String(sum)})
	}
	if _, err := b.cfg.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		return abort(err)
	}
	return nil
}

// Open implements Backend.
func (b *S3) Open(ctx context.Context, sum string) (io.ReadCloser, error) {
	if err := checkSum(sum); err != nil {
		return nil, err
	}
	// The reader of the object checks its SHA-256 against the evidence
	// record itself, and reports a difference as a mismatch, so the SDK's
	// own response check (which reports it as a read error) stays off.
	out, err := b.cfg.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(b.key(sum))},
		func(o *s3.Options) { o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired })
	if isNotFound(err) {
		return nil, ErrObjectNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", b.location(sum), err)
	}
	return out.Body, nil
}

// Stat implements Backend.
func (b *S3) Stat(ctx context.Context, sum string) (int64, error) {
	if err := checkSum(sum); err != nil {
		return 0, err
	}
	out, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(b.key(sum))})
	if isNotFound(err) {
		return 0, ErrObjectNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("looking up %s: %w", b.location(sum), err)
	}
	return aws.ToInt64(out.ContentLength), nil
}
