package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// startLabAWS starts the emulator with the three-account lab organisation
// and points the SDK's standard environment at it: the worker's profile
// assumes the security account's FirebreakWorker role from the lab's
// controller user, exactly as a deployed worker would from its instance
// role.
func startLabAWS(t *testing.T) (*awsemu.Emulator, string) {
	t.Helper()
	seed := awsemu.LabSeed(3)
	emu, err := awsemu.New(awsemu.Config{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	sec := awsemu.LabAccountID(1)
	var key awsemu.AccessKeySeed
	for _, a := range seed.Accounts {
		if a.ID == sec {
			key = a.Users[0].AccessKeys[0]
		}
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`[profile lab-user]
aws_access_key_id = %s
aws_secret_access_key = %s
region = us-east-1

[profile firebreak-worker]
role_arn = arn:aws:iam::%s:role/%s
source_profile = lab-user
region = us-east-1
`, key.ID, key.Secret, sec, awsemu.LabWorkerRole)), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"AWS_CONFIG_FILE": cfgFile, "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_PROFILE": "firebreak-worker", "AWS_ENDPOINT_URL": endpoint,
		// The SDK builds the profile's assume-role STS client before it reads
		// AWS_ENDPOINT_URL; the per-service variable reaches it.
		"AWS_ENDPOINT_URL_STS": endpoint, "AWS_REGION": "", "AWS_ACCESS_KEY_ID": "",
		"AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	return emu, endpoint
}

func TestCredentialBrokerAssumesResponderRole(t *testing.T) {
	emu, endpoint := startLabAWS(t)
	ctx := context.Background()
	member := awsemu.LabAccountID(2)
	tests := []struct {
		name       string
		externalID string
		spec       *agentv1.TaskSpec
		wantErr    string
		wantUnreac bool
	}{
		{name: "member account through the run's params", externalID: awsemu.LabExternalID,
			spec: &agentv1.TaskSpec{RunId: "run-0123456789abcdef", CaseId: "case-1", Operator: "alice",
				ParamsJson: []byte(fmt.Sprintf(`{"account":%q,"region":"us-east-1"}`, member))}},
		{name: "account-targeted task", externalID: awsemu.LabExternalID,
			spec: &agentv1.TaskSpec{RunId: "run-2", Operator: "playbook:iam", Account: member, Region: "us-east-1"}},
		{name: "wrong external id", externalID: "guess",
			spec: &agentv1.TaskSpec{RunId: "run-3", Account: member, Region: "us-east-1"}, wantErr: "trust policy refuses", wantUnreac: true},
		{name: "no responder role in an account outside the lab", externalID: awsemu.LabExternalID,
			spec: &agentv1.TaskSpec{RunId: "run-4", Account: "999999999999", Region: "us-east-1"}, wantErr: "role is missing", wantUnreac: true},
		{name: "conflicting account", externalID: awsemu.LabExternalID,
			spec: &agentv1.TaskSpec{RunId: "run-5", Account: member, ParamsJson: []byte(`{"account":"999999999999"}`)}, wantErr: "but its account parameter says"},
		{name: "not an account id", externalID: awsemu.LabExternalID,
			spec: &agentv1.TaskSpec{RunId: "run-6", ParamsJson: []byte(`{"account":"12345"}`)}, wantErr: "not a 12-digit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newCredentialBroker(ctx, WorkerConfig{ExternalID: tt.externalID}, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			if b.account != awsemu.LabAccountID(1) || !strings.Contains(b.arn, awsemu.LabWorkerRole) {
				t.Fatalf("worker identity %s %s", b.account, b.arn)
			}
			creds, err := b.For(ctx, tt.spec)
			if tt.wantErr != "" {
				var ue *UnreachableError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.As(err, &ue) != tt.wantUnreac {
					t.Fatalf("err = %v, want %q (unreachable %v)", err, tt.wantErr, tt.wantUnreac)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if creds.GetAccount() != member || creds.GetEndpointUrl() != endpoint || creds.GetSessionToken() == "" ||
				time.Until(creds.GetExpiration().AsTime()) > time.Hour+time.Minute {
				t.Fatalf("credentials %+v", creds)
			}
			// The credentials work, in the member account, as the run's
			// session of the responder role.
			client := sts.New(sts.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
				Credentials: credentials.NewStaticCredentialsProvider(creds.GetAccessKeyId(), creds.GetSecretAccessKey(), creds.GetSessionToken())})
			id, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				t.Fatal(err)
			}
			wantARN := fmt.Sprintf("arn:aws:sts::%s:assumed-role/FirebreakResponder/firebreak-%s", member, tt.spec.GetRunId())
			if aws.ToString(id.Arn) != wantARN {
				t.Fatalf("caller %s, want %s", aws.ToString(id.Arn), wantARN)
			}
			// A second task of the same run reuses the session.
			before := emu.CallCount("sts", "AssumeRole")
			if _, err := b.For(ctx, tt.spec); err != nil {
				t.Fatal(err)
			}
			if emu.CallCount("sts", "AssumeRole") != before {
				t.Fatal("cached credentials were not reused")
			}
		})
	}
}
