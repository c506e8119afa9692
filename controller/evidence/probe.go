package evidence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Probe is what a readiness review learns of the evidence store: whether
// it answers, and for S3 the bucket settings that make evidence provable.
type Probe struct {
	// Kind is "local" or "s3"; Location the directory or s3:// URI.
	Kind, Location string
	// Err says why the store did not answer; empty when it did.
	Err string
	// ObjectLock is the bucket's Object Lock default retention ("COMPLIANCE
	// 365 days"), "enabled, no default retention", or "" when the bucket
	// has none. ObjectLockErr says why it could not be read.
	ObjectLock, ObjectLockErr string
	// Versioning is the bucket's versioning status ("Enabled",
	// "Suspended", "" never enabled); VersioningErr why it could not be read.
	Versioning, VersioningErr string
	// Retention is the Object Lock retention the controller puts on each
	// new object (--evidence-retention); 0 for none.
	Retention time.Duration
}

// Prober is a Backend that can say whether it answers.
type Prober interface {
	// Probe checks the store without changing what it holds.
	Probe(ctx context.Context) Probe
}

// Probe implements Prober: the directory must exist and take a new file,
// which is removed at once.
func (l *Local) Probe(_ context.Context) Probe {
	p := Probe{Kind: "local", Location: l.root}
	f, err := os.CreateTemp(l.root, ".readiness-probe-*")
	if err != nil {
		p.Err = fmt.Sprintf("the evidence directory does not take a new file: %v", err)
		return p
	}
	name := f.Name()
	if err := errors.Join(f.Close(), os.Remove(name)); err != nil {
		p.Err = fmt.Sprintf("the evidence directory's probe file %s could not be removed: %v", name, err)
	}
	return p
}

// s3Posture is the part of the S3 API the probe reads the bucket's
// settings with; *s3.Client has it.
type s3Posture interface {
	GetObjectLockConfiguration(ctx context.Context, in *s3.GetObjectLockConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetObjectLockConfigurationOutput, error)
	GetBucketVersioning(ctx context.Context, in *s3.GetBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Probe implements Prober: HeadBucket with the controller's own
// credentials, then the bucket's Object Lock and versioning.
func (b *S3) Probe(ctx context.Context) Probe {
	p := Probe{Kind: "s3", Location: b.Describe(), Retention: b.cfg.Retention}
	bucket := aws.String(b.cfg.Bucket)
	if _, err := b.cfg.Client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket}); err != nil {
		p.Err = fmt.Sprintf("s3:HeadBucket on %s failed: %v", b.cfg.Bucket, err)
		return p
	}
	c, ok := b.cfg.Client.(s3Posture)
	if !ok {
		p.ObjectLockErr, p.VersioningErr = "the S3 client cannot read bucket settings", "the S3 client cannot read bucket settings"
		return p
	}
	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: bucket})
	switch {
	case errorCode(err) == "ObjectLockConfigurationNotFoundError":
	case err != nil:
		p.ObjectLockErr = "s3:GetBucketObjectLockConfiguration: " + err.Error()
	case lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != "Enabled":
	case lock.ObjectLockConfiguration.Rule == nil || lock.ObjectLockConfiguration.Rule.DefaultRetention == nil:
		p.ObjectLock = "enabled, no default retention"
	default:
		r := lock.ObjectLockConfiguration.Rule.DefaultRetention
		p.ObjectLock = strings.TrimSpace(fmt.Sprintf("%s %d days", r.Mode, aws.ToInt32(r.Days)+365*aws.ToInt32(r.Years)))
	}
	v, err := c.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: bucket})
	if err != nil {
		p.VersioningErr = "s3:GetBucketVersioning: " + err.Error()
	} else {
		p.Versioning = string(v.Status)
	}
	return p
}
