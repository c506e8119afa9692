package readiness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
)

// TestCheckEvidenceBackend probes evidence stores as the controller does
// (S3 through the real SDK against the emulator, with the controller's own
// key) and checks the evidence.backend outcome for each state: ok, warn,
// fail and unknown.
func TestCheckEvidenceBackend(t *testing.T) {
	sec := awsemu.LabAccountID(1)
	seed := awsemu.LabSeed(3)
	var key awsemu.AccessKeySeed
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		if a.ID != sec {
			continue
		}
		a.Buckets = append(a.Buckets,
			awsemu.BucketSeed{Name: "evidence-locked", ObjectLock: &awsemu.ObjectLockSeed{Mode: "COMPLIANCE", Days: 365}},
			awsemu.BucketSeed{Name: "evidence-lock-no-default", ObjectLock: &awsemu.ObjectLockSeed{}},
			awsemu.BucketSeed{Name: "evidence-plain"},
			awsemu.BucketSeed{Name: "evidence-versioned", Versioning: "Enabled"},
			awsemu.BucketSeed{Name: "evidence-hidden", ObjectLock: &awsemu.ObjectLockSeed{Mode: "COMPLIANCE", Days: 365}},
		)
		for j := range a.Users {
			if u := &a.Users[j]; u.Name == awsemu.LabControllerUser {
				key = u.AccessKeys[0]
				u.InlinePolicies["Evidence"] = awsemu.PolicyText(`{"Version":"2012-10-17","Statement":[` +
					`{"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketObjectLockConfiguration","s3:GetBucketVersioning"],"Resource":"*"},` +
					`{"Effect":"Deny","Action":["s3:GetBucketVersioning"],"Resource":"arn:aws:s3:::evidence-hidden"}]}`)
			}
		}
	}
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	client := s3.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")}, func(o *s3.Options) { o.UsePathStyle = true })
	ctx := context.Background()
	probeS3 := func(bucket string, retention time.Duration) *evidence.Probe {
		b, err := evidence.OpenS3(ctx, evidence.S3Config{Bucket: bucket, Prefix: "evidence", Client: client, Retention: retention})
		if err != nil {
			t.Fatal(err)
		}
		p := b.Probe(ctx)
		return &p
	}
	local, err := evidence.NewLocal(filepath.Join(t.TempDir(), "evidence"))
	if err != nil {
		t.Fatal(err)
	}
	gone, err := evidence.NewLocal(filepath.Join(t.TempDir(), "gone"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(gone.Root()); err != nil {
		t.Fatal(err)
	}
	localProbe := func(l *evidence.Local) *evidence.Probe { p := l.Probe(ctx); return &p }
	// A bucket deleted after the controller started: the probe's
	// HeadBucket asks the emulator about a bucket it does not hold.
	deleted := &deletedBucket{Client: client}
	b, err := evidence.OpenS3(ctx, evidence.S3Config{Bucket: "evidence-locked", Client: deleted})
	if err != nil {
		t.Fatal(err)
	}
	deleted.gone = true
	unreachable := b.Probe(ctx)
	tests := []struct {
		name  string
		probe *evidence.Probe
		want  want
	}{
		{"locked and versioned", probeS3("evidence-locked", 0), want{StatusOK, "Object Lock COMPLIANCE 365 days, versioning Enabled", ""}},
		{"lock without default, controller retention", probeS3("evidence-lock-no-default", 24*time.Hour),
			want{StatusOK, "Object Lock enabled, no default retention, versioning Enabled, 24h0m0s compliance retention", ""}},
		{"lock without any retention", probeS3("evidence-lock-no-default", 0), want{StatusWarn, "no retention of its own", "--evidence-retention"}},
		{"no object lock", probeS3("evidence-versioned", 0), want{StatusFail, "Object Lock off", "put-object-lock-configuration --bucket evidence-versioned"}},
		{"nothing", probeS3("evidence-plain", 0), want{StatusFail, "versioning never enabled", "put-bucket-versioning --bucket evidence-plain"}},
		{"settings denied", probeS3("evidence-hidden", 0), want{StatusUnknown, "s3:GetBucketVersioning", "allow s3:GetBucketObjectLockConfiguration and s3:GetBucketVersioning"}},
		{"bucket deleted", &unreachable, want{StatusFail, "s3:HeadBucket on evidence-locked failed", "s3:ListBucket"}},
		{"local", localProbe(local), want{StatusOK, "takes new files", ""}},
		{"local directory gone", localProbe(gone), want{StatusFail, "does not take a new file", "install -d -m 0700"}},
		{"not probed", nil, want{StatusUnknown, "not probed", "controller"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.want.check(t, checkEvidenceBackend(tt.probe)) })
	}
}

// deletedBucket is the real client, whose HeadBucket asks about a bucket
// that does not exist once gone is set.
type deletedBucket struct {
	*s3.Client
	gone bool
}

func (d *deletedBucket) HeadBucket(ctx context.Context, in *s3.HeadBucketInput, o ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	if d.gone {
		in = &s3.HeadBucketInput{Bucket: aws.String("evidence-deleted")}
	}
	return d.Client.HeadBucket(ctx, in, o...)
}
