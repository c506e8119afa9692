package evidence

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// ErrObjectNotFound is returned by a Backend for an object it does not hold.
var ErrObjectNotFound = errors.New("the evidence store does not hold the object")

// Stored describes an object a Backend holds.
type Stored struct {
	// Location is where the object is: a path or an s3:// URI.
	Location string
	// RetainUntil is the end of its Object Lock retention (zero if none).
	RetainUntil time.Time
}

// Backend holds evidence bytes content-addressed by their hex SHA-256.
type Backend interface {
	// Kind is "local" or "s3".
	Kind() string
	// Describe says where the backend stores, for logs and errors.
	Describe() string
	// Put stores the verified file at path under sum. It is idempotent: a
	// sum already held is left as it is. The file at path may be consumed
	// (renamed into place); the caller removes it if it is still there.
	Put(ctx context.Context, sum string, size int64, path string) (*Stored, error)
	// Open returns the object's bytes, or ErrObjectNotFound.
	Open(ctx context.Context, sum string) (io.ReadCloser, error)
	// Stat returns the object's size, or ErrObjectNotFound.
	Stat(ctx context.Context, sum string) (int64, error)
}

// ObjectKey is the content address of a SHA-256 below a store's root:
// sha256/ab/abcdef…, fanned out by the first byte so no directory or key
// prefix grows without bound.
func ObjectKey(sum string) string {
	return "sha256/" + sum[:2] + "/" + sum
}

// checkSum refuses anything but 64 lower-case hex digits, so a sum can
// never steer a path or key.
func checkSum(sum string) error {
	// Security-critical: sums become file paths and object keys.
	if len(sum) != 64 || strings.ToLower(sum) != sum {
		return fmt.Errorf("%q is not a lower-case hex SHA-256", sum)
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return fmt.Errorf("%q is not a lower-case hex SHA-256", sum)
	}
	return nil
}

// BackendOptions configure OpenBackend.
type BackendOptions struct {
	// DataDir is the controller's data directory; the local store defaults
	// to DataDir/evidence.
	DataDir string
	// Retention is the Object Lock retention (compliance mode) of new S3
	// objects; 0 sets none.
	Retention time.Duration
	// KMSKeyID is the KMS key for SSE-KMS on S3; empty uses the bucket's
	// default encryption.
	KMSKeyID string
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// OpenBackend opens the backend a --evidence value names:
//
//	""  or "local"           DataDir/evidence
//	/abs/path or file:///p   a local directory
//	s3://bucket[/prefix]     S3, through the SDK's standard configuration
func OpenBackend(ctx context.Context, spec string, o BackendOptions) (Backend, error) {
	if o.Clock == nil {
		o.Clock = time.Now
	}
	local := func(dir string) (Backend, error) {
		if o.Retention != 0 || o.KMSKeyID != "" {
			return nil, errors.New("--evidence-retention and --evidence-kms-key apply to an S3 evidence store (--evidence s3://bucket/prefix)")
		}
		return NewLocal(dir)
	}
	switch {
	case spec == "" || spec == "local":
		if o.DataDir == "" {
			return nil, errors.New("the local evidence store needs the data directory")
		}
		return local(filepath.Join(o.DataDir, "evidence"))
	case strings.HasPrefix(spec, "/"):
		return local(filepath.Clean(spec))
	case strings.HasPrefix(spec, "file://"):
		u, err := url.Parse(spec)
		if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("--evidence %q: write a local store as file:///absolute/path", spec)
		}
		return local(filepath.Clean(u.Path))
	case strings.HasPrefix(spec, "s3://"):
		bucket, prefix, err := ParseS3URI(spec)
		if err != nil {
			return nil, err
		}
		if o.Retention < 0 {
			return nil, fmt.Errorf("--evidence-retention %s is negative", o.Retention)
		}
		return OpenS3(ctx, S3Config{Bucket: bucket, Prefix: prefix, Retention: o.Retention, KMSKeyID: o.KMSKeyID, Clock: o.Clock})
	}
	return nil, fmt.Errorf("--evidence %q: want local, an absolute directory, or s3://bucket/prefix", spec)
}

// ParseS3URI splits s3://bucket/prefix. The prefix is returned without
// leading or trailing slashes.
func ParseS3URI(spec string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(spec, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URI", spec)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if !validBucket(bucket) {
		return "", "", fmt.Errorf("--evidence %q: %q is not a valid S3 bucket name", spec, bucket)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." || (prefix != "" && seg == "") {
			return "", "", fmt.Errorf("--evidence %q: the prefix %q has an empty, . or .. segment", spec, prefix)
		}
	}
	return bucket, prefix, nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '-' || c == '.') && i > 0 && i < len(b)-1:
		default:
			return false
		}
	}
	return true
}
