package awsiam

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// IAM is the part of the IAM API the actions call.
type IAM interface {
	iam.ListUsersAPIClient
	iam.ListAccessKeysAPIClient
	GetAccessKeyLastUsed(ctx context.Context, in *iam.GetAccessKeyLastUsedInput, opts ...func(*iam.Options)) (*iam.GetAccessKeyLastUsedOutput, error)
	UpdateAccessKey(ctx context.Context, in *iam.UpdateAccessKeyInput, opts ...func(*iam.Options)) (*iam.UpdateAccessKeyOutput, error)
	GetLoginProfile(ctx context.Context, in *iam.GetLoginProfileInput, opts ...func(*iam.Options)) (*iam.GetLoginProfileOutput, error)
	DeleteLoginProfile(ctx context.Context, in *iam.DeleteLoginProfileInput, opts ...func(*iam.Options)) (*iam.DeleteLoginProfileOutput, error)
	GetUserPolicy(ctx context.Context, in *iam.GetUserPolicyInput, opts ...func(*iam.Options)) (*iam.GetUserPolicyOutput, error)
	PutUserPolicy(ctx context.Context, in *iam.PutUserPolicyInput, opts ...func(*iam.Options)) (*iam.PutUserPolicyOutput, error)
	DeleteUserPolicy(ctx context.Context, in *iam.DeleteUserPolicyInput, opts ...func(*iam.Options)) (*iam.DeleteUserPolicyOutput, error)
	GetRole(ctx context.Context, in *iam.GetRoleInput, opts ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	GetRolePolicy(ctx context.Context, in *iam.GetRolePolicyInput, opts ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, opts ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
	DeleteRolePolicy(ctx context.Context, in *iam.DeleteRolePolicyInput, opts ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error)
	iam.ListAttachedUserPoliciesAPIClient
	iam.ListAttachedRolePoliciesAPIClient
	AttachUserPolicy(ctx context.Context, in *iam.AttachUserPolicyInput, opts ...func(*iam.Options)) (*iam.AttachUserPolicyOutput, error)
	DetachUserPolicy(ctx context.Context, in *iam.DetachUserPolicyInput, opts ...func(*iam.Options)) (*iam.DetachUserPolicyOutput, error)
	AttachRolePolicy(ctx context.Context, in *iam.AttachRolePolicyInput, opts ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error)
	DetachRolePolicy(ctx context.Context, in *iam.DetachRolePolicyInput, opts ...func(*iam.Options)) (*iam.DetachRolePolicyOutput, error)
}

// STS is the part of the STS API the actions call.
type STS interface {
	GetAccessKeyInfo(ctx context.Context, in *sts.GetAccessKeyInfoInput, opts ...func(*sts.Options)) (*sts.GetAccessKeyInfoOutput, error)
}

// Clients are the AWS clients of one task.
type Clients struct {
	IAM IAM
	STS STS
}

// ClientFactory builds a task's clients from its SDK configuration and
// credentials (which carry the endpoint overrides).
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients

// NewClients is the ClientFactory of the real SDK clients.
func NewClients(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients {
	return Clients{
		IAM: iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.IAM) }),
		STS: sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.STS) }),
	}
}

// Config configures the actions.
type Config struct {
	// NewClients builds each task's AWS clients. Defaults to NewClients.
	NewClients ClientFactory
	// Clock dates session revocations. Defaults to time.Now; the
	// revocation's cut-off is the next whole second after it.
	Clock func() time.Time
}

// CheckAndSetDefaults fills in the defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awsiam: nil Config")
	}
	if c.NewClients == nil {
		c.NewClients = NewClients
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}
