package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/firebreak-ir/firebreak/controller/store"
)

// S3 limits that shape the staging of uploads.
const (
	// MinPartBytes is the smallest part S3 takes, except the last.
	MinPartBytes = 5 << 20
	// MaxParts is the most parts one S3 multipart upload holds.
	MaxParts = 10000
	// MaxCopyObjectBytes is the largest object one CopyObject copies;
	// larger ones are copied part by part (UploadPartCopy).
	MaxCopyObjectBytes = 5 << 30
	// DefaultCopyPartBytes is the size of each part of a copy in parts.
	DefaultCopyPartBytes = 512 << 20
)

// ErrStagingGone is returned by a StagingBackend whose multipart upload
// no longer exists: it was completed or aborted.
var ErrStagingGone = errors.New("the staged upload is no longer in the evidence store")

// StagingBackend is a Backend that stages uploads itself, so an upload
// whose controller died resumes on any controller of the cluster. The S3
// backend stages each upload as a multipart upload to
// <prefix>/uploads/<upload id>.
type StagingBackend interface {
	Backend
	// StartStaging begins staging an upload and returns the backend's id
	// of its multipart upload.
	StartStaging(ctx context.Context, uploadID string) (string, error)
	// StagePart sends size bytes of body as part number; sum is their
	// SHA-256, which the backend checks on arrival.
	StagePart(ctx context.Context, uploadID, multipartID string, number int32, body io.ReadSeeker, size int64, sum []byte) (store.StagedPart, error)
	// StagedParts lists the parts the backend holds, in order, or returns
	// ErrStagingGone.
	StagedParts(ctx context.Context, uploadID, multipartID string) ([]store.StagedPart, error)
	// StagedSize returns the size of an upload's completed staging
	// object, or ErrObjectNotFound.
	StagedSize(ctx context.Context, uploadID string) (int64, error)
	// CommitStaging completes the staging, checks it against its parts,
	// copies it to the content address sum with the store's retention and
	// encryption, and deletes the staging object. It is idempotent: a
	// repeat after a crash at any step finds the object held.
	CommitStaging(ctx context.Context, uploadID string, st store.UploadStaging, sum string, size int64) (*Stored, error)
	// AbortStaging discards an upload's staging: the multipart upload and
	// any completed staging object.
	AbortStaging(ctx context.Context, uploadID, multipartID string) error
}

var _ StagingBackend = (*S3)(nil)

// stagingKey is where an upload is staged: <prefix>/uploads/<upload id>.
func (b *S3) stagingKey(uploadID string) (string, error) {
	// Security-critical: the upload id becomes an object key.
	for _, c := range uploadID {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return "", fmt.Errorf("%q is not an upload id", uploadID)
		}
	}
	if uploadID == "" {
		return "", errors.New("no upload id")
	}
	return path.Join(b.cfg.Prefix, "uploads", uploadID), nil
}

// StartStaging implements StagingBackend. The staging object is encrypted
// as stored objects are; it carries no retention, so it can be deleted.
func (b *S3) StartStaging(ctx context.Context, uploadID string) (string, error) {
	key, err := b.stagingKey(uploadID)
	if err != nil {
		return "", err
	}
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), ContentType: aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256}
	b.protect(&in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ObjectLockMode, &in.ObjectLockRetainUntilDate, time.Time{})
	out, err := b.cfg.Client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", fmt.Errorf("starting the staging of upload %s at s3://%s/%s: %w", uploadID, b.cfg.Bucket, key, err)
	}
	if aws.ToString(out.UploadId) == "" {
		return "", fmt.Errorf("starting the staging of upload %s: S3 returned no multipart upload id", uploadID)
	}
	return aws.ToString(out.UploadId), nil
}

// StagePart implements StagingBackend.
func (b *S3) StagePart(ctx context.Context, uploadID, multipartID string, number int32, body io.ReadSeeker, size int64, sum []byte) (store.StagedPart, error) {
	key, err := b.stagingKey(uploadID)
	if err != nil {
		return store.StagedPart{}, err
	}
	b64 := base64.StdEncoding.EncodeToString(sum)
	out, err := b.cfg.Client.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
		PartNumber: aws.Int32(number), Body: body, ContentLength: aws.Int64(size), ChecksumSHA256: aws.String(b64)})
	if err != nil {
		return store.StagedPart{}, fmt.Errorf("staging part %d (%d bytes) of upload %s: %w", number, size, uploadID, err)
	}
	return store.StagedPart{Number: number, ETag: aws.ToString(out.ETag), Size: size, SHA256: b64}, nil
}

