package evidence_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// The S3 test server (gofakes3 v1.2.0) supports what staging uses, except
// UploadPartCopy: CreateMultipartUpload, UploadPart, ListParts,
// ListMultipartUploads, CompleteMultipartUpload, AbortMultipartUpload,
// CopyObject, HeadObject, GetObject with a range, DeleteObject. It does not
// check part checksums, part sizes, conditional writes or Object Lock;
// those settings are checked on the requests (stagedS3 records them).
// UploadPartCopy is emulated here with a ranged GetObject and UploadPart.

const stagedPrefix = "fleet"

// stagedS3 passes calls to the S3 test server, records the requests that
// carry protection settings, emulates UploadPartCopy, and fails the
// operations named in fail (each entry once).
type stagedS3 struct {
	evidence.S3Client
	mu     sync.Mutex
	copies []*s3.CopyObjectInput
	mps    []*s3.CreateMultipartUploadInput
	fail   map[string]int
	called map[string]int
}

func (c *stagedS3) failing(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.called == nil {
		c.called = map[string]int{}
	}
	c.called[op]++
	if c.fail[op] > 0 {
		c.fail[op]--
		return fmt.Errorf("%s: injected failure (the controller died here)", op)
	}
	return nil
}

func (c *stagedS3) calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.called[op]
}

func (c *stagedS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	c.mu.Lock()
	c.mps = append(c.mps, in)
	c.mu.Unlock()
	return c.S3Client.CreateMultipartUpload(ctx, in, o...)
}

func (c *stagedS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := c.S3Client.CompleteMultipartUpload(ctx, in, o...)
	if err == nil {
		// The failure comes after S3 completed it, as when the controller
		// dies before it reads the answer.
		err = c.failing("CompleteMultipartUpload")
	}
	return out, err
}

func (c *stagedS3) CopyObject(ctx context.Context, in *s3.CopyObjectInput, o ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	c.mu.Lock()
	c.copies = append(c.copies, in)
	c.mu.Unlock()
	if err := c.failing("CopyObject"); err != nil {
		return nil, err
	}
	return c.S3Client.CopyObject(ctx, in, o...)
}

func (c *stagedS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, o ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	if err := c.failing("DeleteObject"); err != nil {
		return nil, err
	}
	return c.S3Client.DeleteObject(ctx, in, o...)
}

// UploadPartCopy emulates S3's server-side part copy: a ranged read of the
// source and an upload of the range as the part.
func (c *stagedS3) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, o ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	c.failing("UploadPartCopy")
	src, _, _ := strings.Cut(aws.ToString(in.CopySource), "?")
	bucket, key, _ := strings.Cut(src, "/")
	obj, err := c.S3Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Range: in.CopySourceRange})
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		return nil, err
	}
	out, err := c.S3Client.UploadPart(ctx, &s3.UploadPartInput{Bucket: in.Bucket, Key: in.Key, UploadId: in.UploadId, PartNumber: in.PartNumber,
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
	if err != nil {
		return nil, err
	}
	return &s3.UploadPartCopyOutput{CopyPartResult: &types.CopyPartResult{ETag: out.ETag}}, nil
}

// stagedHarness is a harness on the S3 backend through a stagedS3.
func stagedHarness(t *testing.T, client *s3.Client, cfg evidence.S3Config) (*harness, *stagedS3) {
	t.Helper()
	rec := &stagedS3{S3Client: client}
	cfg.Bucket, cfg.Prefix, cfg.Client = testBucket, stagedPrefix, rec
	be, err := evidence.OpenS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newHarness(t, harnessOptions{backend: be}), rec
}

// failover stops the controller and starts another on the same store file
// and bucket, with a staging directory of its own: the first controller's
// disk is gone with it.
func (h *harness) failover() { h.failoverTo(true) }

// failoverTo is failover, to a controller with or without the checkpoint
// key.
func (h *harness) failoverTo(withKey bool) {
	h.t.Helper()
	h.srv.Stop()
	h.conn.Close()
	h.st.Close()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(h.dir, "firebreak.db"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	if withKey {
		st.SetCheckpointKey(store.NewCheckpointKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))))
	}
	h.st, h.cfg.Store, h.cfg.StagingDir = st, st, filepath.Join(h.t.TempDir(), "uploads")
	h.start()
}

