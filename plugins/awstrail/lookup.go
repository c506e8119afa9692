package awstrail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// Result is aws-cloudtrail-lookup's result.
type Result struct {
	Account string `json:"account"`
	// Lookup is the attribute and value looked up; SessionARN narrows a
	// role session lookup to one role.
	Lookup struct {
		Attribute  string `json:"attribute"`
		Value      string `json:"value"`
		SessionARN string `json:"session_arn,omitempty"`
	} `json:"lookup"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Regions is what each region gave.
	Regions []RegionResult `json:"regions"`
	// Truncated is true when max_events stopped the reading.
	Truncated bool `json:"truncated"`
	// Artifact describes the evidence artifact holding the events.
	Artifact ArtifactInfo `json:"artifact"`
	// Summary summarises the events.
	Summary Summary `json:"summary"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// RegionResult is one region's share of the lookup.
type RegionResult struct {
	Region string `json:"region"`
	Events int    `json:"events"`
	Pages  int    `json:"pages"`
	// Error says why the region could not be read to the end.
	Error string `json:"error,omitempty"`
}

// ArtifactInfo describes the events artifact.
type ArtifactInfo struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Events    int    `json:"events"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
}

// Summary is what the events show at a glance.
type Summary struct {
	Events      int            `json:"events"`
	ByEventName map[string]int `json:"by_event_name"`
	BySourceIP  map[string]int `json:"by_source_ip"`
	ByRegion    map[string]int `json:"by_region"`
	// ByErrorCode counts refused calls by error: a key probing what it may
	// do shows as many AccessDenied.
	ByErrorCode map[string]int `json:"by_error_code"`
	First       *time.Time     `json:"first_event_time,omitempty"`
	Last        *time.Time     `json:"last_event_time,omitempty"`
	// DerivedAccessKeys are temporary keys the events minted
	// (GetSessionToken, AssumeRole, GetFederationToken): look them up next.
	DerivedAccessKeys []string `json:"derived_access_keys"`
}

// record is the part of a CloudTrail record the summary reads.
type record struct {
	EventTime       time.Time `json:"eventTime"`
	EventName       string    `json:"eventName"`
	AWSRegion       string    `json:"awsRegion"`
	SourceIPAddress string    `json:"sourceIPAddress"`
	ErrorCode       string    `json:"errorCode"`
	UserIdentity    struct {
		ARN string `json:"arn"`
	} `json:"userIdentity"`
	ResponseElements struct {
		Credentials struct {
			AccessKeyID string `json:"accessKeyId"`
		} `json:"credentials"`
	} `json:"responseElements"`
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
	q, err := p.check(a.cfg.Clock(), region)
	if err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	res := &Result{Account: account, Start: q.start, End: q.end}
	res.Lookup.Attribute, res.Lookup.Value, res.Lookup.SessionARN = q.key, q.value, q.sessionARN
	res.Artifact = ArtifactInfo{Name: "cloudtrail-events-" + account + ".ndjson", MediaType: "application/x-ndjson"}
	l := &lookup{cfg: a.cfg, q: q, emit: emit, res: res, summary: newSummary(),
		hash: sha256.New(), out: emit.Artifact(res.Artifact.Name, res.Artifact.MediaType)}

	res.Regions = make([]RegionResult, len(q.regions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Regions)
	for i, r := range q.regions {
		res.Regions[i].Region = r
		g.Go(func() error {
			err := l.region(gctx, a.cfg.NewClient(cfg, req.AWS, r), &res.Regions[i])
			if err != nil {
				l.mu.Lock()
				res.Regions[i].Error = err.Error()
				l.mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	closeErr := l.out.Close()

	res.Summary = l.summary.result()
	res.Artifact.Events, res.Artifact.Bytes, res.Artifact.SHA256 = l.summary.Events, l.bytes, hex.EncodeToString(l.hash.Sum(nil))
	res.Truncated = l.truncated
	res.APICalls = journal.Calls()
	var failed []string
	for _, r := range res.Regions {
		if r.Error != "" {
			failed = append(failed, r.Region+": "+r.Error)
		}
	}
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case closeErr != nil:
		return res, sdk.Errorf(codes.Unavailable, "sending the events artifact: %v", closeErr)
	case len(failed) > 0:
		return res, sdk.Errorf(codes.Unavailable, "CloudTrail could not be read in every region (%s); the other regions' events are in the artifact", strings.Join(failed, "; "))
	}
	_ = emit.Progress(100, fmt.Sprintf("%d events in %d region(s)", res.Summary.Events, len(res.Regions)))
	return res, nil
}

// lookup is one task's reading, shared by its region readers.
type lookup struct {
	cfg  Config
	q    *query
	emit sdk.Emitter

	mu        sync.Mutex
	res       *Result
	summary   *summary
	out       io.WriteCloser
	hash      hash.Hash
	bytes     int64
	truncated bool
}

// region reads every page of one region at RequestsPerSecond.
func (l *lookup) region(ctx context.Context, c CloudTrail, rr *RegionResult) error {
	limiter := rate.NewLimiter(rate.Limit(RequestsPerSecond), 1)
	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{{AttributeKey: cttypes.LookupAttributeKey(l.q.key), AttributeValue: aws.String(l.q.value)}},
		StartTime:        aws.Time(l.q.start), EndTime: aws.Time(l.q.end), MaxResults: aws.Int32(l.cfg.PageSize),
	}
	for {
		if l.full() {
			return nil
		}
		r := limiter.ReserveN(l.cfg.Clock(), 1)
		if err := l.cfg.Sleep(ctx, r.DelayFrom(l.cfg.Clock())); err != nil {
			return err
		}
		out, err := c.LookupEvents(ctx, in)
		if err != nil {
			return awsclient.APIError("cloudtrail:LookupEvents in "+rr.Region, err)
		}
		l.mu.Lock()
		rr.Pages++
		l.mu.Unlock()
		if err := l.add(rr, out.Events); err != nil {
			return err
		}
		if aws.ToString(out.NextToken) == "" {
			return nil
		}
		in.NextToken = out.NextToken
	}
}

func (l *lookup) full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.summary.Events >= l.q.maxEvents
}

// add writes a page's events to the artifact and the summary, up to
// max_events.
func (l *lookup) add(rr *RegionResult, events []cttypes.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf bytes.Buffer
	for _, ev := range events {
		if l.summary.Events >= l.q.maxEvents {
			l.truncated = true
			break
		}
		line, rec, err := eventLine(ev)
		if err != nil {
			return err
		}
		if l.q.sessionARN != "" && rec.UserIdentity.ARN != l.q.sessionARN {
			continue
		}
		buf.Write(line)
		buf.WriteByte('\n')
		l.summary.add(rec, rr.Region)
		rr.Events++
	}
	if buf.Len() == 0 {
		return nil
	}
	l.hash.Write(buf.Bytes())
	n, err := l.out.Write(buf.Bytes())
	l.bytes += int64(n)
	if err != nil {
		return fmt.Errorf("writing the events artifact: %w", err)
	}
	_ = l.emit.Progress(-1, fmt.Sprintf("%s: %d events so far (%d in all)", rr.Region, rr.Events, l.summary.Events))
	return nil
}

// eventLine is an event's CloudTrail record on one line, and the parts the
// summary reads.
func eventLine(ev cttypes.Event) ([]byte, record, error) {
	var rec record
	raw := []byte(aws.ToString(ev.CloudTrailEvent))
	if len(raw) == 0 {
		// LookupEvents always carries the record; this keeps an event that
		// lacks it rather than dropping it.
		b, err := json.Marshal(map[string]any{"eventID": aws.ToString(ev.EventId), "eventName": aws.ToString(ev.EventName),
			"eventSource": aws.ToString(ev.EventSource), "eventTime": aws.ToTime(ev.EventTime), "accessKeyId": aws.ToString(ev.AccessKeyId),
			"username": aws.ToString(ev.Username)})
		if err != nil {
			return nil, rec, err
		}
		raw = b
	}
	var line bytes.Buffer
	if err := json.Compact(&line, raw); err != nil {
		return nil, rec, fmt.Errorf("CloudTrail returned event %s with a record that is not JSON: %w", aws.ToString(ev.EventId), err)
	}
	_ = json.Unmarshal(line.Bytes(), &rec)
	if rec.EventTime.IsZero() {
		rec.EventTime = aws.ToTime(ev.EventTime)
	}
	if rec.EventName == "" {
		rec.EventName = aws.ToString(ev.EventName)
	}
	return line.Bytes(), rec, nil
}

// summary accumulates the Summary.
type summary struct {
	Summary
	derived map[string]bool
}

func newSummary() *summary {
	return &summary{Summary: Summary{ByEventName: map[string]int{}, BySourceIP: map[string]int{}, ByRegion: map[string]int{}, ByErrorCode: map[string]int{}},
		derived: map[string]bool{}}
}

func (s *summary) add(rec record, region string) {
	s.Events++
	s.ByEventName[rec.EventName]++
	if rec.SourceIPAddress != "" {
		s.BySourceIP[rec.SourceIPAddress]++
	}
	if rec.AWSRegion != "" {
		region = rec.AWSRegion
	}
	s.ByRegion[region]++
	if rec.ErrorCode != "" {
		s.ByErrorCode[rec.ErrorCode]++
	}
	if t := rec.EventTime; !t.IsZero() {
		if s.First == nil || t.Before(*s.First) {
			s.First = &t
		}
		if s.Last == nil || t.After(*s.Last) {
			s.Last = &t
		}
	}
	if k := rec.ResponseElements.Credentials.AccessKeyID; k != "" {
		s.derived[k] = true
	}
}

func (s *summary) result() Summary {
	out := s.Summary
	out.DerivedAccessKeys = []string{}
	for k := range s.derived {
		out.DerivedAccessKeys = append(out.DerivedAccessKeys, k)
	}
	slices.Sort(out.DerivedAccessKeys)
	return out
}