// StagedParts implements StagingBackend.
func (b *S3) StagedParts(ctx context.Context, uploadID, multipartID string) ([]store.StagedPart, error) {
	key, err := b.stagingKey(uploadID)
	if err != nil {
		return nil, err
	}
	var parts []store.StagedPart
	var marker *string
	for {
		out, err := b.cfg.Client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
			PartNumberMarker: marker})
		if isNoSuchUpload(err) {
			return nil, ErrStagingGone
		}
		if err != nil {
			return nil, fmt.Errorf("listing the staged parts of upload %s: %w", uploadID, err)
		}
		for _, p := range out.Parts {
			parts = append(parts, store.StagedPart{Number: aws.ToInt32(p.PartNumber), ETag: aws.ToString(p.ETag), Size: aws.ToInt64(p.Size),
				SHA256: aws.ToString(p.ChecksumSHA256)})
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextPartNumberMarker) == "" {
			return parts, nil
		}
		marker = out.NextPartNumberMarker
	}
}

// StagedSize implements StagingBackend.
func (b *S3) StagedSize(ctx context.Context, uploadID string) (int64, error) {
	key, err := b.stagingKey(uploadID)
	if err != nil {
		return 0, err
	}
	head, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return 0, ErrObjectNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("looking up the staged upload s3://%s/%s: %w", b.cfg.Bucket, key, err)
	}
	return aws.ToInt64(head.ContentLength), nil
}

func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	return errors.As(err, &nsu) || isNotFound(err)
}

func isPreconditionFailed(err error) bool {
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}

// compositeSHA256 is the checksum S3 gives a multipart object: the SHA-256
// of its parts' SHA-256s, and the number of parts.
func compositeSHA256(parts []store.StagedPart) (string, error) {
	h := sha256.New()
	for _, p := range parts {
		raw, err := base64.StdEncoding.DecodeString(p.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return "", fmt.Errorf("part %d has no valid SHA-256", p.Number)
		}
		h.Write(raw)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts)), nil
}

// CommitStaging implements StagingBackend.
func (b *S3) CommitStaging(ctx context.Context, uploadID string, st store.UploadStaging, sum string, size int64) (*Stored, error) {
	if err := checkSum(sum); err != nil {
		return nil, err
	}
	skey, err := b.stagingKey(uploadID)
	if err != nil {
		return nil, err
	}
	key := b.key(sum)
	out := &Stored{Location: b.location(sum)}
	if b.cfg.Retention > 0 {
		out.RetainUntil = b.cfg.Clock().Add(b.cfg.Retention).UTC().Truncate(time.Second)
	}
	// A controller that died after the copy, or the same content stored
	// for another task, leaves the object held: only the staging goes.
	if done, err := b.heldAlready(ctx, key, size, out); err != nil || done {
		if err != nil {
			return nil, err
		}
		return out, b.AbortStaging(ctx, uploadID, st.MultipartID)
	}
	var parts []types.CompletedPart
	for _, p := range st.Parts {
		parts = append(parts, types.CompletedPart{ETag: aws.String(p.ETag), PartNumber: aws.Int32(p.Number), ChecksumSHA256: aws.String(p.SHA256)})
	}
	cmp, err := b.cfg.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(skey),
		UploadId: aws.String(st.MultipartID), MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	switch {
	case err == nil:
		// Security-critical: S3 checked each part against its SHA-256 on
		// arrival; the completed object must be made of exactly those parts.
		if got := aws.ToString(cmp.ChecksumSHA256); got != "" {
			want, werr := compositeSHA256(st.Parts)
			if werr != nil || (got != want && got != strings.SplitN(want, "-", 2)[0]) {
				return nil, fmt.Errorf("the staged upload %s completed with checksum %s, but its parts give %s: it was not stored; run the collection again",
					uploadID, got, want)
			}
		}
	case isNoSuchUpload(err):
		// Completed by a controller that died before the copy; the staging
		// object is checked below.
	default:
		return nil, fmt.Errorf("completing the staged upload %s: %w", uploadID, err)
	}
	head, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(skey)})
	if err != nil {
		return nil, fmt.Errorf("reading the staged upload s3://%s/%s: %w", b.cfg.Bucket, skey, err)
	}
	// Security-critical: the bytes copied are exactly as many as were hashed.
	if n := aws.ToInt64(head.ContentLength); n != size {
		return nil, fmt.Errorf("the staged upload s3://%s/%s holds %d bytes, but %d were received and hashed: it was not stored; run the collection again",
			b.cfg.Bucket, skey, n, size)
	}
	src := (&url.URL{Path: b.cfg.Bucket + "/" + skey}).EscapedPath()
	if v := aws.ToString(head.VersionId); v != "" {
		src += "?versionId=" + url.QueryEscape(v)
	}
	if size <= b.cfg.CopyObjectMaxBytes {
		err = b.copyWhole(ctx, src, key, sum, out.RetainUntil)
	} else {
		err = b.copyInParts(ctx, src, key, sum, size, out.RetainUntil)
	}
	if isPreconditionFailed(err) {
		// Another controller stored the same content meanwhile.
		if done, herr := b.heldAlready(ctx, key, size, out); herr != nil || !done {
			return nil, errors.Join(err, herr)
		}
	} else if err != nil {
		return nil, fmt.Errorf("copying the staged upload %s to %s: %w", uploadID, out.Location, explainPut(err, b.cfg.Retention > 0))
	}
	if err := b.deleteStaging(ctx, skey, head.VersionId); err != nil {
		return nil, err
	}
	return out, nil
}