// waitCommitted reads the controller's acknowledgements until at least
// want bytes are committed.
func (u *upload) waitCommitted(want uint64) {
	u.t.Helper()
	for u.committed < want {
		m, err := u.stream.Recv()
		if err != nil {
			u.t.Fatalf("waiting for %d bytes committed (have %d): %v", want, u.committed, err)
		}
		if a := m.GetAck(); a != nil {
			u.committed = a.GetCommittedOffset()
		}
	}
}

// stagedLeft lists the staging objects and multipart uploads left in the
// bucket.
func stagedLeft(t *testing.T, client *s3.Client) []string {
	t.Helper()
	ctx := context.Background()
	var left []string
	objs, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(stagedPrefix + "/uploads/")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs.Contents {
		left = append(left, "object "+aws.ToString(o.Key))
	}
	mps, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket)})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mps.Uploads {
		left = append(left, "multipart upload "+aws.ToString(m.Key))
	}
	return left
}

// sendParts opens an upload of data on the current controller and sends
// it until parts whole S3 parts are committed, and then some more that are
// not; it returns the upload.
func (h *harness) sendParts(data []byte, parts int) *upload {
	h.t.Helper()
	u, err := h.open(agentA, taskA, "memory.raw")
	if err != nil {
		h.t.Fatal(err)
	}
	upTo := parts*evidence.S3CheckpointBytes + 1<<20
	if err := u.sendAll(data[:upTo], 1<<20); err != nil {
		h.t.Fatal(err)
	}
	u.waitCommitted(uint64(parts * evidence.S3CheckpointBytes))
	return u
}

// TestStagedUploadResumesOnAnotherController interrupts an S3 upload after
// two parts on controller A, resumes it on controller B (the same store
// file and bucket, A stopped and its disk gone), and checks that it
// completes from the committed offset, verifies, and leaves no staging.
func TestStagedUploadResumesOnAnotherController(t *testing.T) {
	client := fakeS3(t)
	h, rec := stagedHarness(t, client, evidence.S3Config{})
	data := randomBytes(t, 2*evidence.S3CheckpointBytes+3<<20+123)
	h.sendParts(data, 2)
	h.failover()

	u, err := h.open(agentA, taskA, "memory.raw")
	if err != nil {
		t.Fatal(err)
	}
	if u.committed != 2*evidence.S3CheckpointBytes {
		t.Fatalf("B resumed at %d; want the %d bytes of the two committed parts", u.committed, 2*evidence.S3CheckpointBytes)
	}
	if err := u.sendAll(data, 1<<20); err != nil {
		t.Fatal(err)
	}
	stored, err := u.finish(len(data), sum256(data))
	if err != nil {
		t.Fatal(err)
	}
	it, err := h.svc.GetItem(context.Background(), stored.GetEvidenceId())
	if err != nil {
		t.Fatal(err)
	}
	if it.Size != int64(len(data)) || it.SHA256 != hexSum(data) || it.Resumes != 1 ||
		it.Location != "s3://"+testBucket+"/"+stagedPrefix+"/sha256/"+it.SHA256[:2]+"/"+it.SHA256 {
		t.Fatalf("item %+v", it)
	}
	res, err := h.verify(it.ID)
	if err != nil || len(res) != 1 || res[0].GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
		t.Fatalf("verify %v %v", res, err)
	}
	got, _, _, err := h.download(it.ID, "")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download: %d bytes, %v", len(got), err)
	}
	if left := stagedLeft(t, client); len(left) != 0 {
		t.Errorf("staging left in the bucket: %v", left)
	}
	if n := rec.calls("CopyObject"); n != 1 {
		t.Errorf("%d CopyObject calls, want 1", n)
	}
	up, err := h.st.GetUpload(context.Background(), evidence.UploadID(taskA, "memory.raw"))
	if err != nil || up.State != "stored" || len(up.Staging.Parts) != 3 || up.Staging.Parts[2].Size != 3<<20+123 {
		t.Fatalf("upload %+v (%v), want stored from 3 parts", up, err)
	}
}

