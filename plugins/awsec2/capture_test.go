package awsec2_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"slices"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

func TestCaptureEmitsTheFactsAsEvidence(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	calls := lab.Emu.CallCounts()
	lab.Emu.ThrottleNext("ec2", "GetConsoleOutput", 1)
	o := run(t, awsec2.NewCapture(awsec2.Config{}), lab.Request(t, member), map[string]any{"instance_id": id})
	var res awsec2.CaptureResult
	o.Output(t, &res)
	if o.Err != nil || o.Result.GetError() != "" || len(res.Unavailable) != 0 {
		t.Fatalf("capture: %v %s %v", o.Err, o.Result.GetError(), res.Unavailable)
	}
	if i := slices.IndexFunc(res.Calls, func(c awsec2.APICall) bool { return c.Operation == "ec2:GetConsoleOutput" }); i < 0 || res.Calls[i].Attempts != 2 {
		t.Errorf("the throttled GetConsoleOutput was not retried: %+v", res.Calls)
	}
	if n := mutatingCalls(lab.Emu.CallCounts()) - mutatingCalls(calls); n != 0 {
		t.Fatalf("the capture made %d changing calls", n)
	}
	if len(res.Artifacts) != 3 || len(o.Closed) != 3 {
		t.Fatalf("artifacts %+v, closed %v", res.Artifacts, o.Closed)
	}
	for _, a := range res.Artifacts {
		data := o.Artifacts[a.Name]
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != a.SHA256 || len(data) != a.Bytes || !strings.HasPrefix(a.Name, id) {
			t.Errorf("artifact %+v does not match the %d bytes emitted", a, len(data))
		}
	}
	var facts awsec2.Facts
	factsName := res.Artifacts[0].Name
	if err := json.Unmarshal(o.Artifacts[factsName], &facts); err != nil || res.Artifacts[0].MediaType != "application/json" {
		t.Fatalf("facts %s (%s): %v", factsName, res.Artifacts[0].MediaType, err)
	}
	if facts.InstanceID != id || facts.Instance == nil || len(facts.NetworkInterfaces) != 1 || len(facts.Volumes) != 2 || len(facts.SecurityGroups) != 1 ||
		facts.AutoScalingGroup == nil || len(facts.TargetGroups) != 2 || len(facts.TargetHealth) != 2 || len(facts.ProfileAssociations) != 1 ||
		facts.Attributes["disableApiTermination"] != "false" || !strings.Contains(facts.ConsoleOutput, id) {
		t.Errorf("facts %+v", facts)
	}
	if string(o.Artifacts[res.Artifacts[1].Name]) != facts.ConsoleOutput || res.ConsoleOutputBytes != len(facts.ConsoleOutput) {
		t.Errorf("console artifact differs from the facts' console output")
	}
	if _, err := jpeg.Decode(bytes.NewReader(o.Artifacts[res.Artifacts[2].Name])); err != nil || res.Artifacts[2].MediaType != "image/jpeg" {
		t.Errorf("screenshot %s: %v", res.Artifacts[2].MediaType, err)
	}
	s := res.Summary
	if s.State != "running" || s.AutoScalingGroup != "web-asg" || len(s.TargetGroups) != 2 || len(s.Volumes) != 2 || s.InstanceProfileARN == "" {
		t.Errorf("summary %+v", s)
	}
}

func TestCaptureRecordsWhatItCouldNotRead(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	var ci awsemu.AccessKeySeed
	for _, a := range lab.Seed.Accounts {
		if a.ID == member {
			ci = a.Users[0].AccessKeys[0]
		}
	}
	// The compromised user may describe EC2 but not read consoles or Auto
	// Scaling: the capture keeps what it can.
	req := lab.Request(t, member)
	req.Aws = &pluginv1.AWSCredentials{AccessKeyId: ci.ID, SecretAccessKey: ci.Secret, Account: member, Region: awstest.Region, EndpointUrl: lab.Endpoint}
	o := run(t, awsec2.NewCapture(awsec2.Config{}), req, map[string]any{"instance_id": id})
	var res awsec2.CaptureResult
	o.Output(t, &res)
	if o.Result.GetError() != "" {
		t.Fatalf("capture failed: %s", o.Result.GetError())
	}
	for _, part := range []string{"console output", "console screenshot", "auto scaling", "target groups"} {
		if !strings.Contains(res.Unavailable[part], "denied") {
			t.Errorf("unavailable[%s] = %q", part, res.Unavailable[part])
		}
	}
	if len(res.Artifacts) != 2 || res.Summary.State != "running" {
		t.Fatalf("artifacts %+v summary %+v", res.Artifacts, res.Summary)
	}
}

// TestActionsExplainBadTargets checks each action's errors for a missing
// instance, a wrong region and a parameter that disagrees with the
// credentials.
func TestActionsExplainBadTargets(t *testing.T) {
	lab := awstest.Start(t, 3)
	member := awstest.Member(0)
	id := labInstance(t, lab, member, "web-1")
	actions := map[string]func() sdk.Action{
		awsec2.IsolateName:   func() sdk.Action { return awsec2.NewIsolate(awsec2.Config{}) },
		awsec2.UnisolateName: func() sdk.Action { return awsec2.NewUnisolate(awsec2.Config{}) },
		awsec2.SnapshotName:  func() sdk.Action { return awsec2.NewSnapshot(awsec2.Config{}) },
		awsec2.CaptureName:   func() sdk.Action { return awsec2.NewCapture(awsec2.Config{}) },
	}
	for name, newAction := range actions {
		for _, tt := range []struct {
			name   string
			region string
			params map[string]any
			want   string
		}{
			{name: "missing instance", params: map[string]any{"instance_id": "i-0123456789abcdef0"},
				want: fmt.Sprintf("instance i-0123456789abcdef0 not found in account %s region us-east-1", member)},
			{name: "wrong region", region: "us-west-2", params: map[string]any{"instance_id": id},
				want: fmt.Sprintf("instance %s not found in account %s region us-west-2", id, member)},
			{name: "region not enabled for the account", region: "eu-west-1", params: map[string]any{"instance_id": id},
				want: "AWS refused the task's credentials in region eu-west-1"},
			{name: "account parameter disagrees", params: map[string]any{"instance_id": id, "account": awstest.SecurityAccount()},
				want: "the account parameter says " + awstest.SecurityAccount()},
		} {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				req := lab.Request(t, member)
				if tt.region != "" {
					req.Aws.Region = tt.region
				}
				o := run(t, newAction(), req, tt.params)
				msg := o.Result.GetError()
				if o.Err != nil {
					msg = o.Err.Error()
				}
				if !strings.Contains(msg, tt.want) {
					t.Fatalf("error %q, want %q", msg, tt.want)
				}
			})
		}
	}
}
