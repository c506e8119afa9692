package awsec2

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go/middleware"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The AWS operations the four actions call, one interface per operation
// where the SDK has no per-operation interface of its own (it has them only
// for paginated operations).
type (
	// DescribeInstanceAttributeAPI reads one instance attribute.
	DescribeInstanceAttributeAPI interface {
		DescribeInstanceAttribute(context.Context, *ec2.DescribeInstanceAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeInstanceAttributeOutput, error)
	}
	// ModifyInstanceAttributeAPI changes one instance attribute.
	ModifyInstanceAttributeAPI interface {
		ModifyInstanceAttribute(context.Context, *ec2.ModifyInstanceAttributeInput, ...func(*ec2.Options)) (*ec2.ModifyInstanceAttributeOutput, error)
	}
	// ModifyNetworkInterfaceAttributeAPI changes an ENI's security groups.
	ModifyNetworkInterfaceAttributeAPI interface {
		ModifyNetworkInterfaceAttribute(context.Context, *ec2.ModifyNetworkInterfaceAttributeInput, ...func(*ec2.Options)) (*ec2.ModifyNetworkInterfaceAttributeOutput, error)
	}
	// CreateSecurityGroupAPI creates a security group.
	CreateSecurityGroupAPI interface {
		CreateSecurityGroup(context.Context, *ec2.CreateSecurityGroupInput, ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error)
	}
	// DeleteSecurityGroupAPI deletes a security group.
	DeleteSecurityGroupAPI interface {
		DeleteSecurityGroup(context.Context, *ec2.DeleteSecurityGroupInput, ...func(*ec2.Options)) (*ec2.DeleteSecurityGroupOutput, error)
	}
	// AuthorizeSecurityGroupIngressAPI adds inbound rules.
	AuthorizeSecurityGroupIngressAPI interface {
		AuthorizeSecurityGroupIngress(context.Context, *ec2.AuthorizeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupIngressOutput, error)
	}
	// AuthorizeSecurityGroupEgressAPI adds outbound rules.
	AuthorizeSecurityGroupEgressAPI interface {
		AuthorizeSecurityGroupEgress(context.Context, *ec2.AuthorizeSecurityGroupEgressInput, ...func(*ec2.Options)) (*ec2.AuthorizeSecurityGroupEgressOutput, error)
	}
	// RevokeSecurityGroupIngressAPI removes inbound rules.
	RevokeSecurityGroupIngressAPI interface {
		RevokeSecurityGroupIngress(context.Context, *ec2.RevokeSecurityGroupIngressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupIngressOutput, error)
	}
	// RevokeSecurityGroupEgressAPI removes outbound rules.
	RevokeSecurityGroupEgressAPI interface {
		RevokeSecurityGroupEgress(context.Context, *ec2.RevokeSecurityGroupEgressInput, ...func(*ec2.Options)) (*ec2.RevokeSecurityGroupEgressOutput, error)
	}
	// CreateTagsAPI adds or overwrites tags.
	CreateTagsAPI interface {
		CreateTags(context.Context, *ec2.CreateTagsInput, ...func(*ec2.Options)) (*ec2.CreateTagsOutput, error)
	}
	// DeleteTagsAPI removes tags.
	DeleteTagsAPI interface {
		DeleteTags(context.Context, *ec2.DeleteTagsInput, ...func(*ec2.Options)) (*ec2.DeleteTagsOutput, error)
	}
	// AssociateIamInstanceProfileAPI attaches an instance profile.
	AssociateIamInstanceProfileAPI interface {
		AssociateIamInstanceProfile(context.Context, *ec2.AssociateIamInstanceProfileInput, ...func(*ec2.Options)) (*ec2.AssociateIamInstanceProfileOutput, error)
	}
	// DisassociateIamInstanceProfileAPI detaches an instance profile.
	DisassociateIamInstanceProfileAPI interface {
		DisassociateIamInstanceProfile(context.Context, *ec2.DisassociateIamInstanceProfileInput, ...func(*ec2.Options)) (*ec2.DisassociateIamInstanceProfileOutput, error)
	}
	// CreateSnapshotsAPI takes crash-consistent snapshots of an instance.
	CreateSnapshotsAPI interface {
		CreateSnapshots(context.Context, *ec2.CreateSnapshotsInput, ...func(*ec2.Options)) (*ec2.CreateSnapshotsOutput, error)
	}
	// CopySnapshotAPI copies a snapshot, optionally re-encrypting it.
	CopySnapshotAPI interface {
		CopySnapshot(context.Context, *ec2.CopySnapshotInput, ...func(*ec2.Options)) (*ec2.CopySnapshotOutput, error)
	}
	// DescribeSnapshotAttributeAPI reads who may use a snapshot.
	DescribeSnapshotAttributeAPI interface {
		DescribeSnapshotAttribute(context.Context, *ec2.DescribeSnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.DescribeSnapshotAttributeOutput, error)
	}
	// ModifySnapshotAttributeAPI shares a snapshot.
	ModifySnapshotAttributeAPI interface {
		ModifySnapshotAttribute(context.Context, *ec2.ModifySnapshotAttributeInput, ...func(*ec2.Options)) (*ec2.ModifySnapshotAttributeOutput, error)
	}
	// GetConsoleOutputAPI reads the serial console output.
	GetConsoleOutputAPI interface {
		GetConsoleOutput(context.Context, *ec2.GetConsoleOutputInput, ...func(*ec2.Options)) (*ec2.GetConsoleOutputOutput, error)
	}
	// GetConsoleScreenshotAPI takes a console screenshot.
	GetConsoleScreenshotAPI interface {
		GetConsoleScreenshot(context.Context, *ec2.GetConsoleScreenshotInput, ...func(*ec2.Options)) (*ec2.GetConsoleScreenshotOutput, error)
	}

	// EnterStandbyAPI moves instances to Standby.
	EnterStandbyAPI interface {
		EnterStandby(context.Context, *autoscaling.EnterStandbyInput, ...func(*autoscaling.Options)) (*autoscaling.EnterStandbyOutput, error)
	}
	// ExitStandbyAPI moves instances back in service.
	ExitStandbyAPI interface {
		ExitStandby(context.Context, *autoscaling.ExitStandbyInput, ...func(*autoscaling.Options)) (*autoscaling.ExitStandbyOutput, error)
	}
	// DetachInstancesAPI removes instances from a group.
	DetachInstancesAPI interface {
		DetachInstances(context.Context, *autoscaling.DetachInstancesInput, ...func(*autoscaling.Options)) (*autoscaling.DetachInstancesOutput, error)
	}
	// AttachInstancesAPI adds instances to a group.
	AttachInstancesAPI interface {
		AttachInstances(context.Context, *autoscaling.AttachInstancesInput, ...func(*autoscaling.Options)) (*autoscaling.AttachInstancesOutput, error)
	}
	// SuspendProcessesAPI suspends scaling processes.
	SuspendProcessesAPI interface {
		SuspendProcesses(context.Context, *autoscaling.SuspendProcessesInput, ...func(*autoscaling.Options)) (*autoscaling.SuspendProcessesOutput, error)
	}
	// ResumeProcessesAPI resumes scaling processes.
	ResumeProcessesAPI interface {
		ResumeProcesses(context.Context, *autoscaling.ResumeProcessesInput, ...func(*autoscaling.Options)) (*autoscaling.ResumeProcessesOutput, error)
	}

	// RegisterTargetsAPI registers targets with a target group.
	RegisterTargetsAPI interface {
		RegisterTargets(context.Context, *elbv2.RegisterTargetsInput, ...func(*elbv2.Options)) (*elbv2.RegisterTargetsOutput, error)
	}
	// DeregisterTargetsAPI deregisters targets from a target group.
	DeregisterTargetsAPI interface {
		DeregisterTargets(context.Context, *elbv2.DeregisterTargetsInput, ...func(*elbv2.Options)) (*elbv2.DeregisterTargetsOutput, error)
	}

	// PutRolePolicyAPI writes a role's inline policy.
	PutRolePolicyAPI interface {
		PutRolePolicy(context.Context, *iam.PutRolePolicyInput, ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
	}
	// GetRolePolicyAPI reads a role's inline policy.
	GetRolePolicyAPI interface {
		GetRolePolicy(context.Context, *iam.GetRolePolicyInput, ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	}
	// DeleteRolePolicyAPI deletes a role's inline policy.
	DeleteRolePolicyAPI interface {
		DeleteRolePolicy(context.Context, *iam.DeleteRolePolicyInput, ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error)
	}
)

// EC2 is the part of the EC2 API the actions call.
type EC2 interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeNetworkInterfacesAPIClient
	ec2.DescribeSecurityGroupsAPIClient
	ec2.DescribeVolumesAPIClient
	ec2.DescribeSnapshotsAPIClient
	ec2.DescribeIamInstanceProfileAssociationsAPIClient
	DescribeInstanceAttributeAPI
	ModifyInstanceAttributeAPI
	ModifyNetworkInterfaceAttributeAPI
	CreateSecurityGroupAPI
	DeleteSecurityGroupAPI
	AuthorizeSecurityGroupIngressAPI
	AuthorizeSecurityGroupEgressAPI
	RevokeSecurityGroupIngressAPI
	RevokeSecurityGroupEgressAPI
	CreateTagsAPI
	DeleteTagsAPI
	AssociateIamInstanceProfileAPI
	DisassociateIamInstanceProfileAPI
	CreateSnapshotsAPI
	CopySnapshotAPI
	DescribeSnapshotAttributeAPI
	ModifySnapshotAttributeAPI
	GetConsoleOutputAPI
	GetConsoleScreenshotAPI
}

// AutoScaling is the part of the Auto Scaling API the actions call.
type AutoScaling interface {
	autoscaling.DescribeAutoScalingInstancesAPIClient
	autoscaling.DescribeAutoScalingGroupsAPIClient
	EnterStandbyAPI
	ExitStandbyAPI
	DetachInstancesAPI
	AttachInstancesAPI
	SuspendProcessesAPI
	ResumeProcessesAPI
}

// ELBv2 is the part of the Elastic Load Balancing v2 API the actions call.
type ELBv2 interface {
	elbv2.DescribeTargetGroupsAPIClient
	elbv2.DescribeTargetHealthAPIClient
	RegisterTargetsAPI
	DeregisterTargetsAPI
}

// IAM is the part of the IAM API the actions call.
type IAM interface {
	iam.GetInstanceProfileAPIClient
	PutRolePolicyAPI
	GetRolePolicyAPI
	DeleteRolePolicyAPI
}

// Clients are the AWS clients of one task, all acting in the task's one
// account and region with its short-lived credentials.
type Clients struct {
	EC2         EC2
	AutoScaling AutoScaling
	ELBv2       ELBv2
	IAM         IAM
}

// ClientFactory builds a task's clients from its credentials.
type ClientFactory func(creds *pluginv1.AWSCredentials) (*Clients, error)

// NewClients is the ClientFactory of the real SDK: adaptive retry (so
// throttling is waited out), the worker's endpoint overrides, and a
// middleware that counts each call's attempts for the result.
func NewClients(creds *pluginv1.AWSCredentials) (*Clients, error) {
	cfg, err := awsclient.Config(creds)
	if err != nil {
		return nil, err
	}
	return &Clients{
		EC2: ec2.NewFromConfig(cfg, func(o *ec2.Options) {
			o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.EC2)
			o.APIOptions = append(o.APIOptions, countAttempts)
		}),
		AutoScaling: autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) {
			o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.AutoScaling)
			o.APIOptions = append(o.APIOptions, countAttempts)
		}),
		ELBv2: elbv2.NewFromConfig(cfg, func(o *elbv2.Options) {
			o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.ELBv2)
			o.APIOptions = append(o.APIOptions, countAttempts)
		}),
		IAM: iam.NewFromConfig(cfg, func(o *iam.Options) {
			o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.IAM)
			o.APIOptions = append(o.APIOptions, countAttempts)
		}),
	}, nil
}

// attemptsKey carries a call's attempt counter in its context.
type attemptsKey struct{}

// countAttempts counts every attempt of a call, retries included: it sits
// inside the SDK's retry loop. Stacks without one (the presigning stack
// CopySnapshot builds for its source region) send nothing to count.
func countAttempts(stack *middleware.Stack) error {
	if _, ok := stack.Finalize.Get("Retry"); !ok {
		return nil
	}
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("FirebreakCountAttempts",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
				n.Add(1)
			}
			return next.HandleFinalize(ctx, in)
		}), "Retry", middleware.After)
}

// Config configures the actions.
type Config struct {
	// Clients builds each task's AWS clients; NewClients when nil.
	Clients ClientFactory
	// Clock is the time source for records, tags and the session
	// revocation's cut-off; time.Now when nil.
	Clock func() time.Time
}

// CheckAndSetDefaults fills in the real SDK and the wall clock; nothing
// else is needed.
func (c *Config) CheckAndSetDefaults() {
	if c.Clients == nil {
		c.Clients = NewClients
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}
