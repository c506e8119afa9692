package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestBenchEnrollByIID runs `firebreak bench enroll --join aws-iid` at
// small scale, for real: the controller process trusting the AWS
// emulator's identity CA, the policy set through the CLI, an API worker
// process enrolled by aws-sts that registers the accounts, and 20
// simulated agents each reading its own instance's signed document over
// IMDSv2 from the emulator. Every agent must enrol and connect, be listed
// by `agents list --json` with attestation aws-iid and its own instance
// id, and no error be counted.
func TestBenchEnrollByIID(t *testing.T) {
	b := e2e.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const agents = 20
	cmd := exec.CommandContext(ctx, b.Firebreak, "bench", "enroll", "--agents", "20", "--join", "aws-iid",
		"--bin-dir", filepath.Dir(b.Agent), "--wait", "3m", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench enroll --join aws-iid: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var res struct {
		Agents         int     `json:"agents"`
		Enrolled       int     `json:"enrolled"`
		TimeTo99MS     float64 `json:"time_to_99_ms"`
		TimeToAllMS    float64 `json:"time_to_all_ms"`
		Errors         int     `json:"errors"`
		Join           string  `json:"join"`
		AttestedAWSIID *int    `json:"attested_aws_iid"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("decoding %s: %v", stdout.String(), err)
	}
	if res.Agents != agents || res.Enrolled != agents || res.Errors != 0 || res.Join != "aws-iid" {
		t.Fatalf("result %s: want %d agents, all enrolled, 0 errors, join aws-iid", stdout.String(), agents)
	}
	if res.AttestedAWSIID == nil || *res.AttestedAWSIID != agents {
		t.Fatalf("result %s: want all %d agents listed by agents list --json as enrolled by aws-iid", stdout.String(), agents)
	}
	if res.TimeTo99MS <= 0 || res.TimeToAllMS < res.TimeTo99MS {
		t.Fatalf("result %s: want 0 < time_to_99_ms <= time_to_all_ms", stdout.String())
	}
}
