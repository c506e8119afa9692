package awss3

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// S3 is the part of the S3 API the actions call.
type S3 interface {
	GetBucketLocation(ctx context.Context, in *s3.GetBucketLocationInput, opts ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error)
	GetBucketPolicy(ctx context.Context, in *s3.GetBucketPolicyInput, opts ...func(*s3.Options)) (*s3.GetBucketPolicyOutput, error)
	PutBucketPolicy(ctx context.Context, in *s3.PutBucketPolicyInput, opts ...func(*s3.Options)) (*s3.PutBucketPolicyOutput, error)
	DeleteBucketPolicy(ctx context.Context, in *s3.DeleteBucketPolicyInput, opts ...func(*s3.Options)) (*s3.DeleteBucketPolicyOutput, error)
	GetBucketAcl(ctx context.Context, in *s3.GetBucketAclInput, opts ...func(*s3.Options)) (*s3.GetBucketAclOutput, error)
	GetPublicAccessBlock(ctx context.Context, in *s3.GetPublicAccessBlockInput, opts ...func(*s3.Options)) (*s3.GetPublicAccessBlockOutput, error)
	PutPublicAccessBlock(ctx context.Context, in *s3.PutPublicAccessBlockInput, opts ...func(*s3.Options)) (*s3.PutPublicAccessBlockOutput, error)
	DeletePublicAccessBlock(ctx context.Context, in *s3.DeletePublicAccessBlockInput, opts ...func(*s3.Options)) (*s3.DeletePublicAccessBlockOutput, error)
}

// ClientFactory builds the S3 client of one task for a region (the
// bucket's, which may differ from the task's).
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) S3

// NewClient is the ClientFactory of the real SDK client.
func NewClient(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) S3 {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.S3)
		o.UsePathStyle = awsclient.PathStyle(creds)
		o.Region = region
	})
}

// Config configures the actions.
type Config struct {
	// NewClient builds each task's S3 clients. Defaults to NewClient.
	NewClient ClientFactory
}

// CheckAndSetDefaults fills in the defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awss3: nil Config")
	}
	if c.NewClient == nil {
		c.NewClient = NewClient
	}
	return nil
}
