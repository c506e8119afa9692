package awsec2

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the version of the four actions.
const Version = "1.0.0"

// The actions' names.
const (
	IsolateName   = "aws-ec2-isolate"
	UnisolateName = "aws-ec2-unisolate"
	SnapshotName  = "aws-ebs-snapshot"
	CaptureName   = "aws-ec2-capture"
)

// Target names the instance a task acts on. Every action's parameters
// start with it.
type Target struct {
	// InstanceID is the instance, i-0123456789abcdef0.
	InstanceID string `json:"instance_id"`
	// Account is the instance's account. The worker has already assumed the
	// responder role there; the parameter is for the record and must agree
	// with the task's credentials.
	Account string `json:"account,omitempty"`
	// Region is the instance's region, likewise.
	Region string `json:"region,omitempty"`
}

var instanceIDRE = regexp.MustCompile(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)

// targetParams are the schema entries of Target.
func targetParams() []*pluginv1.ParamSpec {
	return []*pluginv1.ParamSpec{
		{Name: "instance_id", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true,
			Description: "the EC2 instance, e.g. i-0123456789abcdef0"},
		{Name: "account", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the instance's 12-digit AWS account; the worker assumes the responder role there (default: the worker's own account)"},
		{Name: "region", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "the instance's region, e.g. us-east-1 (default: the worker's region)"},
	}
}

func caseParam() *pluginv1.ParamSpec {
	return &pluginv1.ParamSpec{Name: "case_id", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
		Description: "the incident case, written into tags (default: the run's case)"}
}

// scope is what one task acts with: its instance, account and region, its
// clients, its journal of calls and its clock.
type scope struct {
	instanceID string
	account    string
	region     string
	role       string
	caseID     string
	runID      string
	c          *Clients
	j          *journal
	now        func() time.Time
	emit       sdk.Emitter
}

// newScope checks the target against the task's credentials and builds the
// clients.
func newScope(cfg Config, req *sdk.Request, emit sdk.Emitter, t Target, caseID string) (*scope, error) {
	if !instanceIDRE.MatchString(t.InstanceID) {
		return nil, sdk.Errorf(codes.InvalidArgument, "instance_id %q is not an EC2 instance id (i- and 8 or 17 hex digits)", t.InstanceID)
	}
	creds := req.AWS
	if creds.GetAccessKeyId() == "" {
		return nil, sdk.Errorf(codes.FailedPrecondition, "no AWS credentials in the task: %s runs on an API worker (--role worker)", t.InstanceID)
	}
	// Security-critical: the credentials act in exactly one account and
	// region; parameters naming another would act somewhere unintended.
	if t.Account != "" && t.Account != creds.GetAccount() {
		return nil, sdk.Errorf(codes.InvalidArgument, "the account parameter says %s but the task's credentials are for account %s; rerun with matching --param account", t.Account, creds.GetAccount())
	}
	if t.Region != "" && t.Region != creds.GetRegion() {
		return nil, sdk.Errorf(codes.InvalidArgument, "the region parameter says %s but the task's credentials are for region %s; rerun with matching --param region", t.Region, creds.GetRegion())
	}
	clients, err := cfg.Clients(creds)
	if err != nil {
		return nil, err
	}
	if caseID == "" {
		caseID = req.Task.GetCaseId()
	}
	return &scope{instanceID: t.InstanceID, account: creds.GetAccount(), region: creds.GetRegion(), role: creds.GetRoleArn(),
		caseID: caseID, runID: req.Task.GetRunId(), c: clients, j: newJournal(cfg.Clock), now: cfg.Clock, emit: emit}, nil
}

// instanceARN is the instance's ARN.
func (s *scope) instanceARN() string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:instance/%s", s.region, s.account, s.instanceID)
}

// where names the instance, account and region for messages.
func (s *scope) where() string {
	return fmt.Sprintf("instance %s in account %s region %s", s.instanceID, s.account, s.region)
}

// progress reports progress; a failure to report does not stop the action.
func (s *scope) progress(percent int, format string, args ...any) {
	_ = s.emit.Progress(percent, fmt.Sprintf(format, args...))
}

// log sends a log line to the run's progress view.
func (s *scope) log(level, format string, args ...any) {
	_ = s.emit.Log(level, fmt.Sprintf(format, args...))
}

// plannedStep is one step of an action: its name in the result, the
// progress reported as it starts, and its work, which returns the step's
// status and detail. A step without work only reports progress.
type plannedStep struct {
	name     string
	percent  int
	progress string
	fn       func(context.Context) (status, detail string, err error)
}

