// Package awseradicate is the aws-eradicate action: it executes one
// account's steps of an eradication plan (internal/eradplan). For each step
// it first records the resource's state through the step's read calls, then
// makes the step's calls in order; the deletions of quarantined users and
// roles run last, and only when the run confirms them. A resource the
// attacker already deleted is reported as already gone, not failed; a call
// the responder role may not make is reported as denied and the account's
// other steps go on.
//
// The plugin makes only the calls it knows (the operations eradplan
// plans); a step naming any other call is refused before anything runs.
package awseradicate

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"

	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "aws-eradicate"

// Step outcomes.
const (
	// OutcomeDone means every call of the step succeeded.
	OutcomeDone = "done"
	// OutcomeAlreadyGone means the resource no longer exists: the
	// attacker (or someone) already removed it. Nothing was changed.
	OutcomeAlreadyGone = "already_gone"
	// OutcomeDenied means the responder role may not make a call of the
	// step; the account's other steps went on.
	OutcomeDenied = "denied"
	// OutcomeFailed means a call failed for another reason.
	OutcomeFailed = "failed"
	// OutcomeManual means the step has no API calls: do it by hand.
	OutcomeManual = "manual"
	// OutcomeDryRun means the step's before-state was read and its calls
	// listed, and nothing was changed.
	OutcomeDryRun = "dry_run"
)

// Clients are one region's AWS clients.
type Clients struct {
	IAM         *iam.Client
	EC2         *ec2.Client
	Lambda      *lambda.Client
	Events      *eventbridge.Client
	CloudTrail  *cloudtrail.Client
	GuardDuty   *guardduty.Client
	SecurityHub *securityhub.Client
	S3          *s3.Client
}

// ClientFactory builds a region's clients from the task's SDK configuration
// and credentials (which carry the endpoint overrides).
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) *Clients

// NewClients is the ClientFactory of the real SDK clients.
func NewClients(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) *Clients {
	cfg = cfg.Copy()
	cfg.Region = region
	return &Clients{
		IAM:         iam.NewFromConfig(cfg, func(o *iam.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.IAM) }),
		EC2:         ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.EC2) }),
		Lambda:      lambda.NewFromConfig(cfg, func(o *lambda.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.Lambda) }),
		Events:      eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.EventBridge) }),
		CloudTrail:  cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.CloudTrail) }),
		GuardDuty:   guardduty.NewFromConfig(cfg, func(o *guardduty.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.GuardDuty) }),
		SecurityHub: securityhub.NewFromConfig(cfg, func(o *securityhub.Options) { o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.SecurityHub) }),
		S3: s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.S3)
			o.UsePathStyle = awsclient.PathStyle(creds)
		}),
	}
}

// Config configures the action.
type Config struct {
	// NewClients builds each region's clients. Defaults to NewClients.
	NewClients ClientFactory
	// Clock dates the result. Defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults fills in the defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awseradicate: nil Config")
	}
	if c.NewClients == nil {
		c.NewClients = NewClients
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Params are aws-eradicate's parameters.
type Params struct {
	awsresponse.Target
	// PlanID is the plan the steps come from.
	PlanID string `json:"plan_id"`
	// Steps is the JSON of the account's steps, in plan order.
	Steps string `json:"steps"`
	// DryRun reads every step's before-state and lists its calls, and
	// changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
	// ConfirmDeletes runs the steps' on-confirmation deletions (of the
	// users and roles the attacker created) after every step's calls.
	ConfirmDeletes bool `json:"confirm_deletes,omitempty"`
	// Verify changes nothing: it reads each step's resource live and says
	// whether the attacker's artifact is gone, neutralised or still live.
	Verify bool `json:"verify,omitempty"`
}

// CallResult is one call made, or listed by a dry run.
type CallResult struct {
	// Call is the call as the plan renders it, with an each-of item
	// filled in.
	Call string `json:"call"`
	// Error is AWS's error code when the call failed.
	Error string `json:"error,omitempty"`
	// Message is the error's text.
	Message string `json:"message,omitempty"`
}

// StepResult is what happened to one step.
type StepResult struct {
	ID       string `json:"id"`
	Action   string `json:"action"`
	Kind     string `json:"kind"`
	Resource string `json:"resource"`
	Region   string `json:"region"`
	Outcome  string `json:"outcome"`
	// Before holds each read call's answer, by call, as the SDK returned
	// it, or {"error": code} when the read failed.
	Before map[string]any `json:"before,omitempty"`
	// Calls are the calls made (or, in a dry run, that would be).
	Calls []CallResult `json:"calls"`
	// Deleted is set when the step's on-confirmation deletions ran and
	// succeeded; Pending says the deletions wait for a confirmed run.
	Deleted bool   `json:"deleted,omitempty"`
	Pending string `json:"pending,omitempty"`
	// Error says why the step did not finish.
	Error string `json:"error,omitempty"`
}

// Result is aws-eradicate's result.
type Result struct {
	Account        string         `json:"account"`
	PlanID         string         `json:"plan_id"`
	DryRun         bool           `json:"dry_run,omitempty"`
	ConfirmDeletes bool           `json:"confirm_deletes,omitempty"`
	Verify         bool           `json:"verify,omitempty"`
	Steps          []StepResult   `json:"steps"`
	Outcomes       map[string]int `json:"outcomes"`
	// APICalls counts the AWS requests made, retries included, by
	// operation.
	APICalls map[string]int `json:"api_calls"`
	At       time.Time      `json:"at"`
}

// Action is aws-eradicate.
type Action struct{ cfg Config }

// New returns aws-eradicate.
func New(cfg Config) (*Action, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Action{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	str := pluginv1.ParamType_PARAM_TYPE_STRING
	boolean := pluginv1.ParamType_PARAM_TYPE_BOOL
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Executes one account's steps of an eradication plan (firebreak eradicate): records each resource's state, then removes what the attacker left " +
			"(users and roles quarantined with AWSDenyAll, keys, policies, functions, rules, key pairs, ingress, shares) and restores logging and detectors; " +
			"a resource already deleted is reported as already gone, a denied call as denied while the other steps go on",
		Roles:       awsresponse.Roles,
		Destructive: true,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "plan_id", Type: str, Required: true, Description: "the eradication plan (erp-…) the steps come from"},
			{Name: "steps", Type: str, Required: true, Description: "JSON of this account's steps of the plan, in plan order (firebreak eradicate run fills it in)"},
			{Name: "dry_run", Type: boolean, DefaultJson: "false", Description: "read every step's before-state and list its calls; change nothing"},
			{Name: "confirm_deletes", Type: boolean, DefaultJson: "false", Description: "after every step's calls, delete the quarantined users and roles the attacker created"},
			{Name: "verify", Type: boolean, DefaultJson: "false", Description: "change nothing: read each step's resource live and report it gone, neutralised or still live (firebreak eradicate verify)"},
		}, awsresponse.TargetParams()...),
	}, nil
}

// planSteps decodes the steps parameter.
func planSteps(doc string) ([]eradplan.Step, error) {
	var steps []eradplan.Step
	if err := jsonUnmarshalStrict(doc, &steps); err != nil {
		return nil, err
	}
	return steps, nil
}
