package awsemu

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// TestTerminateInstance: an instance terminated out of band is reported
// terminated by DescribeInstances; termination protection, an unknown
// instance, account or region are refused and change nothing.
func TestTerminateInstance(t *testing.T) {
	seed, key := intruderSeed()
	l := newLabFrom(t, seed, false)
	member := LabAccountID(2)
	web1, web2 := labEC2ID("i", member+"/web-1"), labEC2ID("i", member+"/web-2")
	ec := ec2.NewFromConfig(l.keyCfg(key))
	if _, err := ec.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(web2),
		DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err != nil {
		t.Fatal(err)
	}
	state := func(id string) ec2types.InstanceStateName {
		t.Helper()
		out, err := ec.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Reservations[0].Instances[0].State.Name
	}
	tests := []struct {
		name                      string
		account, region, instance string
		wantErr                   string
		check                     string
		want                      ec2types.InstanceStateName
	}{
		{name: "protected", account: member, region: "us-east-1", instance: web2, wantErr: "OperationNotPermitted", check: web2, want: ec2types.InstanceStateNameRunning},
		{name: "unknown instance", account: member, region: "us-east-1", instance: "i-0123456789abcdef0", wantErr: "InvalidInstanceID.NotFound", check: web1, want: ec2types.InstanceStateNameRunning},
		{name: "unknown account", account: "999999999999", region: "us-east-1", instance: web1, wantErr: "no account", check: web1, want: ec2types.InstanceStateNameRunning},
		{name: "region not enabled", account: member, region: "ap-east-1", instance: web1, wantErr: "not enabled", check: web1, want: ec2types.InstanceStateNameRunning},
		{name: "terminated", account: member, region: "us-east-1", instance: web1, check: web1, want: ec2types.InstanceStateNameTerminated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.emu.TerminateInstance(tt.account, tt.region, tt.instance)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("TerminateInstance: %v; want error %q", err, tt.wantErr)
			}
			if got := state(tt.check); got != tt.want {
				t.Fatalf("%s is %s; want %s", tt.check, got, tt.want)
			}
		})
	}
}
