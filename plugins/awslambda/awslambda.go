// Package awslambda is the aws-lambda-contain and aws-lambda-uncontain
// response actions: stop a function from running by setting its reserved
// concurrency to 0, and give it back exactly the reservation it had (or
// none).
//
// With a reservation of 0 every invocation is throttled: synchronous calls
// fail with TooManyRequestsException, asynchronous events are retried and
// then go to the function's failure destination or dead-letter queue, and
// event source mappings pause. The function's code and configuration stay
// as they are, for analysis.
package awslambda

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The actions' names.
const (
	ContainName   = "aws-lambda-contain"
	UncontainName = "aws-lambda-uncontain"
)

// Outcomes of the actions.
const (
	OutcomeContained        = "contained"
	OutcomeAlreadyContained = "already_contained"
	OutcomeRestored         = "restored"
	OutcomeNothingToUndo    = "nothing_to_undo"
	OutcomeOtherAccount     = "record_for_other_account"
)

// Lambda is the part of the Lambda API the actions call.
type Lambda interface {
	GetFunctionConcurrency(ctx context.Context, in *lambda.GetFunctionConcurrencyInput, opts ...func(*lambda.Options)) (*lambda.GetFunctionConcurrencyOutput, error)
	PutFunctionConcurrency(ctx context.Context, in *lambda.PutFunctionConcurrencyInput, opts ...func(*lambda.Options)) (*lambda.PutFunctionConcurrencyOutput, error)
	DeleteFunctionConcurrency(ctx context.Context, in *lambda.DeleteFunctionConcurrencyInput, opts ...func(*lambda.Options)) (*lambda.DeleteFunctionConcurrencyOutput, error)
}

// ClientFactory builds a task's Lambda client.
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials) Lambda

// NewClient is the ClientFactory of the real SDK client.
func NewClient(cfg aws.Config, creds *pluginv1.AWSCredentials) Lambda {
	return lambda.NewFromConfig(cfg, func(o *lambda.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.Lambda) })
}

// Config configures the actions.
type Config struct {
	// NewClient builds each task's Lambda client. Defaults to NewClient.
	NewClient ClientFactory
}

// CheckAndSetDefaults fills in the defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awslambda: nil Config")
	}
	if c.NewClient == nil {
		c.NewClient = NewClient
	}
	return nil
}

// ContainParams are aws-lambda-contain's parameters.
type ContainParams struct {
	awsresponse.Target
	// FunctionName is the function's name or ARN.
	FunctionName string `json:"function_name"`
}

// UncontainParams are aws-lambda-uncontain's parameters.
type UncontainParams struct {
	awsresponse.Target
	// FunctionName is the contained function; it must be the record's.
	FunctionName string `json:"function_name"`
	// RollbackRecord is the rollback_record output of aws-lambda-contain.
	RollbackRecord string `json:"rollback_record"`
}