// TestStagedResumeRefusals tampers with an upload's checkpoint in the
// store or its parts in S3 between controllers, and checks that the
// resume is refused precisely, audited, and the staging discarded.
func TestStagedResumeRefusals(t *testing.T) {
	upID := evidence.UploadID(taskA, "memory.raw")
	tests := []struct {
		name string
		// unsealed resumes on a controller without the checkpoint key,
		// where only the record's own consistency is checked.
		unsealed bool
		tamper   func(t *testing.T, h *harness, client *s3.Client, mp string)
		want     string
	}{
		{"tampered hash state", false, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			var state []byte
			if err := h.raw().QueryRow(`SELECT hash_state FROM evidence_uploads WHERE id = ?`, upID).Scan(&state); err != nil {
				t.Fatal(err)
			}
			state[10] ^= 0xff
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET hash_state = ? WHERE id = ?`, state, upID); err != nil {
				t.Fatal(err)
			}
		}, "does not match its seal"},
		{"committed offset moved back a part", false, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET committed = ? WHERE id = ?`, evidence.S3CheckpointBytes, upID); err != nil {
				t.Fatal(err)
			}
		}, "does not match its seal"},
		{"part list edited in the store", false, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET staging_parts = replace(staging_parts, '"number":2', '"number":3') WHERE id = ?`, upID); err != nil {
				t.Fatal(err)
			}
		}, "does not match its seal"},
		{"unsealed: committed offset moved back a part", true, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET committed = ? WHERE id = ?`, evidence.S3CheckpointBytes, upID); err != nil {
				t.Fatal(err)
			}
		}, fmt.Sprintf("the saved hash state covers %d bytes, but %d are committed", 2*evidence.S3CheckpointBytes, evidence.S3CheckpointBytes)},
		{"unsealed: part list renumbered", true, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET staging_parts = replace(staging_parts, '"number":2', '"number":3') WHERE id = ?`, upID); err != nil {
				t.Fatal(err)
			}
		}, "the saved part list is not parts 1 to 2"},
		{"unsealed: hash state cut", true, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET hash_state = substr(hash_state, 1, 50) WHERE id = ?`, upID); err != nil {
				t.Fatal(err)
			}
		}, "the saved hash state is not a SHA-256 state"},
		{"seal removed", false, func(t *testing.T, h *harness, _ *s3.Client, _ string) {
			if _, err := h.raw().Exec(`UPDATE evidence_uploads SET staging_seal = '' WHERE id = ?`, upID); err != nil {
				t.Fatal(err)
			}
		}, "carries no valid seal"},
		{"part replaced in S3", false, func(t *testing.T, _ *harness, client *s3.Client, mp string) {
			other := randomBytes(t, evidence.S3CheckpointBytes)
			if _, err := client.UploadPart(context.Background(), &s3.UploadPartInput{Bucket: aws.String(testBucket), Key: aws.String(stagedPrefix + "/uploads/" + upID),
				UploadId: aws.String(mp), PartNumber: aws.Int32(2), Body: bytes.NewReader(other), ContentLength: aws.Int64(int64(len(other)))}); err != nil {
				t.Fatal(err)
			}
		}, "part 2 in s3://" + testBucket + "/" + stagedPrefix + " ("},
		{"multipart upload aborted in S3", false, func(t *testing.T, _ *harness, client *s3.Client, mp string) {
			if _, err := client.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket),
				Key: aws.String(stagedPrefix + "/uploads/" + upID), UploadId: aws.String(mp)}); err != nil {
				t.Fatal(err)
			}
		}, "its staged parts are gone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fakeS3(t)
			h, _ := stagedHarness(t, client, evidence.S3Config{})
			data := randomBytes(t, 2*evidence.S3CheckpointBytes+2<<20)
			h.sendParts(data, 2)
			up, err := h.st.GetUpload(context.Background(), upID)
			if err != nil || up.Staging.MultipartID == "" || len(up.Staging.Parts) != 2 {
				t.Fatalf("upload %+v (%v), want 2 staged parts", up, err)
			}
			h.failoverTo(!tt.unsealed)
			tt.tamper(t, h, client, up.Staging.MultipartID)
			_, err = h.open(agentA, taskA, "memory.raw")
			wantCode(t, err, codes.FailedPrecondition, "resume after tampering")
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "cannot resume") {
				t.Fatalf("refusal %q; want it to say %q", err, tt.want)
			}
			if h.audited("evidence.resume_refused") != 1 {
				t.Errorf("the refusal was not audited: %v", h.audit)
			}
			if left := stagedLeft(t, client); len(left) != 0 {
				t.Errorf("staging left in the bucket: %v", left)
			}
			if up, err := h.st.GetUpload(context.Background(), upID); err != nil || up.State != "refused" {
				t.Errorf("upload %+v (%v), want refused", up, err)
			}
		})
	}
}

