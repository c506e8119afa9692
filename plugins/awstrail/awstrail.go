// Package awstrail is the aws-cloudtrail-lookup action: what an access key,
// a user, a role session or a resource did, from CloudTrail's 90-day event
// history of one account, in each region asked for.
//
// LookupEvents allows two requests per second per account and region, so
// each region has a client-side limiter at that rate (the SDK's adaptive
// retry waits out any throttling left, e.g. from another task in the same
// account and region). Every page is read, up to max_events. The events go
// out as an evidence artifact, one CloudTrail record per line (NDJSON, the
// records as CloudTrail wrote them), and the result keeps a summary: counts
// by event name, source IP, region and error, first and last event time,
// and the access keys the looked-up principal minted (sessions from
// GetSessionToken or AssumeRole), which are the next thing to look up.
package awstrail

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Name is the action's name.
const Name = "aws-cloudtrail-lookup"

// RequestsPerSecond is CloudTrail's LookupEvents limit per account and
// region.
const RequestsPerSecond = 2

// MaxPageSize is the most events LookupEvents returns in one page.
const MaxPageSize = 50

// DefaultMaxEvents caps the events of one task unless max_events says
// otherwise.
const DefaultMaxEvents = 10000

// CloudTrail is the part of the CloudTrail API the action calls.
type CloudTrail interface {
	cloudtrail.LookupEventsAPIClient
}

// ClientFactory builds a task's CloudTrail client for one region.
type ClientFactory func(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) CloudTrail

// NewClient is the ClientFactory of the real SDK client.
func NewClient(cfg aws.Config, creds *pluginv1.AWSCredentials, region string) CloudTrail {
	return cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) {
		o.BaseEndpoint = awsclient.Endpoint(creds, awsclient.CloudTrail)
		o.Region = region
	})
}

// Config configures the action.
type Config struct {
	// NewClient builds the task's clients. Defaults to NewClient.
	NewClient ClientFactory
	// Clock is the time "now" and the rate limiter read. Defaults to
	// time.Now.
	Clock func() time.Time
	// Sleep waits for the rate limiter. Defaults to a timer; tests pass
	// one that moves their clock instead.
	Sleep func(ctx context.Context, d time.Duration) error
	// PageSize is LookupEvents' MaxResults, 1 to 50. Defaults to 50.
	PageSize int32
	// Regions is how many regions are read at once. Defaults to 4.
	Regions int
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c == nil {
		return errors.New("awstrail: nil Config")
	}
	if c.NewClient == nil {
		c.NewClient = NewClient
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	if c.PageSize == 0 {
		c.PageSize = MaxPageSize
	}
	if c.PageSize < 1 || c.PageSize > MaxPageSize {
		return errors.New("awstrail: PageSize must be between 1 and 50")
	}
	if c.Regions == 0 {
		c.Regions = 4
	}
	if c.Regions < 1 {
		return errors.New("awstrail: Regions must be positive")
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

// Params are aws-cloudtrail-lookup's parameters. Exactly one of
// AccessKeyID, User, RoleSession and Resource says whose events to read.
type Params struct {
	awsresponse.Target
	// AccessKeyID matches events made with the key (AKIA… or ASIA…).
	AccessKeyID string `json:"access_key_id,omitempty"`
	// User matches events by user name.
	User string `json:"user,omitempty"`
	// RoleSession is a role session name, or an assumed-role ARN
	// (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION) to match that role's
	// session only.
	RoleSession string `json:"role_session,omitempty"`
	// Resource matches events naming the resource (a bucket, instance id,
	// role name…).
	Resource string `json:"resource,omitempty"`
	// Start and End bound the window: RFC 3339 times, or durations ago
	// such as 24h, 90m or 7d. Start defaults to 24h, End to now.
	Start string `json:"start,omitempty"`
	End   string `json:"end,omitempty"`
	// Regions to read; defaults to the task's region.
	Regions []string `json:"regions,omitempty"`
	// MaxEvents caps the events read in all regions together.
	MaxEvents int `json:"max_events,omitempty"`
}

// Action is the aws-cloudtrail-lookup action.
type Action struct{ cfg Config }

// New returns aws-cloudtrail-lookup.
func New(cfg Config) (*Action, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Action{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Action) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	str := pluginv1.ParamType_PARAM_TYPE_STRING
	return &pluginv1.ActionDescription{
		Name:    Name,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Reads CloudTrail's event history (LookupEvents, 2 requests per second per region, every page) for an access key, user, " +
			"role session or resource; the events become an NDJSON evidence artifact and the result a summary",
		Roles: awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "access_key_id", Type: str, Description: "events made with this access key (AKIA… or ASIA…)"},
			{Name: "user", Type: str, Description: "events of this IAM user name"},
			{Name: "role_session", Type: str, Description: "events of this role session name, or of an assumed-role ARN arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION"},
			{Name: "resource", Type: str, Description: "events naming this resource (bucket name, instance id, role name, key id…)"},
			{Name: "start", Type: str, DefaultJson: `"24h"`, Description: "start of the window: RFC 3339 time, or a duration ago such as 24h, 90m or 7d (history keeps 90 days)"},
			{Name: "end", Type: str, Description: "end of the window: RFC 3339 time or a duration ago (default: now)"},
			{Name: "regions", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST,
				Description: "regions to read (default: the task's region); global services such as IAM and STS log in us-east-1. For every enabled region, target the run with --regions all"},
			{Name: "max_events", Type: pluginv1.ParamType_PARAM_TYPE_INT, DefaultJson: strconv.Itoa(DefaultMaxEvents), Description: "most events to read, all regions together"},
		}, awsresponse.TargetParams()...),
	}, nil
}

