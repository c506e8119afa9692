// Package awsreadiness is the aws-readiness action: the read-only checks of
// one account and region that say whether an incident there could be
// contained, collected from and proven, for `firebreak readiness`. The
// controller runs it through run's fan-out, one task per account and
// region, and scores the checks with its own (controller/readiness).
//
// Every check is its own function. None changes anything: the containment
// checks use EC2's DryRun, the permission check IAM's policy simulator. An
// AccessDenied makes a check unknown, naming the action that was denied,
// never ok.
package awsreadiness

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "aws-readiness"

// EC2 is the part of the EC2 API the checks call.
type EC2 interface {
	ec2.DescribeInstancesAPIClient
	ec2.DescribeVpcsAPIClient
	CreateSecurityGroup(ctx context.Context, in *ec2.CreateSecurityGroupInput, opts ...func(*ec2.Options)) (*ec2.CreateSecurityGroupOutput, error)
	ModifyInstanceAttribute(ctx context.Context, in *ec2.ModifyInstanceAttributeInput, opts ...func(*ec2.Options)) (*ec2.ModifyInstanceAttributeOutput, error)
}

// GuardDuty is the part of the GuardDuty API the checks call.
type GuardDuty interface {
	guardduty.ListDetectorsAPIClient
	GetDetector(ctx context.Context, in *guardduty.GetDetectorInput, opts ...func(*guardduty.Options)) (*guardduty.GetDetectorOutput, error)
	GetAdministratorAccount(ctx context.Context, in *guardduty.GetAdministratorAccountInput, opts ...func(*guardduty.Options)) (*guardduty.GetAdministratorAccountOutput, error)
}

// SecurityHub is the part of the Security Hub API the checks call.
type SecurityHub interface {
	DescribeHub(ctx context.Context, in *securityhub.DescribeHubInput, opts ...func(*securityhub.Options)) (*securityhub.DescribeHubOutput, error)
}

// CloudTrail is the part of the CloudTrail API the checks call.
type CloudTrail interface {
	DescribeTrails(ctx context.Context, in *cloudtrail.DescribeTrailsInput, opts ...func(*cloudtrail.Options)) (*cloudtrail.DescribeTrailsOutput, error)
	GetTrailStatus(ctx context.Context, in *cloudtrail.GetTrailStatusInput, opts ...func(*cloudtrail.Options)) (*cloudtrail.GetTrailStatusOutput, error)
}

// S3 is the part of the S3 API the checks call.
type S3 interface {
	GetObjectLockConfiguration(ctx context.Context, in *s3.GetObjectLockConfigurationInput, opts ...func(*s3.Options)) (*s3.GetObjectLockConfigurationOutput, error)
	GetBucketVersioning(ctx context.Context, in *s3.GetBucketVersioningInput, opts ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
	GetBucketEncryption(ctx context.Context, in *s3.GetBucketEncryptionInput, opts ...func(*s3.Options)) (*s3.GetBucketEncryptionOutput, error)
}

// IAM is the part of the IAM API the checks call.
type IAM interface {
	SimulatePrincipalPolicy(ctx context.Context, in *iam.SimulatePrincipalPolicyInput, opts ...func(*iam.Options)) (*iam.SimulatePrincipalPolicyOutput, error)
}

// AutoScaling is the part of the Auto Scaling API the checks call.
type AutoScaling interface {
	autoscaling.DescribeAutoScalingGroupsAPIClient
}

// Clients are the AWS clients of one task.
type Clients struct {
	EC2         EC2
	GuardDuty   GuardDuty
	SecurityHub SecurityHub
	CloudTrail  CloudTrail
	S3          S3
	IAM         IAM
	AutoScaling AutoScaling
	EventBridge EventBridge
}

// ClientFactory builds a task's clients.
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients

// NewClients is the ClientFactory of the real SDK clients.
func NewClients(cfg aws.Config, creds *pluginv1.AWSCredentials) Clients {
	return Clients{
		EC2:         ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.EC2) }),
		GuardDuty:   guardduty.NewFromConfig(cfg, func(o *guardduty.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.GuardDuty) }),
		SecurityHub: securityhub.NewFromConfig(cfg, func(o *securityhub.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.SecurityHub) }),
		CloudTrail:  cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.CloudTrail) }),
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint, o.UsePathStyle = awsclient.Endpoint(creds, awsclient.S3), awsclient.PathStyle(creds)
		}),
		IAM:         iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.IAM) }),
		AutoScaling: autoscaling.NewFromConfig(cfg, func(o *autoscaling.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.AutoScaling) }),
		EventBridge: eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.EventBridge) }),
	}
}

// Config configures the action.
type Config struct {
	// NewClients builds each task's clients. Defaults to NewClients.
	NewClients ClientFactory
	// RequiredActions are the IAM actions the responder role needs, for
	// the permission check. Defaults to RequiredActions.
	RequiredActions []string
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awsreadiness: nil Config")
	}
	if c.NewClients == nil {
		c.NewClients = NewClients
	}
	if c.RequiredActions == nil {
		c.RequiredActions = RequiredActions
	}
	return nil
}