// runSteps runs the steps in order, recording each one's outcome, and stops
// at the first failure, whose error it returns as is.
func (s *scope) runSteps(ctx context.Context, out *[]Step, plan []plannedStep) error {
	for _, p := range plan {
		s.progress(p.percent, "%s", p.progress)
		if p.fn == nil {
			continue
		}
		status, detail, err := p.fn(ctx)
		if err != nil {
			*out = append(*out, Step{Name: p.name, Status: StepFailed, Detail: err.Error()})
			return err
		}
		*out = append(*out, Step{Name: p.name, Status: status, Detail: detail})
	}
	return nil
}

// explain turns a failed call into an error an operator can act on, with
// the gRPC code that classifies it.
func (s *scope) explain(op, resource string, err error) error {
	code := awsclient.ErrorCode(err)
	msg := errorMessage(err)
	who := "the responder role"
	if s.role != "" {
		who = s.role
	}
	switch {
	case code == "InvalidInstanceID.NotFound":
		return sdk.Errorf(codes.NotFound, "instance %s not found in account %s region %s: check the instance id and the account and region parameters", s.instanceID, s.account, s.region)
	case code == "InvalidInstanceID.Malformed":
		return sdk.Errorf(codes.InvalidArgument, "%s refused instance id %s as malformed: %s", op, s.instanceID, msg)
	case code == "UnauthorizedOperation" || strings.Contains(code, "AccessDenied"):
		return sdk.Errorf(codes.PermissionDenied, "%s on %s was denied to %s in account %s (%s: %s): grant the permission to the responder role (deploy/cloudformation/member-account.yaml)", op, resource, who, s.account, code, msg)
	case code == "AuthFailure" || code == "InvalidClientTokenId" || code == "UnrecognizedClientException":
		return sdk.Errorf(codes.Unauthenticated, "%s: AWS refused the task's credentials in region %s (%s: %s): check that the region is enabled for account %s", op, s.region, code, msg, s.account)
	case code == "ExpiredToken" || code == "RequestExpired":
		return sdk.Errorf(codes.Unauthenticated, "%s: the task's credentials for account %s expired (%s): rerun the task", op, s.account, code)
	case code == "RequestLimitExceeded" || code == "Throttling" || code == "ThrottlingException":
		return sdk.Errorf(codes.ResourceExhausted, "%s on %s was still throttled after %d attempts (%s): retry, or lower the run's --max-concurrency", op, resource, awsclient.MaxAttempts, code)
	case code == "LimitExceeded" && op == "iam:PutRolePolicy":
		return sdk.Errorf(codes.ResourceExhausted, "%s on %s: the role's inline policies are full (%s): delete the firebreak-revoke-* policies of instances that no longer need them "+
			"(aws-ec2-unisolate with restore_role_sessions=true does that), then rerun", op, resource, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return sdk.Errorf(codes.DeadlineExceeded, "%s on %s: the task's deadline passed", op, resource)
	case errors.Is(err, context.Canceled):
		return sdk.Errorf(codes.Canceled, "%s on %s: the task was cancelled", op, resource)
	case code != "":
		return sdk.Errorf(codes.FailedPrecondition, "%s on %s failed: %s: %s", op, resource, code, msg)
	}
	return sdk.Errorf(codes.Unavailable, "%s on %s failed: %v", op, resource, err)
}

// describeInstance reads the instance.
func (s *scope) describeInstance(ctx context.Context, step string) (*ec2types.Instance, error) {
	var out *ec2.DescribeInstancesOutput
	err := s.j.call(ctx, step, "ec2:DescribeInstances", s.instanceID, func(ctx context.Context) (err error) {
		out, err = s.c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{s.instanceID}})
		return err
	})
	if err != nil {
		return nil, s.explain("ec2:DescribeInstances", s.instanceID, err)
	}
	for _, r := range out.Reservations {
		for i := range r.Instances {
			if in := &r.Instances[i]; aws.ToString(in.InstanceId) == s.instanceID {
				return in, nil
			}
		}
	}
	return nil, sdk.Errorf(codes.NotFound, "instance %s not found in account %s region %s: check the instance id and the account and region parameters", s.instanceID, s.account, s.region)
}

// tagValue returns the value of a tag, and whether it is set.
func tagValue(tags []ec2types.Tag, key string) (string, bool) {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value), true
		}
	}
	return "", false
}