// deleteStaging deletes a completed staging object, its version when the
// bucket is versioned. A version locked by a default retention on the
// bucket cannot be deleted: a delete marker then hides it, and it goes
// when its retention ends (a lifecycle rule on noncurrent versions).
func (b *S3) deleteStaging(ctx context.Context, key string, version *string) error {
	_, err := b.cfg.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), VersionId: version})
	if err == nil || isNotFound(err) {
		return nil
	}
	if aws.ToString(version) != "" {
		_, merr := b.cfg.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
		if merr == nil || isNotFound(merr) {
			return nil
		}
		err = errors.Join(err, merr)
	}
	return fmt.Errorf("deleting the staged upload s3://%s/%s: %w", b.cfg.Bucket, key, err)
}

// heldAlready reports whether the store holds the object under key, and
// accepts it as Put does.
func (b *S3) heldAlready(ctx context.Context, key string, size int64, st *Stored) (bool, error) {
	head, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("looking up %s: %w", st.Location, err)
	}
	held, err := b.held(ctx, key, head, size, st)
	if err != nil {
		return false, err
	}
	*st = *held
	return true, nil
}

// copyWhole copies the staging object to key with one CopyObject.
func (b *S3) copyWhole(ctx context.Context, src, key, sum string, retain time.Time) error {
	in := &s3.CopyObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), CopySource: aws.String(src),
		ContentType: aws.String("application/octet-stream"), MetadataDirective: types.MetadataDirectiveReplace,
		Metadata: map[string]string{"firebreak-sha256": sum}, ChecksumAlgorithm: types.ChecksumAlgorithmSha256, IfNoneMatch: aws.String("*")}
	b.protect(&in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ObjectLockMode, &in.ObjectLockRetainUntilDate, retain)
	_, err := b.cfg.Client.CopyObject(ctx, in)
	return err
}

// copyInParts copies a staging object larger than one CopyObject takes,
// range by range into a multipart upload carrying the protection.
func (b *S3) copyInParts(ctx context.Context, src, key, sum string, size int64, retain time.Time) error {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), ContentType: aws.String("application/octet-stream"),
		Metadata: map[string]string{"firebreak-sha256": sum}, ChecksumAlgorithm: types.ChecksumAlgorithmSha256}
	b.protect(&in.ServerSideEncryption, &in.SSEKMSKeyId, &in.ObjectLockMode, &in.ObjectLockRetainUntilDate, retain)
	mp, err := b.cfg.Client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return err
	}
	abort := func(err error) error {
		_, aerr := b.cfg.Client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket),
			Key: aws.String(key), UploadId: mp.UploadId})
		return errors.Join(err, aerr)
	}
	var parts []types.CompletedPart
	for off, n := int64(0), int32(1); off < size; off, n = off+b.cfg.CopyPartSize, n+1 {
		end := min(off+b.cfg.CopyPartSize, size) - 1
		out, err := b.cfg.Client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key), UploadId: mp.UploadId,
			PartNumber: aws.Int32(n), CopySource: aws.String(src), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
		if err != nil {
			return abort(fmt.Errorf("copying part %d: %w", n, err))
		}
		p := types.CompletedPart{PartNumber: aws.Int32(n)}
		if r := out.CopyPartResult; r != nil {
			p.ETag, p.ChecksumSHA256 = r.ETag, r.ChecksumSHA256
		}
		parts = append(parts, p)
	}
	if _, err := b.cfg.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key),
		UploadId: mp.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, IfNoneMatch: aws.String("*")}); err != nil {
		if isPreconditionFailed(err) {
			return errors.Join(err, abort(nil))
		}
		return abort(err)
	}
	return nil
}

// AbortStaging implements StagingBackend. What is already gone is no error.
func (b *S3) AbortStaging(ctx context.Context, uploadID, multipartID string) error {
	key, err := b.stagingKey(uploadID)
	if err != nil {
		return err
	}
	if multipartID != "" {
		if _, err := b.cfg.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key),
			UploadId: aws.String(multipartID)}); err != nil && !isNoSuchUpload(err) {
			return fmt.Errorf("aborting the staged upload %s: %w", uploadID, err)
		}
	}
	head, err := b.cfg.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.cfg.Bucket), Key: aws.String(key)})
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up the staged upload s3://%s/%s: %w", b.cfg.Bucket, key, err)
	}
	return b.deleteStaging(ctx, key, head.VersionId)
}