// TestStagedCommitIsIdempotent makes the controller die at each step of
// storing a staged upload, and checks that the agent's next finish stores
// it once, verified, with no staging left.
func TestStagedCommitIsIdempotent(t *testing.T) {
	tests := []struct {
		name    string
		fail    string
		copyMax int64
	}{
		{"died after completing the multipart upload", "CompleteMultipartUpload", 0},
		{"died before the copy", "CopyObject", 0},
		{"died before deleting the staging", "DeleteObject", 0},
		{"copied in parts, died after completing the staging", "CompleteMultipartUpload", 4 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fakeS3(t)
			h, rec := stagedHarness(t, client, evidence.S3Config{CopyObjectMaxBytes: tt.copyMax, CopyPartSize: 3 << 20})
			// A delete of a locked version falls back to a delete marker:
			// both must fail for the controller to stop there.
			rec.fail = map[string]int{tt.fail: 1, "DeleteObject": 0}
			if tt.fail == "DeleteObject" {
				rec.fail[tt.fail] = 2
			}
			data := randomBytes(t, evidence.S3CheckpointBytes+1<<20+7)
			u, err := h.open(agentA, taskA, "disk.img")
			if err != nil {
				t.Fatal(err)
			}
			if err := u.sendAll(data, 1<<20); err != nil {
				t.Fatal(err)
			}
			_, err = u.finish(len(data), sum256(data))
			wantCode(t, err, codes.Unavailable, "finish with the store failing")
			h.failover()
			u, err = h.open(agentA, taskA, "disk.img")
			if err != nil {
				t.Fatal(err)
			}
			if u.committed != uint64(len(data)) {
				t.Fatalf("resumed at %d, want all %d bytes committed", u.committed, len(data))
			}
			stored, err := u.finish(len(data), sum256(data))
			if err != nil {
				t.Fatal(err)
			}
			items, err := h.svc.ListItems(context.Background(), evidence.Filter{TaskID: taskA})
			if err != nil || len(items) != 1 || items[0].ID != stored.GetEvidenceId() {
				t.Fatalf("items %v (%v), want the one stored", items, err)
			}
			res, err := h.verify(stored.GetEvidenceId())
			if err != nil || len(res) != 1 || res[0].GetVerdict() != operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_OK {
				t.Fatalf("verify %v %v", res, err)
			}
			if left := stagedLeft(t, client); len(left) != 0 {
				t.Errorf("staging left in the bucket: %v", left)
			}
			if tt.copyMax > 0 && rec.calls("UploadPartCopy") != 4 {
				t.Errorf("%d UploadPartCopy calls, want 4 (9 MiB and 7 bytes in 3 MiB parts)", rec.calls("UploadPartCopy"))
			}
		})
	}
}

// TestLockedStagingVersionIsHidden refuses the delete of the staging
// object's version, as Object Lock does under a bucket default retention,
// and checks that the staging is hidden by a delete marker and the
// evidence stored.
func TestLockedStagingVersionIsHidden(t *testing.T) {
	client := fakeS3(t)
	h, rec := stagedHarness(t, client, evidence.S3Config{})
	rec.fail = map[string]int{"DeleteObject": 1}
	data := randomBytes(t, 1<<20+3)
	it := h.store("triage.bin", data)
	if it.Size != int64(len(data)) || rec.calls("DeleteObject") != 2 {
		t.Fatalf("item %+v after %d deletes; want stored after a refused delete and a delete marker", it, rec.calls("DeleteObject"))
	}
	if left := stagedLeft(t, client); len(left) != 0 {
		t.Errorf("staging left in the bucket: %v", left)
	}
}

