// Package awsscope is the aws-credential-scope action: what a credential
// did, and what it left behind, across the accounts and regions CloudTrail
// saw it in. It follows the sessions the key minted (GetSessionToken,
// AssumeRole, GetFederationToken) transitively and classifies every event
// (internal/trailscope does both). Two sources:
//
//   - lookup: CloudTrail's event history in the task's account, through
//     LookupEvents (management events, 90 days, 2 requests per second per
//     region), one lookup per key of the chain; sessions that crossed into
//     another account come back as next_keys, for the caller to scope
//     there.
//   - trail: the organisation trail's log files in S3, read directly from
//     the bucket's AWSLogs/<org id>/<account>/CloudTrail/<region>/YYYY/MM/DD/
//     layout, in parallel over the time window, every account and region
//     at once. It needs the task to run in the account that holds the
//     bucket (the log-archive account). This is the path that scales.
//
// The matched events go out as an evidence artifact, one CloudTrail record
// per line (NDJSON), and the result carries the scope: the session chain,
// the accounts and regions with first and last activity, source IPs and
// user agents, counts by class and the artifacts the writes left.
package awsscope

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "aws-credential-scope"

// Sources.
const (
	SourceLookup = "lookup"
	SourceTrail  = "trail"
)

// LookupRequestsPerSecond is CloudTrail's LookupEvents limit per account
// and region.
const LookupRequestsPerSecond = 2

// CloudTrail is the part of the CloudTrail API the lookup source calls.
type CloudTrail interface {
	cloudtrail.LookupEventsAPIClient
}

// S3 is the part of the S3 API the trail source calls.
type S3 interface {
	s3.ListObjectsV2APIClient
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// Clients builds a task's clients.
type Clients interface {
	CloudTrail(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) CloudTrail
	S3(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) S3
}

// SDKClients are the real SDK clients.
type SDKClients struct{}

// CloudTrail implements Clients.
func (SDKClients) CloudTrail(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) CloudTrail {
	return cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) {
		o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.CloudTrail)
		o.Region = region
	})
}

// S3 implements Clients.
func (SDKClients) S3(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) S3 {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.S3)
		o.UsePathStyle = awsclient.PathStyle(creds)
		o.Region = region
	})
}

// Config configures the action.
type Config struct {
	// Clients builds the task's clients. Defaults to SDKClients.
	Clients Clients
	// Clock is "now" and the lookup rate limiter's time. Defaults to
	// time.Now.
	Clock func() time.Time
	// Sleep waits for the rate limiter. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Readers is how many log files (or listings) are read at once.
	// Defaults to 32.
	Readers int
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awsscope: nil Config")
	}
	if c.Clients == nil {
		c.Clients = SDKClients{}
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.Readers == 0 {
		c.Readers = 32
	}
	if c.Readers < 1 {
		return errors.New("awsscope: Readers must be positive")
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Params are aws-credential-scope's parameters.
type Params struct {
	awsresponse.Target
	// AccessKeyID is the key to follow (AKIA… or ASIA…).
	AccessKeyID string `json:"access_key_id"`
	// Source is lookup (default) or trail.
	Source string `json:"source,omitempty"`
	// Start and End bound the window: RFC 3339 times, or durations ago
	// such as 24h or 30d. Start defaults to 7d, End to now.
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	// Regions are the regions to read; lookup defaults to the task's
	// region and us-east-1 (where IAM and STS log), trail to every region
	// the bucket holds.
	Regions []string `json:"regions,omitempty"`
	// TrailBucket is the organisation trail's bucket (trail source).
	TrailBucket string `json:"trail_bucket,omitempty"`
	// TrailPrefix is the prefix the trail writes under before AWSLogs/
	// (the trail's S3 key prefix), if any.
	TrailPrefix string `json:"trail_prefix,omitempty"`
	// OrgID is the organisation id (o-…) in the trail's layout; found in
	// the bucket when there is only one.
	OrgID string `json:"org_id,omitempty"`
	// Accounts limits the trail source to these accounts.
	Accounts []string `json:"accounts,omitempty"`
	// OrgAccounts are the organisation's accounts, to tell trust and
	// shares with accounts outside it.
	OrgAccounts []string `json:"org_accounts,omitempty"`
}

// Action is aws-credential-scope.
type Action struct{ cfg Config }

// New returns aws-credential-scope.
func New(cfg Config) (*Action, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Action{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	str := pluginv1.ParamType_PARAM_TYPE_STRING
	list := pluginv1.ParamType_PARAM_TYPE_STRING_LIST
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Scopes a credential: follows the sessions it minted (GetSessionToken, AssumeRole, GetFederationToken) through CloudTrail, " +
			"from LookupEvents in this account or from the organisation trail's log files in S3, classifies every event (persistence, defence evasion, " +
			"exposure, data access, reconnaissance) and names what the writes left; the matched events become an NDJSON evidence artifact",
		Roles: awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "access_key_id", Type: str, Required: true, Description: "the key to follow (AKIA… or ASIA…)"},
			{Name: "source", Type: str, DefaultJson: `"lookup"`, Description: "lookup (CloudTrail event history of this account, 2 requests/s per region) or trail (the organisation trail's log files in S3, read in parallel; run it in the account holding the bucket)"},
			{Name: "start", Type: str, DefaultJson: `"7d"`, Description: "start of the window: RFC 3339 time, or a duration ago such as 24h or 30d"},
			{Name: "end", Type: str, Description: "end of the window: RFC 3339 time or a duration ago (default: now)"},
			{Name: "regions", Type: list, Description: "regions to read (lookup default: the task's region and us-east-1, where IAM and STS log; trail default: every region in the bucket)"},
			{Name: "trail_bucket", Type: str, Description: "trail source: the organisation trail's S3 bucket"},
			{Name: "trail_prefix", Type: str, Description: "trail source: the trail's S3 key prefix before AWSLogs/, if it has one"},
			{Name: "org_id", Type: str, Description: "trail source: the organisation id (o-…) in the bucket's layout (default: the only one there)"},
			{Name: "accounts", Type: list, Description: "trail source: read only these accounts' log files (default: every account)"},
			{Name: "org_accounts", Type: list, Description: "the organisation's account ids, to flag trust and shares with accounts outside it"},
		}, awsresponse.TargetParams()...),
	}, nil
}

