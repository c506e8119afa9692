// Package awsresponse holds what Firebreak's AWS response actions
// (aws-iam-contain, aws-s3-contain, aws-lambda-contain, their rollbacks,
// aws-cloudtrail-lookup and aws-org-discover) share: the check that a task
// acts in exactly the account its credentials are for, the journal of AWS
// API calls every result lists, and the rollback record that carries a
// containment's prior state to its rollback through the controller.
package awsresponse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Version is the version of the AWS response actions.
const Version = "1.0.0"

// Roles are the agent roles the AWS response actions run on.
var Roles = []string{"worker"}

// Target is the account and region parameters every AWS action accepts.
// The worker reads them to choose whose credentials to hand the plugin;
// the plugin checks that it got what they name.
type Target struct {
	// Account is the 12-digit account to act in; empty means the task's.
	Account string `json:"account,omitempty"`
	// Region is the region to act in; empty means the task's.
	Region string `json:"region,omitempty"`
}

// TargetParams are the parameter specs of Target, for Describe.
func TargetParams() []*pluginv1.ParamSpec {
	return []*pluginv1.ParamSpec{
		{Name: "account", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "12-digit AWS account to act in; the worker assumes the responder role there (default: the run's account target, else the worker's own)"},
		{Name: "region", Type: pluginv1.ParamType_PARAM_TYPE_STRING,
			Description: "AWS region to act in, e.g. eu-west-1 (default: the run's region target, else the worker's)"},
	}
}

var (
	accountRE = regexp.MustCompile(`^\d{12}$`)
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
)

// ValidRegion reports whether s looks like an AWS region name.
func ValidRegion(s string) bool { return regionRE.MatchString(s) }

// Check returns the account and region the task's credentials are for,
// after making sure they are the ones the parameters name.
func (t Target) Check(creds *pluginv1.AWSCredentials) (account, region string, err error) {
	if creds == nil || creds.GetAccount() == "" {
		return "", "", sdk.Errorf(codes.FailedPrecondition, "no AWS credentials in the task: AWS actions run on an API worker (--role worker)")
	}
	if t.Account != "" && !accountRE.MatchString(t.Account) {
		return "", "", sdk.Errorf(codes.InvalidArgument, "account %q is not a 12-digit AWS account id", t.Account)
	}
	if t.Region != "" && !regionRE.MatchString(t.Region) {
		return "", "", sdk.Errorf(codes.InvalidArgument, "region %q is not an AWS region name such as eu-west-1", t.Region)
	}
	// Security-critical: never act in an account or region other than the
	// one the task names, whatever credentials arrived.
	if t.Account != "" && t.Account != creds.GetAccount() {
		return "", "", sdk.Errorf(codes.PermissionDenied, "refusing to act: the task names account %s but its credentials are for account %s", t.Account, creds.GetAccount())
	}
	if t.Region != "" && t.Region != creds.GetRegion() {
		return "", "", sdk.Errorf(codes.PermissionDenied, "refusing to act: the task names region %s but its credentials are for region %s", t.Region, creds.GetRegion())
	}
	return creds.GetAccount(), creds.GetRegion(), nil
}

// Config returns the SDK configuration for the task's credentials with
// every client's calls recorded in journal.
func Config(creds *pluginv1.AWSCredentials, journal *Journal) (aws.Config, error) {
	cfg, err := awsclient.Config(creds)
	if err != nil {
		return aws.Config{}, err
	}
	cfg.APIOptions = append(cfg.APIOptions, journal.record)
	return cfg, nil
}

// Call is one AWS API operation a task called, with its retries.
type Call struct {
	// Operation is "service:Operation" in the API's own names, e.g.
	// "iam:UpdateAccessKey" or "s3:PutPublicAccessBlock".
	Operation string `json:"operation"`
	// Region is the region the request was signed for.
	Region string `json:"region,omitempty"`
	// Attempts counts the HTTP requests made, retries included.
	Attempts int `json:"attempts"`
	// Error is the AWS error code of a failed call; an error the action
	// expects and handles (NoSuchEntity on a lookup) is listed too.
	Error string `json:"error,omitempty"`
}