// TestStagedCopyProtection checks what the server-side copy asks S3 for:
// the SHA-256 metadata, a write only if the key is new, SSE-KMS and
// compliance-mode Object Lock, as a Put does; the staging is encrypted
// and carries no retention.
func TestStagedCopyProtection(t *testing.T) {
	client := fakeS3(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	until := now.Add(30 * 24 * time.Hour)
	tests := []struct {
		name    string
		copyMax int64
	}{
		{"CopyObject", 0},
		{"UploadPartCopy", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, rec := stagedHarness(t, client, evidence.S3Config{Retention: 30 * 24 * time.Hour, KMSKeyID: "alias/evidence",
				Clock: func() time.Time { return now }, CopyObjectMaxBytes: tt.copyMax, CopyPartSize: 1 << 20})
			data := randomBytes(t, 2<<20+5)
			it := h.store("triage.bin", data)
			if !it.RetainUntil.Equal(until) {
				t.Errorf("retain until %s, want %s", it.RetainUntil, until)
			}
			type protection struct {
				sse   types.ServerSideEncryption
				kms   string
				mode  types.ObjectLockMode
				until *time.Time
			}
			var staging, stored protection
			var meta map[string]string
			var ifNoneMatch string
			for _, in := range rec.mps {
				p := protection{in.ServerSideEncryption, aws.ToString(in.SSEKMSKeyId), in.ObjectLockMode, in.ObjectLockRetainUntilDate}
				if strings.Contains(aws.ToString(in.Key), "/uploads/") {
					staging = p
				} else {
					stored, meta = p, in.Metadata
				}
			}
			if tt.copyMax == 0 {
				if len(rec.copies) != 1 {
					t.Fatalf("%d copies", len(rec.copies))
				}
				in := rec.copies[0]
				stored = protection{in.ServerSideEncryption, aws.ToString(in.SSEKMSKeyId), in.ObjectLockMode, in.ObjectLockRetainUntilDate}
				meta, ifNoneMatch = in.Metadata, aws.ToString(in.IfNoneMatch)
				if in.MetadataDirective != types.MetadataDirectiveReplace {
					t.Errorf("metadata directive %q", in.MetadataDirective)
				}
			} else if rec.calls("UploadPartCopy") != 3 {
				t.Errorf("%d UploadPartCopy calls, want 3", rec.calls("UploadPartCopy"))
			}
			if staging.sse != types.ServerSideEncryptionAwsKms || staging.kms != "alias/evidence" || staging.mode != "" || staging.until != nil {
				t.Errorf("staging protection %+v; want SSE-KMS and no retention", staging)
			}
			if stored.sse != types.ServerSideEncryptionAwsKms || stored.kms != "alias/evidence" || stored.mode != types.ObjectLockModeCompliance ||
				stored.until == nil || !stored.until.Equal(until) {
				t.Errorf("stored object protection %+v; want SSE-KMS and compliance retention until %s", stored, until)
			}
			if meta["firebreak-sha256"] != it.SHA256 {
				t.Errorf("metadata %v", meta)
			}
			if tt.copyMax == 0 && ifNoneMatch != "*" {
				t.Errorf("copy if-none-match %q", ifNoneMatch)
			}
		})
	}
}

// TestAbandonedStagedUploadsAreAborted ends a task with an S3 upload half
// done and checks that the janitor aborts its multipart upload.
func TestAbandonedStagedUploadsAreAborted(t *testing.T) {
	client := fakeS3(t)
	h, _ := stagedHarness(t, client, evidence.S3Config{})
	u := h.sendParts(randomBytes(t, evidence.S3CheckpointBytes+2<<20), 1)
	u.drop()
	h.endTask(taskA, agentv1.TaskStatus_TASK_STATUS_FAILED)
	h.failover() // no stream holds the upload any more
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()
	for i := 0; ; i++ {
		if len(stagedLeft(t, client)) == 0 && h.audited("evidence.upload_abandoned") > 0 {
			break
		}
		if i == 199 {
			t.Fatalf("the abandoned upload's staging is still in the bucket (%v), or its removal was not audited", stagedLeft(t, client))
		}
		waitABit()
	}
	cancel()
	<-done
	up, err := h.st.GetUpload(context.Background(), evidence.UploadID(taskA, "memory.raw"))
	if err != nil || up.State != "abandoned" {
		t.Fatalf("upload %+v (%v), want abandoned", up, err)
	}
}

// TestS3CheckpointFitsS3 keeps the S3 checkpoint a valid S3 part size, and
// the default item cap within the parts of one multipart upload.
func TestS3CheckpointFitsS3(t *testing.T) {
	if evidence.S3CheckpointBytes < evidence.MinPartBytes {
		t.Errorf("S3 checkpoint %d bytes, less than S3's smallest part of %d", evidence.S3CheckpointBytes, evidence.MinPartBytes)
	}
	if evidence.DefaultMaxBytes > evidence.S3CheckpointBytes*evidence.MaxParts {
		t.Errorf("the default cap of %d bytes needs more than %d parts of %d bytes", int64(evidence.DefaultMaxBytes), evidence.MaxParts, evidence.S3CheckpointBytes)
	}
	client := fakeS3(t)
	be, err := evidence.OpenS3(context.Background(), evidence.S3Config{Bucket: testBucket, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	_, err = evidence.New(evidence.Config{Store: &store.SQL{}, Backend: be, StagingDir: t.TempDir(), MaxBytes: evidence.S3CheckpointBytes*evidence.MaxParts + 1})
	if err == nil || !strings.Contains(err.Error(), "--evidence-max-bytes") {
		t.Errorf("a cap beyond what S3 staging holds: %v", err)
	}
}
