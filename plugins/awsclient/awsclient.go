// Package awsclient builds AWS SDK configuration inside a service-domain
// plugin from the short-lived, single-account credentials its worker hands
// it. Plugins run with an empty environment: the worker honours the SDK's
// standard environment and config (AWS_REGION, profiles, AWS_ENDPOINT_URL
// and its per-service forms) and passes the result here, so nothing in a
// plugin reaches for ambient credentials.
package awsclient

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"

	"google.golang.org/grpc/codes"
)

// Service ids in environment-variable form, as AWS_ENDPOINT_URL_<ID> uses.
const (
	EC2          = "EC2"
	IAM          = "IAM"
	STS          = "STS"
	AutoScaling  = "AUTO_SCALING"
	ELBv2        = "ELASTIC_LOAD_BALANCING_V2"
	S3           = "S3"
	Lambda       = "LAMBDA"
	CloudTrail   = "CLOUDTRAIL"
	Organization = "ORGANIZATIONS"
	Account      = "ACCOUNT"
	SQS          = "SQS"
	GuardDuty    = "GUARDDUTY"
	SecurityHub  = "SECURITYHUB"
	EventBridge  = "EVENTBRIDGE"
)

// MaxAttempts bounds the adaptive retryer, so throttling is waited out
// rather than failed, within reason.
const MaxAttempts = 10

// Config returns an aws.Config that uses exactly the given credentials, in
// their region, with the SDK's adaptive retry mode. It refuses a request
// without credentials: a service action never runs on anything else.
func Config(creds *pluginv1.AWSCredentials) (aws.Config, error) {
	// Security-critical: no fallback to a default credential chain.
	if creds == nil || creds.GetAccessKeyId() == "" || creds.GetSecretAccessKey() == "" {
		return aws.Config{}, sdk.Errorf(codes.FailedPrecondition, "no AWS credentials in the task: service actions run on an API worker (--role worker)")
	}
	if creds.GetRegion() == "" {
		return aws.Config{}, sdk.Errorf(codes.InvalidArgument, "no AWS region in the task: give --param region=… or run the worker with AWS_REGION set")
	}
	cfg := aws.Config{
		Region: creds.GetRegion(),
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
			creds.GetAccessKeyId(), creds.GetSecretAccessKey(), creds.GetSessionToken())),
		RetryMode:        aws.RetryModeAdaptive,
		RetryMaxAttempts: MaxAttempts,
		Retryer: func() aws.Retryer {
			return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
				o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) { so.MaxAttempts = MaxAttempts })
			})
		},
	}
	if ep := creds.GetEndpointUrl(); ep != "" {
		cfg.BaseEndpoint = aws.String(ep)
	}
	// Each AWS call is a client span in the task's trace, with the rpc.*
	// and aws.* attributes and the request id.
	otelaws.AppendMiddlewares(&cfg.APIOptions)
	return cfg, nil
}

// Endpoint returns the endpoint override for one service (the per-service
// one, else the general one), or nil for the SDK's own resolution. Pass it
// as the client's BaseEndpoint option.
func Endpoint(creds *pluginv1.AWSCredentials, service string) *string {
	if ep := creds.GetServiceEndpoints()[service]; ep != "" {
		return aws.String(ep)
	}
	if ep := creds.GetEndpointUrl(); ep != "" {
		return aws.String(ep)
	}
	return nil
}

// PathStyle reports whether S3 clients should use path-style addressing:
// with an endpoint override, virtual-hosted bucket names would not resolve.
func PathStyle(creds *pluginv1.AWSCredentials) bool { return Endpoint(creds, S3) != nil }

// APIError describes an AWS error for an operator: the operation, the
// AWS error code and message, and what to check.
func APIError(op string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		hint := ""
		switch {
		case strings.Contains(ae.ErrorCode(), "AccessDenied"), ae.ErrorCode() == "UnauthorizedOperation":
			hint = ": the responder role lacks this permission (deploy/cloudformation/member-account.yaml grants it)"
		case strings.HasSuffix(ae.ErrorCode(), ".NotFound"), strings.HasPrefix(ae.ErrorCode(), "NoSuch"), ae.ErrorCode() == "ResourceNotFoundException":
			hint = ": check the id, the account and the region"
		}
		return fmt.Errorf("%s: %s: %s%s", op, ae.ErrorCode(), ae.ErrorMessage(), hint)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ErrorCode returns the AWS error code of err, or "".
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