// Params are aws-readiness's parameters.
type Params struct {
	awsresponse.Target
	// EvidenceBucket is the S3 bucket the controller keeps evidence in.
	EvidenceBucket string `json:"evidence_bucket,omitempty"`
	// EvidenceAccount is the account that owns EvidenceBucket: only its
	// tasks check the bucket.
	EvidenceAccount string `json:"evidence_account,omitempty"`
	// FindingsQueueURL is the SQS queue the controller polls for findings
	// (its --sqs-queue); empty for none.
	FindingsQueueURL string `json:"findings_queue_url,omitempty"`
	// FindingsHTTPS is true when the controller's HTTPS events endpoint
	// (its --events-listen) takes findings.
	FindingsHTTPS bool `json:"findings_https,omitempty"`
}

// Result is aws-readiness's result.
type Result struct {
	// Account and Region are where the checks ran.
	Account string `json:"account"`
	Region  string `json:"region"`
	// Checks are the checks' outcomes, in a fixed order.
	Checks []Check `json:"checks"`
	// Instances are the running instances, for the controller's coverage
	// check against its enrolled agents.
	Instances []Instance `json:"instances"`
	// InventoryError says why Instances could not be read, if so.
	InventoryError string `json:"inventory_error,omitempty"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// Instance is one running EC2 instance.
type Instance struct {
	ID   string            `json:"id"`
	Tags map[string]string `json:"tags"`
}

// Action is the aws-readiness action.
type Action struct{ cfg Config }

// New returns aws-readiness.
func New(cfg Config) (*Action, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Action{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	params := append(awsresponse.TargetParams(),
		&pluginv1.ParamSpec{Name: "evidence_bucket", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the S3 bucket the controller keeps evidence in; its Object Lock, versioning and encryption are checked in evidence_account"},
		&pluginv1.ParamSpec{Name: "evidence_account", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the 12-digit account that owns evidence_bucket"},
		&pluginv1.ParamSpec{Name: "findings_queue_url", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the SQS queue the controller polls for findings: an EventBridge rule sending GuardDuty findings there is an export to the intake"},
		&pluginv1.ParamSpec{Name: "findings_https", Type: pluginv1.ParamType_PARAM_TYPE_BOOL,
			Description: "the controller's HTTPS events endpoint takes findings: an API destination to https://…/v1/events is an export to the intake"},
	)
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Read-only readiness checks of one account and region for `firebreak readiness`: the responder role's permissions (IAM policy simulation), " +
			"GuardDuty and the export of its findings to the controller's intake (EventBridge rules, or the GuardDuty administrator account), Security Hub and CloudTrail, isolation and termination protection by EC2 DryRun, Auto Scaling groups that would replace an isolated instance, " +
			"the evidence bucket's Object Lock, versioning and SSE-KMS, and the running instances for agent coverage",
		Roles:  awsresponse.Roles,
		Params: params,
	}, nil
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p Params
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, region, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	if p.EvidenceAccount != "" && !accountRE.MatchString(p.EvidenceAccount) {
		return nil, sdk.Errorf(codes.InvalidArgument, "evidence_account %q is not a 12-digit AWS account id", p.EvidenceAccount)
	}
	if p.FindingsQueueURL != "" {
		if u, err := url.Parse(p.FindingsQueueURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, sdk.Errorf(codes.InvalidArgument, "findings_queue_url %q is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", p.FindingsQueueURL)
		}
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := a.cfg.NewClients(cfg, req.AWS)
	res := &Result{Account: account, Region: region, Instances: []Instance{}}
	in := &inputs{c: c, account: account, region: region, roleARN: responderRoleARN(req.AWS.GetRoleArn()), required: a.cfg.RequiredActions,
		intake: Intake{QueueURL: p.FindingsQueueURL, HTTPS: p.FindingsHTTPS}}
	in.instances, in.inventoryErr = runningInstances(ctx, c.EC2)
	if in.inventoryErr != nil {
		res.InventoryError = in.inventoryErr.Error()
	} else {
		res.Instances = in.instances
	}
	checks := []func(context.Context, *inputs) Check{
		checkPermissions, checkGuardDuty, checkFindingsExport, checkSecurityHub, checkCloudTrail, checkIsolationGroup, checkTerminationProtection, checkAutoScaling,
	}
	for i, check := range checks {
		res.Checks = append(res.Checks, check(ctx, in))
		_ = emit.Progress((i+1)*100/(len(checks)+1), res.Checks[len(res.Checks)-1].ID)
	}
	if p.EvidenceBucket != "" && p.EvidenceAccount == account {
		res.Checks = append(res.Checks, checkEvidenceBucket(ctx, in, p.EvidenceBucket))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.APICalls = journal.Calls()
	_ = emit.Progress(100, fmt.Sprintf("%d checks", len(res.Checks)))
	return res, nil
}
