package awsemu

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// TestUnknownOperations calls real SDK operations the emulator does not
// serve; each service answers in its protocol's own words.
func TestUnknownOperations(t *testing.T) {
	l := newLab(t, 3)
	responder := l.assumeResponder(t, 2)
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"query", func() error {
			_, err := iam.NewFromConfig(responder).CreateGroup(ctx(t), &iam.CreateGroupInput{GroupName: aws.String("x")})
			return err
		}, "InvalidAction"},
		{"json", func() error {
			_, err := organizations.NewFromConfig(responder).ListPolicies(ctx(t), &organizations.ListPoliciesInput{Filter: "SERVICE_CONTROL_POLICY"})
			return err
		}, "UnknownOperationException"},
		{"rest json", func() error {
			_, err := lambda.NewFromConfig(responder).GetAlias(ctx(t), &lambda.GetAliasInput{FunctionName: aws.String("order-processor"), Name: aws.String("live")})
			return err
		}, "UnknownOperationException"},
		{"rest xml", func() error {
			_, err := s3.NewFromConfig(responder, pathStyle).GetBucketTagging(ctx(t), &s3.GetBucketTaggingInput{Bucket: aws.String(labBucket(2))})
			return err
		}, "NotImplemented"},
		{"json with query compatibility", func() error {
			_, err := sqs.NewFromConfig(responder).ListQueues(ctx(t), &sqs.ListQueuesInput{})
			return err
		}, "UnknownOperationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, tt.code)
			var re interface{ ServiceRequestID() string }
			if !errors.As(err, &re) || re.ServiceRequestID() == "" {
				t.Fatalf("error %v carries no request id", err)
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	l := newLab(t, 3)
	out, err := sts.NewFromConfig(l.controller()).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	id, found := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	calls := l.emu.Calls()
	if !found || id == "" || calls[len(calls)-1].RequestID != id {
		t.Fatalf("request id %q (found %v), call log says %q", id, found, calls[len(calls)-1].RequestID)
	}
	_, err = iam.NewFromConfig(l.controller()).GetRole(ctx(t), &iam.GetRoleInput{RoleName: aws.String("nope")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" || !strings.Contains(ae.ErrorMessage(), "because no identity-based policy allows the iam:GetRole action") {
		t.Fatalf("denied GetRole: %v", err)
	}
}

// signedRequest signs a raw request as the SDK would, at a given time.
func signedRequest(t *testing.T, l *lab, service, body string, at time.Time) *http.Request {
	t.Helper()
	key := labKey("controller/" + LabAccountID(1))
	req, err := http.NewRequest(http.MethodPost, l.srv.URL+"/", strings.NewReader(body))
	ok(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256Hex(body)
	ok(t, v4.NewSigner().SignHTTP(ctx(t), aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, req, sum, service, "us-east-1", at))
	return req
}

func TestSignatureEdges(t *testing.T) {
	l := newLab(t, 3)
	tests := []struct {
		name    string
		service string
		at      time.Time
		status  int
		code    string
	}{
		{"fresh", "sts", time.Now(), http.StatusOK, ""},
		{"signed 20 minutes ago", "sts", time.Now().Add(-20 * time.Minute), http.StatusForbidden, "<Code>SignatureDoesNotMatch</Code>"},
		{"service not emulated", "dynamodb", time.Now(), http.StatusBadRequest, "is not emulated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := signedRequest(t, l, tt.service, "Action=GetCallerIdentity&Version=2011-06-15", tt.at)
			resp, err := l.srv.Client().Do(req)
			ok(t, err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.code) {
				t.Fatalf("status %d body %s", resp.StatusCode, b)
			}
		})
	}
	// A body changed after signing no longer matches the signature.
	req := signedRequest(t, l, "sts", "Action=GetCallerIdentity&Version=2011-06-15", time.Now())
	req.Body = io.NopCloser(strings.NewReader("Action=GetCallerIdentity&Version=2011-06-16"))
	resp, err := l.srv.Client().Do(req)
	ok(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered body answered %d", resp.StatusCode)
	}
	// An unsigned request is refused.
	resp, err = http.Post(l.srv.URL+"/", "application/x-www-form-urlencoded", strings.NewReader("Action=GetCallerIdentity&Version=2011-06-15"))
	ok(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "MissingAuthenticationToken") {
		t.Fatalf("unsigned request: %d %s", resp.StatusCode, b)
	}
}

func TestStart(t *testing.T) {
	emu, err := New(Config{Seed: LabSeed(3)})
	ok(t, err)
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	ok(t, err)
	key := labKey("controller/" + LabAccountID(1))
	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}, nil
		}))}
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	if aws.ToString(out.Account) != LabAccountID(1) {
		t.Fatalf("account %s", aws.ToString(out.Account))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok(t, stop(sctx))
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{}); err == nil {
		t.Fatal("the emulator answered after stop")
	}
}

// TestEndpointFromEnvironment points unmodified clients at the emulator the
// way Firebreak's binaries are: through the SDK's standard environment.
func TestEndpointFromEnvironment(t *testing.T) {
	l := newLab(t, 3)
	key := labKey("ci/" + LabAccountID(2))
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": l.srv.URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": key.ID, "AWS_SECRET_ACCESS_KEY": key.Secret,
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"), "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(ctx(t))
	ok(t, err)
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)
	if aws.ToString(id.Account) != LabAccountID(2) {
		t.Fatalf("account %s", aws.ToString(id.Account))
	}
	buckets, err := s3.NewFromConfig(cfg).ListBuckets(ctx(t), &s3.ListBucketsInput{})
	ok(t, err)
	if len(buckets.Buckets) != 1 {
		t.Fatalf("buckets %+v", buckets.Buckets)
	}
	_, err = lambda.NewFromConfig(cfg).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
	ok(t, err)
}