var (
	accessKeyRE   = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	assumedRoleRE = regexp.MustCompile(`^arn:aws[\w-]*:sts::\d{12}:assumed-role/[\w+=,.@-]+/([\w+=,.@-]{2,64})$`)
	daysRE        = regexp.MustCompile(`^(\d+)d$`)
)

// query is a checked lookup: one attribute, a window, regions.
type query struct {
	key, value string
	// sessionARN, when set, keeps only events whose identity is it.
	sessionARN string
	start, end time.Time
	regions    []string
	maxEvents  int
}

// check turns the parameters into a query.
func (p Params) check(now time.Time, taskRegion string) (*query, error) {
	q := &query{maxEvents: p.MaxEvents}
	named := 0
	for _, a := range []struct{ key, value string }{
		{"AccessKeyId", p.AccessKeyID}, {"Username", p.User}, {"Username", p.RoleSession}, {"ResourceName", p.Resource},
	} {
		if v := strings.TrimSpace(a.value); v != "" {
			named++
			q.key, q.value = a.key, v
		}
	}
	if named != 1 {
		return nil, sdk.Errorf(codes.InvalidArgument, "give exactly one of access_key_id, user, role_session and resource (CloudTrail looks events up by one attribute)")
	}
	switch {
	case p.AccessKeyID != "" && !accessKeyRE.MatchString(q.value):
		return nil, sdk.Errorf(codes.InvalidArgument, "access_key_id %q is not an AWS access key id", q.value)
	case p.RoleSession != "":
		if m := assumedRoleRE.FindStringSubmatch(q.value); m != nil {
			q.sessionARN, q.value = q.value, m[1]
		} else if !sessionNameRE.MatchString(q.value) {
			return nil, sdk.Errorf(codes.InvalidArgument, "role_session %q is neither a session name nor an assumed-role ARN", q.value)
		}
	}
	var err error
	if q.start, err = when(p.Start, "24h", now); err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "start: %v", err)
	}
	if q.end, err = when(p.End, "0s", now); err != nil {
		return nil, sdk.Errorf(codes.InvalidArgument, "end: %v", err)
	}
	if !q.start.Before(q.end) {
		return nil, sdk.Errorf(codes.InvalidArgument, "start %s is not before end %s", q.start.Format(time.RFC3339), q.end.Format(time.RFC3339))
	}
	if q.maxEvents == 0 {
		q.maxEvents = DefaultMaxEvents
	}
	if q.maxEvents < 0 {
		return nil, sdk.Errorf(codes.InvalidArgument, "max_events must be positive")
	}
	seen := map[string]bool{}
	for _, r := range p.Regions {
		r = strings.TrimSpace(r)
		switch {
		case r == "all":
			return nil, sdk.Errorf(codes.InvalidArgument, "regions=all is the run's business: target the run with --regions all (one task per enabled region), or list the regions")
		case !awsresponse.ValidRegion(r):
			return nil, sdk.Errorf(codes.InvalidArgument, "region %q is not an AWS region name", r)
		case !seen[r]:
			seen[r] = true
			q.regions = append(q.regions, r)
		}
	}
	if len(q.regions) == 0 {
		q.regions = []string{taskRegion}
	}
	return q, nil
}

// when reads an RFC 3339 time or a duration ago (Go durations, plus Nd for
// days).
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
		return time.Time{}, errors.New("want an RFC 3339 time such as 2025-03-01T12:00:00Z or a duration ago such as 24h, 90m or 7d, got \"" + s + "\"")
	}
	return now.Add(-d).UTC(), nil
}
