package awstest_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
)

func TestCredentialsWorkInTheMemberAccount(t *testing.T) {
	lab := awstest.Start(t, 3)
	creds := lab.Credentials(t, awstest.Member(0))
	cfg, err := awsclient.Config(creds)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ec2.NewFromConfig(cfg).DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range out.Reservations {
		if aws.ToString(r.OwnerId) != awstest.Member(0) {
			t.Fatalf("instance of account %s listed", aws.ToString(r.OwnerId))
		}
		n += len(r.Instances)
	}
	if n < 3 {
		t.Fatalf("%d instances in the member account, want at least 3", n)
	}
}