// Journal records every AWS API call a task makes. It is safe for
// concurrent use.
type Journal struct {
	mu    sync.Mutex
	calls []Call
}

// Calls returns the calls so far, in the order they ended.
func (j *Journal) Calls() []Call {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.calls) == 0 {
		return []Call{}
	}
	return slices.Clone(j.calls)
}

// Requests counts the HTTP requests made, retries included.
func (j *Journal) Requests() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range j.calls {
		n += c.Attempts
	}
	return n
}

// record adds the journal's middleware to a client's stack. It runs once
// per operation call, outside the retry loop, so it sees every attempt,
// and traces the call as one span.
func (j *Journal) record(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("FirebreakJournal",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c := Call{
				Operation: serviceName(awsmiddleware.GetServiceID(ctx)) + ":" + awsmiddleware.GetOperationName(ctx),
				Region:    awsmiddleware.GetRegion(ctx),
				Attempts:  1,
			}
			ctx, span := telemetry.Tracer().Start(ctx, c.Operation, trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("aws.region", c.Region)))
			defer span.End()
			out, md, err := next.HandleInitialize(ctx, in)
			if r, ok := retry.GetAttemptResults(md); ok && len(r.Results) > 0 {
				c.Attempts = len(r.Results)
			}
			span.SetAttributes(attribute.Int("aws.attempts", c.Attempts))
			if err != nil {
				c.Error = awsclient.ErrorCode(err)
				if c.Error == "" {
					c.Error = "error"
				}
				span.SetStatus(otelcodes.Error, c.Error)
			}
			j.mu.Lock()
			j.calls = append(j.calls, c)
			j.mu.Unlock()
			return out, md, err
		}), middleware.After)
}

// serviceName turns an SDK service id ("IAM", "CloudTrail") into the
// lower-case name used in operation names.
func serviceName(id string) string {
	return strings.ToLower(strings.ReplaceAll(id, " ", ""))
}

// RecordHeader starts every rollback record: which action wrote it, for
// which account, in which format.
type RecordHeader struct {
	// Version is the record format, 1.
	Version int `json:"v"`
	// Action is the action that wrote the record.
	Action string `json:"action"`
	// Account is the account the record describes.
	Account string `json:"account"`
}

// recordVersion is the rollback record format written and read.
const recordVersion = 1

// Record is a rollback record: a pointer to a struct that embeds
// RecordHeader.
type Record interface{ header() *RecordHeader }

// EncodeRecord renders a rollback record as the JSON text that travels as
// the rollback action's rollback_record parameter. The header is filled in
// here.
func EncodeRecord(action, account string, record Record) (string, error) {
	*record.header() = RecordHeader{Version: recordVersion, Action: action, Account: account}
	b, err := json.Marshal(record)
	if err != nil {
		return "", fmt.Errorf("encoding the rollback record: %w", err)
	}
	return string(b), nil
}

func (h *RecordHeader) header() *RecordHeader { return h }

// DecodeRecord reads a rollback record written by action. It reports
// whether the record belongs to account: a record of another account is
// not an error (an organisation-wide rollback hands every account the run's
// records), but nothing in it may be applied here.
func DecodeRecord(text, action, account string, record Record) (mine bool, err error) {
	if strings.TrimSpace(text) == "" {
		return false, sdk.Errorf(codes.InvalidArgument, "rollback_record is empty: pass the rollback_record output of %s", action)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(record); err != nil {
		return false, sdk.Errorf(codes.InvalidArgument, "rollback_record is not a record written by %s: %v", action, err)
	}
	h := record.header()
	if h.Version != recordVersion {
		return false, sdk.Errorf(codes.InvalidArgument, "rollback_record has format version %d; this plugin reads version %d", h.Version, recordVersion)
	}
	if h.Action != action {
		return false, sdk.Errorf(codes.InvalidArgument, "rollback_record was written by %q, not %s", h.Action, action)
	}
	if !accountRE.MatchString(h.Account) {
		return false, sdk.Errorf(codes.InvalidArgument, "rollback_record names no valid account (%q)", h.Account)
	}
	return h.Account == account, nil
}
