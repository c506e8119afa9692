package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// WorkerConfig configures an API worker's access to member accounts.
type WorkerConfig struct {
	// ResponderRole is the role name assumed in each account
	// (arn:aws:iam::ACCOUNT:role/NAME). Default FirebreakResponder.
	ResponderRole string
	// ExternalID is passed on every AssumeRole.
	ExternalID string
	// SessionDuration is the assumed sessions' lifetime; chained role
	// sessions are capped at one hour by AWS, so that is the default and
	// the maximum.
	SessionDuration time.Duration
	// SecurityAccount is the account of the controller and evidence.
	SecurityAccount string
}

// chainedRoleMax is AWS's cap on sessions assumed with role credentials.
const chainedRoleMax = time.Hour

// refreshBefore renews cached credentials this long before they expire.
const refreshBefore = 5 * time.Minute

// awsEndpointServices are the services whose per-service endpoint variables
// (AWS_ENDPOINT_URL_<ID>) a worker passes on to its plugins.
var awsEndpointServices = []string{"EC2", "IAM", "STS", "AUTO_SCALING", "ELASTIC_LOAD_BALANCING_V2", "S3", "LAMBDA",
	"CLOUDTRAIL", "ORGANIZATIONS", "ACCOUNT", "SQS", "GUARDDUTY", "SECURITYHUB"}

// credentialBroker gives each service task short-lived credentials for
// exactly its account, assumed from the worker's own identity.
type credentialBroker struct {
	cfg       WorkerConfig
	base      aws.Config
	sts       *sts.Client
	account   string
	arn       string
	endpoints map[string]string

	mu    sync.Mutex
	cache map[string]*pluginv1.AWSCredentials
	now   func() time.Time
}

// newCredentialBroker loads the worker's own credentials through the SDK's
// default chain (environment, profiles, instance role) and learns who it is.
func newCredentialBroker(ctx context.Context, wc WorkerConfig, now func() time.Time) (*credentialBroker, error) {
	if wc.ResponderRole == "" {
		wc.ResponderRole = "FirebreakResponder"
	}
	if wc.SessionDuration <= 0 || wc.SessionDuration > chainedRoleMax {
		wc.SessionDuration = chainedRoleMax
	}
	base, err := config.LoadDefaultConfig(ctx, config.WithRetryMode(aws.RetryModeAdaptive))
	if err != nil {
		return nil, fmt.Errorf("loading the worker's AWS configuration: %w", err)
	}
	b := &credentialBroker{cfg: wc, base: base, sts: sts.NewFromConfig(base), cache: map[string]*pluginv1.AWSCredentials{}, now: now,
		endpoints: map[string]string{}}
	for _, svc := range awsEndpointServices {
		if v := os.Getenv("AWS_ENDPOINT_URL_" + svc); v != "" {
			b.endpoints[svc] = v
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := b.sts.GetCallerIdentity(cctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return nil, fmt.Errorf("the worker has no usable AWS credentials (sts:GetCallerIdentity failed): %w", err)
	}
	b.account, b.arn = aws.ToString(id.Account), aws.ToString(id.Arn)
	if b.cfg.SecurityAccount == "" {
		b.cfg.SecurityAccount = b.account
	}
	return b, nil
}

// UnreachableError says an account could not be reached, and why.
type UnreachableError struct {
	Account string
	Reason  string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("account %s is unreachable: %s", e.Account, e.Reason)
}

var (
	sessionNameBad = regexp.MustCompile(`[^\w+=,.@-]`)
	tagValueBad    = regexp.MustCompile(`[^\p{L}\p{Z}\p{N}_.:/=+\-@]`)
	accountRE      = regexp.MustCompile(`^\d{12}$`)
	regionRE       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
)

// For returns credentials for the task's account and region, assuming the
// responder role there with the ExternalId, a session name naming the run,
// the operator as SourceIdentity and the run and case as session tags.
func (b *credentialBroker) For(ctx context.Context, spec *agentv1.TaskSpec) (*pluginv1.AWSCredentials, error) {
	account, region, err := b.target(spec)
	if err != nil {
		return nil, err
	}
	roleARN := fmt.Sprintf("arn:aws:iam::%s:role/%s", account, b.cfg.ResponderRole)
	key := strings.Join([]string{account, region, spec.GetRunId(), spec.GetCaseId(), spec.GetOperator()}, "|")
	b.mu.Lock()
	if c := b.cache[key]; c != nil && b.now().Add(refreshBefore).Before(c.GetExpiration().AsTime()) {
		b.mu.Unlock()
		return c, nil
	}
	b.mu.Unlock()

	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN),
		RoleSessionName: aws.String(clip64(sessionNameBad.ReplaceAllString("firebreak-"+spec.GetRunId(), "-"))),
		DurationSeconds: aws.Int32(int32(b.cfg.SessionDuration / time.Second)),
		Tags:            []ststypes.Tag{{Key: aws.String("firebreak:run"), Value: aws.String(tagValue(spec.GetRunId()))}},
	}
	if b.cfg.ExternalID != "" {
		in.ExternalId = aws.String(b.cfg.ExternalID)
	}
	if c := tagValue(spec.GetCaseId()); c != "" {
		in.Tags = append(in.Tags, ststypes.Tag{Key: aws.String("firebreak:case"), Value: aws.String(c)})
	}
	if op := clip64(sessionNameBad.ReplaceAllString(spec.GetOperator(), "-")); len(op) >= 2 {
		in.SourceIdentity = aws.String(op)
	}
	// STS is called in the worker's own region: the session it returns
	// works in every region, and the worker's region is one its account
	// has enabled.
	out, err := b.sts.AssumeRole(ctx, in)
	if err != nil {
		return nil, &UnreachableError{Account: account, Reason: assumeReason(roleARN, err)}
	}
	c := out.Credentials
	creds := &pluginv1.AWSCredentials{
		AccessKeyId: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey), SessionToken: aws.ToString(c.SessionToken),
		Expiration: timestamppb.New(aws.ToTime(c.Expiration)), Account: account, Region: region,
		EndpointUrl: aws.ToString(b.base.BaseEndpoint), SecurityAccount: b.cfg.SecurityAccount, ServiceEndpoints: b.endpoints, RoleArn: roleARN,
	}
	b.mu.Lock()
	b.cache[key] = creds
	b.mu.Unlock()
	return creds, nil
}

