// Package awsec2test helps tests drive the EC2 actions against the lab's
// emulator: the environment a worker process needs to reach it, and the
// lab's instances by name.
package awsec2test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
)

// WorkerEnv returns the environment of a worker process that starts from
// the lab's controller user and assumes the security account's
// FirebreakWorker role through a profile, exactly as a deployed worker
// would from its instance role, with every AWS endpoint pointing at the
// emulator. It writes the AWS config file into a temporary directory and
// clears the credential variables the test process may carry.
func WorkerEnv(t testing.TB, lab *awstest.Lab) []string {
	t.Helper()
	dir := t.TempDir()
	key := lab.ControllerKey(t)
	cfgFile := filepath.Join(dir, "aws-config")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`[profile lab-user]
aws_access_key_id = %s
aws_secret_access_key = %s
region = %s

[profile firebreak-worker]
role_arn = arn:aws:iam::%s:role/%s
source_profile = lab-user
region = %s
`, key.ID, key.Secret, awstest.Region, awstest.SecurityAccount(), awsemu.LabWorkerRole, awstest.Region)), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"AWS_CONFIG_FILE=" + cfgFile, "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-credentials"), "AWS_PROFILE=firebreak-worker",
		"AWS_ENDPOINT_URL=" + lab.Endpoint,
		// The SDK builds the profile's assume-role STS client before it
		// reads AWS_ENDPOINT_URL; the per-service variable reaches it.
		"AWS_ENDPOINT_URL_STS=" + lab.Endpoint,
		"AWS_REGION=" + awstest.Region, "AWS_DEFAULT_REGION=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Instance returns the id of the named instance (web-1, web-2, worker-1,
// app-N) of a lab account.
func Instance(t testing.TB, lab *awstest.Lab, account, name string) string {
	t.Helper()
	for _, a := range lab.Seed.Accounts {
		if a.ID != account {
			continue
		}
		for _, r := range a.Resources {
			for _, in := range r.Instances {
				if in.Name == name {
					return in.ID
				}
			}
		}
	}
	t.Fatalf("the lab has no instance %s in account %s", name, account)
	return ""
}

// Instances returns the ids of every instance of a lab account, in seed
// order.
func Instances(lab *awstest.Lab, account string) []string {
	var ids []string
	for _, a := range lab.Seed.Accounts {
		if a.ID != account {
			continue
		}
		for _, r := range a.Resources {
			for _, in := range r.Instances {
				ids = append(ids, in.ID)
			}
		}
	}
	return ids
}