// Result is both actions' result.
type Result struct {
	Account      string `json:"account"`
	Region       string `json:"region"`
	FunctionName string `json:"function_name"`
	FunctionARN  string `json:"function_arn"`
	// Outcome is contained or already_contained (aws-lambda-contain), or
	// restored, nothing_to_undo or record_for_other_account
	// (aws-lambda-uncontain).
	Outcome string `json:"outcome"`
	// ReservedConcurrencyBefore and ReservedConcurrencyAfter are the
	// function's reservation before and after the task; null is none
	// (the function shares the account's unreserved pool).
	ReservedConcurrencyBefore *int32 `json:"reserved_concurrency_before"`
	ReservedConcurrencyAfter  *int32 `json:"reserved_concurrency_after"`
	// Notes are things a responder should know about the result.
	Notes []string `json:"notes,omitempty"`
	// RollbackRecord is aws-lambda-uncontain's rollback_record parameter
	// (aws-lambda-contain only).
	RollbackRecord string `json:"rollback_record,omitempty"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// containRecord is aws-lambda-contain's rollback record.
type containRecord struct {
	awsresponse.RecordHeader
	Region   string `json:"region"`
	Function string `json:"function"`
	// Previous is the reservation before, null for none.
	Previous *int32 `json:"previous"`
	// Set says containment set the reservation to 0 (false when it was 0
	// already).
	Set bool `json:"set"`
}

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
	// functionARNRE reads arn:aws:lambda:REGION:ACCOUNT:function:NAME and
	// ACCOUNT:function:NAME, with an optional :QUALIFIER.
	functionARNRE = regexp.MustCompile(`^(?:arn:aws[\w-]*:lambda:([a-z0-9-]+):)?(\d{12}):function:([a-zA-Z0-9_-]{1,64})(:[\w$-]+)?$`)
)

// function resolves the function_name parameter to a name in the task's
// account and region.
func function(ref, account, region string) (string, error) {
	if nameRE.MatchString(ref) {
		return ref, nil
	}
	m := functionARNRE.FindStringSubmatch(ref)
	switch {
	case m == nil:
		return "", sdk.Errorf(codes.InvalidArgument, "function_name %q is neither a Lambda function name nor its ARN", ref)
	case m[4] != "":
		return "", sdk.Errorf(codes.InvalidArgument, "function_name %q names a version or alias: reserved concurrency applies to the whole function, so give it without %s", ref, m[4])
	case m[2] != account || (m[1] != "" && m[1] != region):
		return "", sdk.Errorf(codes.InvalidArgument, "function %q is not in account %s, region %s, where this task acts: target the run at the function's account and region", ref, account, region)
	}
	return m[3], nil
}

func functionARN(account, region, name string) string {
	return fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", region, account, name)
}

// reservation reads the function's reserved concurrency; nil is none.
func reservation(ctx context.Context, c Lambda, name string) (*int32, error) {
	out, err := c.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String(name)})
	if err != nil {
		return nil, awsclient.APIError("lambda:GetFunctionConcurrency "+name, err)
	}
	return out.ReservedConcurrentExecutions, nil
}

// Contain is the aws-lambda-contain action.
type Contain struct{ cfg Config }

// NewContain returns aws-lambda-contain.
func NewContain(cfg Config) (*Contain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Contain{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Contain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    ContainName,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Stops a Lambda function from running by setting its reserved concurrency to 0 (every invocation is throttled), " +
			"keeping the previous reservation, or none, for rollback; code and configuration stay as they are",
		Destructive:    true,
		RollbackAction: UncontainName,
		Roles:          awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "function_name", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the function's name or ARN (without a version or alias)"},
		}, awsresponse.TargetParams()...),
	}, nil
}

// Execute implements sdk.Action.
func (a *Contain) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p ContainParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, region, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	name, err := function(p.FunctionName, account, region)
	if err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := a.cfg.NewClient(cfg, req.AWS)
	before, err := reservation(ctx, c, name)
	if err != nil {
		return nil, err
	}
	res := &Result{Account: account, Region: region, FunctionName: name, FunctionARN: functionARN(account, region, name),
		Outcome: OutcomeAlreadyContained, ReservedConcurrencyBefore: before, ReservedConcurrencyAfter: aws.Int32(0)}
	rec := &containRecord{Region: region, Function: name, Previous: before}
	if before == nil || *before != 0 {
		if _, err := c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(name), ReservedConcurrentExecutions: aws.Int32(0)}); err != nil {
			return nil, awsclient.APIError("lambda:PutFunctionConcurrency "+name, err)
		}
		res.Outcome, rec.Set = OutcomeContained, true
		_ = emit.Log("info", fmt.Sprintf("function %s: reserved concurrency set to 0 (was %s)", name, describe(before)))
	}
	res.Notes = append(res.Notes, "invocations are throttled: synchronous callers get TooManyRequestsException, asynchronous events are retried "+
		"and then sent to the function's failure destination or dead-letter queue, event source mappings pause")
	if res.RollbackRecord, err = awsresponse.EncodeRecord(ContainName, account, rec); err != nil {
		return nil, sdk.Errorf(codes.Internal, "%v", err)
	}
	res.APICalls = journal.Calls()
	return res, nil
}

func describe(n *int32) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprint(*n)
}

// Uncontain is the aws-lambda-uncontain action.
type Uncontain struct{ cfg Config }

// NewUncontain returns aws-lambda-uncontain.
func NewUncontain(cfg Config) (*Uncontain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Uncontain{cfg: cfg}, nil
}

// Describe implements sdk.Action. Letting a contained function run again
// is as sensitive as stopping it.
func (a *Uncontain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:           UncontainName,
		Version:        awsresponse.Version,
		Domain:         pluginv1.Domain_DOMAIN_SERVICE,
		Description:    "Undoes an aws-lambda-contain: gives the function back exactly its previous reserved concurrency, or none",
		Destructive:    true,
		RollbackAction: ContainName,
		Roles:          awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "function_name", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the contained function's name or ARN (must match the record)"},
			{Name: "rollback_record", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the rollback_record output of the aws-lambda-contain task to undo"},
		}, awsresponse.TargetParams()...),
	}, nil
}

// Execute implements sdk.Action.
func (a *Uncontain) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p UncontainParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, region, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	var rec containRecord
	mine, err := awsresponse.DecodeRecord(p.RollbackRecord, ContainName, account, &rec)
	if err != nil {
		return nil, err
	}
	res := &Result{Account: account, Region: region, FunctionName: rec.Function, APICalls: []awsresponse.Call{}}
	if !mine {
		res.Outcome = OutcomeOtherAccount
		return res, nil
	}
	if rec.Region != region {
		return nil, sdk.Errorf(codes.InvalidArgument, "the rollback record is for region %s, but this task acts in %s: target the run at %s", rec.Region, region, rec.Region)
	}
	name, err := function(p.FunctionName, account, region)
	if err != nil {
		return nil, err
	}
	if name != rec.Function {
		return nil, sdk.Errorf(codes.InvalidArgument, "the rollback record is for function %s, not %s", rec.Function, name)
	}
	if rec.Previous != nil && *rec.Previous < 0 {
		return nil, sdk.Errorf(codes.InvalidArgument, "the rollback record's previous reservation %d is negative", *rec.Previous)
	}
	res.FunctionARN = functionARN(account, region, name)
	if !rec.Set {
		res.Outcome = OutcomeNothingToUndo
		return res, nil
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := a.cfg.NewClient(cfg, req.AWS)
	current, err := reservation(ctx, c, name)
	if err != nil {
		return nil, err
	}
	res.ReservedConcurrencyBefore = current
	if current == nil || *current != 0 {
		res.APICalls = journal.Calls()
		return nil, sdk.Errorf(codes.FailedPrecondition, "function %s's reserved concurrency is %s, not the 0 containment set: someone changed it since, so it was left alone",
			name, describe(current))
	}
	if rec.Previous == nil {
		_, err = c.DeleteFunctionConcurrency(ctx, &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String(name)})
	} else {
		_, err = c.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(name), ReservedConcurrentExecutions: rec.Previous})
	}
	if err != nil {
		return nil, awsclient.APIError("restoring the reserved concurrency of "+name, err)
	}
	res.Outcome, res.ReservedConcurrencyAfter = OutcomeRestored, rec.Previous
	_ = emit.Log("info", fmt.Sprintf("function %s: reserved concurrency restored to %s", name, describe(rec.Previous)))
	res.APICalls = journal.Calls()
	return res, nil
}