// target resolves the task's account and region: an account-targeted task
// names them; otherwise the run's account/region parameters do; otherwise
// the worker's own.
func (b *credentialBroker) target(spec *agentv1.TaskSpec) (string, string, error) {
	var p struct {
		Account string `json:"account"`
		Region  string `json:"region"`
	}
	_ = json.Unmarshal(spec.GetParamsJson(), &p)
	account, region := spec.GetAccount(), spec.GetRegion()
	if account != "" && p.Account != "" && p.Account != account {
		return "", "", fmt.Errorf("the task targets account %s but its account parameter says %s", account, p.Account)
	}
	if account == "" {
		account = p.Account
	}
	if region == "" {
		region = p.Region
	}
	if account == "" {
		account = b.account
	}
	if region == "" {
		region = b.base.Region
	}
	if !accountRE.MatchString(account) {
		return "", "", fmt.Errorf("account %q is not a 12-digit AWS account id", account)
	}
	if !regionRE.MatchString(region) {
		return "", "", fmt.Errorf("region %q is not an AWS region (give --param region=… or set AWS_REGION for the worker)", region)
	}
	return account, region, nil
}

// assumeReason explains an AssumeRole failure in the terms an operator can
// act on.
func assumeReason(roleARN string, err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDenied":
			return fmt.Sprintf("cannot assume %s: the role is missing, or its trust policy refuses this worker or the ExternalId (%s)", roleARN, ae.ErrorMessage())
		case "RegionDisabledException":
			return fmt.Sprintf("STS is not enabled in the region for %s: %s", roleARN, ae.ErrorMessage())
		case "ValidationError":
			return fmt.Sprintf("assuming %s was refused as invalid: %s", roleARN, ae.ErrorMessage())
		case "ExpiredToken", "InvalidClientTokenId":
			return fmt.Sprintf("the worker's own credentials are not valid (%s): %s", ae.ErrorCode(), ae.ErrorMessage())
		}
		return fmt.Sprintf("assuming %s failed: %s: %s", roleARN, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Sprintf("assuming %s failed: %v", roleARN, err)
}

func clip64(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}

func tagValue(s string) string {
	s = tagValueBad.ReplaceAllString(s, "-")
	if len(s) > 256 {
		s = s[:256]
	}
	return s
}
