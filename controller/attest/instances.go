package attest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// EC2API is the one EC2 call the instance check makes.
type EC2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput, optFns ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// AWSInstances reads instances through the controller's own AWS
// credentials: in each account it assumes the responder role (the one the
// workers use) and calls ec2:DescribeInstances. Enrollment must answer
// within its RPC, and workers are reached only through tasks the
// dispatcher queues and a worker may run minutes later, so the controller
// asks AWS itself.
type AWSInstances struct {
	// Base is the controller's SDK configuration (its default chain, and
	// AWS_ENDPOINT_URL for an emulator).
	Base aws.Config
	// RoleName is the role assumed in each account (FirebreakResponder).
	RoleName string
	// ExternalID is passed on AssumeRole when set.
	ExternalID string
	// Partition is the ARN partition (default aws).
	Partition string
	// NewEC2 builds the EC2 client from a configuration (default
	// ec2.NewFromConfig).
	NewEC2 func(aws.Config) EC2API

	mu      sync.Mutex
	clients map[string]EC2API
}

// Instance implements InstanceReader.
func (a *AWSInstances) Instance(ctx context.Context, account, region, instanceID string) (*Instance, error) {
	out, err := a.client(account, region).DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "InvalidInstanceID.NotFound" || ae.ErrorCode() == "InvalidInstanceID.Malformed") {
		return nil, ErrNoInstance
	}
	if err != nil {
		return nil, fmt.Errorf("ec2:DescribeInstances as %s in %s: %w", a.RoleName, account, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != instanceID {
				continue
			}
			tags := map[string]string{}
			for _, t := range in.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			state := ""
			if in.State != nil {
				state = string(in.State.Name)
			}
			return &Instance{State: state, Tags: tags}, nil
		}
	}
	return nil, ErrNoInstance
}

// client returns the EC2 client of an account and region, its role
// credentials cached and renewed by the SDK.
func (a *AWSInstances) client(account, region string) EC2API {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := account + "/" + region
	if c := a.clients[key]; c != nil {
		return c
	}
	if a.clients == nil {
		a.clients = map[string]EC2API{}
	}
	partition := a.Partition
	if partition == "" {
		partition = "aws"
	}
	cfg := a.Base.Copy()
	cfg.Region = region
	roleARN := fmt.Sprintf("arn:%s:iam::%s:role/%s", partition, account, a.RoleName)
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "firebreak-attest"
		if a.ExternalID != "" {
			o.ExternalID = aws.String(a.ExternalID)
		}
	}))
	newEC2 := a.NewEC2
	if newEC2 == nil {
		newEC2 = func(c aws.Config) EC2API { return ec2.NewFromConfig(c) }
	}
	c := newEC2(cfg)
	a.clients[key] = c
	return c
}