var (
	accessKeyRE = regexp.MustCompile(`^(AKIA|ASIA)[A-Z0-9]{12,124}$`)
	accountRE   = regexp.MustCompile(`^\d{12}$`)
	orgIDRE     = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	prefixRE    = regexp.MustCompile(`^[\w!.*'()/-]{0,200}$`)
	daysRE      = regexp.MustCompile(`^(\d+)d$`)
)

// query is checked parameters.
type query struct {
	key         string
	source      string
	start, end  time.Time
	regions     []string
	bucket      string
	prefix      string
	orgID       string
	accounts    []string
	orgAccounts map[string]bool
}

func (p Params) check(now time.Time, taskRegion string) (*query, error) {
	q := &query{key: strings.TrimSpace(p.AccessKeyID), source: p.Source}
	if !accessKeyRE.MatchString(q.key) {
		return nil, sdk.Errorf(codes.InvalidArgument, "access_key_id %q is not an AWS access key id (AKIA… or ASIA…)", q.key)
	}
	if q.source == "" {
		q.source = SourceLookup
	}
	if q.source != SourceLookup && q.source != SourceTrail {
		return nil, sdk.Errorf(codes.InvalidArgument, "source %q is neither lookup nor trail", q.source)
	}
	var err error
	if q.start, err = when(p.Start, "7d", now); err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "start: %v", err)
	}
	if q.end, err = when(p.End, "0s", now); err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "end: %v", err)
	}
	if !q.start.Before(q.end) {
		return nil, sdk.Errorf(codes.InvalidArgument, "start %s is not before end %s", q.start.Format(time.RFC3339), q.end.Format(time.RFC3339))
	}
	seen := map[string]bool{}
	for _, r := range p.Regions {
		r = strings.TrimSpace(r)
		if !awsresponse.ValidRegion(r) {
			return nil, sdk.Errorf(codes.InvalidArgument, "region %q is not an AWS region name", r)
		}
		if !seen[r] {
			seen[r] = true
			q.regions = append(q.regions, r)
		}
	}
	if q.source == SourceLookup && len(q.regions) == 0 {
		q.regions = []string{taskRegion}
		if taskRegion != "us-east-1" {
			q.regions = append(q.regions, "us-east-1")
		}
	}
	for _, a := range append(slices.Clone(p.Accounts), p.OrgAccounts...) {
		if !accountRE.MatchString(a) {
			return nil, sdk.Errorf(codes.InvalidArgument, "account %q is not a 12-digit AWS account id", a)
		}
	}
	q.accounts = p.Accounts
	if len(p.OrgAccounts) > 0 {
		q.orgAccounts = map[string]bool{}
		for _, a := range p.OrgAccounts {
			q.orgAccounts[a] = true
		}
	}
	if q.source == SourceTrail {
		q.bucket, q.prefix, q.orgID = p.TrailBucket, strings.Trim(p.TrailPrefix, "/"), p.OrgID
		switch {
		case !bucketRE.MatchString(q.bucket):
			return nil, sdk.Errorf(codes.InvalidArgument, "trail_bucket %q is not an S3 bucket name (the trail source needs the organisation trail's bucket)", q.bucket)
		case !prefixRE.MatchString(q.prefix) || strings.Contains(q.prefix, ".."):
			return nil, sdk.Errorf(codes.InvalidArgument, "trail_prefix %q is not an S3 key prefix", p.TrailPrefix)
		case q.orgID != "" && !orgIDRE.MatchString(q.orgID):
			return nil, sdk.Errorf(codes.InvalidArgument, "org_id %q is not an organisation id (o-…)", q.orgID)
		}
	} else if p.TrailBucket != "" || p.OrgID != "" || len(p.Accounts) > 0 {
		return nil, sdk.Errorf(codes.InvalidArgument, "trail_bucket, org_id and accounts are for source trail")
	}
	return q, nil
}

// when reads an RFC 3339 time or a duration ago (Go durations, plus Nd).
func when(s, def string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = def
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 3650 {
			return time.Time{}, errors.New("too many days")
		}
		return now.Add(-time.Duration(n) * 24 * time.Hour).UTC(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, errors.New("want an RFC 3339 time such as 2025-03-01T12:00:00Z or a duration ago such as 24h or 7d, got \"" + s + "\"")
	}
	return now.Add(-d).UTC(), nil
}
