package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
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
// default chain (environment, profiles, instance role) and learns who it is
// with one sts:GetCallerIdentity.
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
	cctx, cancel := context.WithTimeout(ctx, identifyTimeout)
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

// identifyTimeout bounds one sts:GetCallerIdentity attempt, SDK retries
// included.
const identifyTimeout = 20 * time.Second

// endpointWarning is the warning a worker logs at start when its AWS
// environment points the SDK at an endpoint that a role_arn profile's own
// STS client does not use, or "" when there is nothing to warn about.
func endpointWarning(getenv func(string) string) string {
	if getenv("AWS_ENDPOINT_URL") != "" && getenv("AWS_ENDPOINT_URL_STS") == "" {
		return "AWS_ENDPOINT_URL is set but AWS_ENDPOINT_URL_STS is not: a profile with role_arn assumes its role through the real STS, " +
			"which ignores AWS_ENDPOINT_URL; set AWS_ENDPOINT_URL_STS to the same endpoint (docs/aws.md)"
	}
	return ""
}

// workerCredentials is a worker's AWS identity: the broker once
// sts:GetCallerIdentity has succeeded, or why the worker is degraded.
// recover keeps trying, with backoff, while it is degraded, so a worker
// started before its credentials work (instance role, IMDS, DNS or STS not
// ready at boot, an STS blip) becomes useful without a restart.
type workerCredentials struct {
	cfg    WorkerConfig
	now    func() time.Time
	logger *slog.Logger
	// connect builds a broker; newCredentialBroker unless a test sets it.
	connect func(ctx context.Context) (*credentialBroker, error)
	// changed is told each time the worker becomes degraded or recovers.
	changed func(reason string)

	mu       sync.Mutex
	broker   *credentialBroker
	degraded string
	// retry wakes recover early: a task found the credentials broken.
	retry chan struct{}
}

func newWorkerCredentials(wc WorkerConfig, now func() time.Time, logger *slog.Logger) *workerCredentials {
	w := &workerCredentials{cfg: wc, now: now, logger: logger, retry: make(chan struct{}, 1), changed: func(string) {},
		degraded: "the worker has not checked its AWS credentials yet"}
	w.connect = func(ctx context.Context) (*credentialBroker, error) { return newCredentialBroker(ctx, w.cfg, w.now) }
	return w
}

// try makes one attempt to learn the worker's identity; it reports
// whether the credentials work.
func (w *workerCredentials) try(ctx context.Context) bool {
	b, err := w.connect(ctx)
	w.mu.Lock()
	was := w.degraded
	if err != nil {
		w.degraded = err.Error()
	} else {
		w.broker, w.degraded = b, ""
	}
	now := w.degraded
	w.mu.Unlock()
	if err != nil {
		if was != now {
			w.logger.Error("this worker is degraded: it cannot act in AWS accounts until its credentials work; retrying with backoff", "error", err)
			w.changed(now)
		}
		return false
	}
	w.logger.Info("worker identity", "arn", b.arn, "account", b.account, "region", b.base.Region, "responder_role", b.cfg.ResponderRole)
	if was != "" {
		w.changed("")
	}
	return true
}

// current returns the broker, or why there is none.
func (w *workerCredentials) current() (*credentialBroker, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broker, w.degraded
}

// reason is why the worker is degraded, or "".
func (w *workerCredentials) reason() string {
	_, r := w.current()
	return r
}

// broken marks the worker's own credentials as no longer working (a task
// found them expired or refused) and wakes recover.
func (w *workerCredentials) broken(reason string) {
	w.mu.Lock()
	was := w.degraded
	w.degraded = reason
	w.mu.Unlock()
	if was == "" {
		w.logger.Error("this worker is degraded: its own AWS credentials stopped working; retrying with backoff", "reason", reason)
		w.changed(reason)
	}
	select {
	case w.retry <- struct{}{}:
	default:
	}
}

// recover retries while the worker is degraded, with exponential backoff
// and full jitter (from 1s up to a minute), until ctx ends. A healthy
// worker waits to be told its credentials broke.
func (w *workerCredentials) recover(ctx context.Context) {
	backoff := ctrladdr.Backoff{Base: time.Second, Cap: time.Minute}
	for {
		if w.reason() == "" {
			backoff.Reset()
			select {
			case <-ctx.Done():
				return
			case <-w.retry:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Next()):
		case <-w.retry:
		}
		w.try(ctx)
	}
}

// UnreachableError says an account could not be reached, and why.
type UnreachableError struct {
	Account string
	Reason  string
	// OwnCredentials is set when the failure lies with the worker's own
	// credentials or its STS endpoint, not with the account's role: the
	// worker is then degraded for every account.
	OwnCredentials bool
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
		return nil, &UnreachableError{Account: account, Reason: assumeReason(roleARN, err), OwnCredentials: ownCredentialsFailed(err)}
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

// ownCredentialsFailed reports whether an AssumeRole failure lies with the
// worker itself: its credentials expired or unknown, or STS not answering.
func ownCredentialsFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException":
			return true
		}
		return false
	}
	return !errors.Is(err, context.Canceled)
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
