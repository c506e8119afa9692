package awsemu

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

type recordedEvent struct {
	EventVersion string `json:"eventVersion"`
	UserIdentity struct {
		Type           string `json:"type"`
		ARN            string `json:"arn"`
		AccountID      string `json:"accountId"`
		AccessKeyID    string `json:"accessKeyId"`
		UserName       string `json:"userName"`
		SessionContext *struct {
			SessionIssuer struct {
				ARN string `json:"arn"`
			} `json:"sessionIssuer"`
			SourceIdentity string `json:"sourceIdentity"`
		} `json:"sessionContext"`
	} `json:"userIdentity"`
	EventTime          string         `json:"eventTime"`
	EventSource        string         `json:"eventSource"`
	EventName          string         `json:"eventName"`
	AWSRegion          string         `json:"awsRegion"`
	SourceIPAddress    string         `json:"sourceIPAddress"`
	UserAgent          string         `json:"userAgent"`
	ErrorCode          string         `json:"errorCode"`
	RequestParameters  map[string]any `json:"requestParameters"`
	RequestID          string         `json:"requestID"`
	EventID            string         `json:"eventID"`
	ReadOnly           bool           `json:"readOnly"`
	RecipientAccountID string         `json:"recipientAccountId"`
}

func TestCloudTrailRecordsAttacker(t *testing.T) {
	l := newLab(t, 3)
	member := LabAccountID(2)
	key := labKey("ci/" + member)
	attacker := l.compromised(2)
	_, err := ec2.NewFromConfig(attacker).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
	_, err = s3.NewFromConfig(attacker, pathStyle).ListBuckets(ctx(t), &s3.ListBucketsInput{})
	ok(t, err)
	_, err = iam.NewFromConfig(attacker).CreateLoginProfile(ctx(t), &iam.CreateLoginProfileInput{UserName: aws.String("admin"), Password: aws.String("hunter2hunter2")})
	wantCode(t, err, "AccessDenied")

	responder := l.assumeResponder(t, 2)
	ct := cloudtrail.NewFromConfig(responder)
	out, err := ct.LookupEvents(ctx(t), &cloudtrail.LookupEventsInput{LookupAttributes: []cttypes.LookupAttribute{
		{AttributeKey: cttypes.LookupAttributeKeyAccessKeyId, AttributeValue: aws.String(key.ID)}}})
	ok(t, err)
	// IAM is a global service: its events are in us-east-1, like the rest here.
	if len(out.Events) != 3 {
		t.Fatalf("events %d, want 3", len(out.Events))
	}
	byName := map[string]recordedEvent{}
	for _, ev := range out.Events {
		var rec recordedEvent
		if err := json.Unmarshal([]byte(aws.ToString(ev.CloudTrailEvent)), &rec); err != nil {
			t.Fatalf("CloudTrailEvent is not JSON: %v", err)
		}
		if aws.ToString(ev.AccessKeyId) != key.ID || aws.ToString(ev.Username) != LabCompromisedUser || rec.EventID != aws.ToString(ev.EventId) {
			t.Fatalf("event summary %+v", ev)
		}
		if rec.UserIdentity.Type != "IAMUser" || rec.UserIdentity.AccessKeyID != key.ID || rec.RecipientAccountID != member ||
			rec.AWSRegion != "us-east-1" || rec.EventVersion == "" || rec.RequestID == "" || rec.UserAgent == "" || rec.SourceIPAddress == "" {
			t.Fatalf("record %+v", rec)
		}
		byName[rec.EventName] = rec
	}
	if rec := byName["DescribeInstances"]; rec.EventSource != "ec2.amazonaws.com" || !rec.ReadOnly {
		t.Fatalf("DescribeInstances %+v", rec)
	}
	denied := byName["CreateLoginProfile"]
	if denied.ErrorCode != "AccessDenied" || denied.ReadOnly || denied.RequestParameters["userName"] != "admin" {
		t.Fatalf("CreateLoginProfile %+v", denied)
	}
	if _, leaked := denied.RequestParameters["password"]; leaked {
		t.Fatal("the password was recorded")
	}

	// The worker's AssumeRole is in the member account's history too.
	roles, err := ct.LookupEvents(ctx(t), &cloudtrail.LookupEventsInput{LookupAttributes: []cttypes.LookupAttribute{
		{AttributeKey: cttypes.LookupAttributeKeyEventName, AttributeValue: aws.String("AssumeRole")}}})
	ok(t, err)
	if len(roles.Events) != 1 {
		t.Fatalf("AssumeRole events in the member account: %d", len(roles.Events))
	}
}

func TestLookupEventsPagingAndThrottling(t *testing.T) {
	l := newLab(t, 3)
	attacker := ec2.NewFromConfig(l.compromised(2))
	for range 5 {
		_, err := attacker.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
		ok(t, err)
		l.clock.Advance(time.Second)
	}
	ct := cloudtrail.NewFromConfig(l.assumeResponder(t, 2))
	in := &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(2), LookupAttributes: []cttypes.LookupAttribute{
		{AttributeKey: cttypes.LookupAttributeKeyEventName, AttributeValue: aws.String("DescribeRegions")}}}
	var times []time.Time
	first, err := ct.LookupEvents(ctx(t), in)
	ok(t, err)
	in.NextToken = first.NextToken
	second, err := ct.LookupEvents(ctx(t), in)
	ok(t, err)
	in.NextToken = second.NextToken
	// Two requests per second per account and region; the clock has not moved.
	_, err = ct.LookupEvents(ctx(t), in)
	wantCode(t, err, "ThrottlingException")
	l.clock.Advance(time.Second)
	third, err := ct.LookupEvents(ctx(t), in)
	ok(t, err)
	for _, page := range []*cloudtrail.LookupEventsOutput{first, second, third} {
		for _, ev := range page.Events {
			times = append(times, aws.ToTime(ev.EventTime))
		}
	}
	if len(times) != 5 || third.NextToken != nil {
		t.Fatalf("paged %d events, last token %v", len(times), third.NextToken)
	}
	for i := 1; i < len(times); i++ {
		if !times[i].Before(times[i-1]) {
			t.Fatalf("events not newest first: %v", times)
		}
	}

	l.clock.Advance(time.Second)
	_, err = ct.LookupEvents(ctx(t), &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(51)})
	wantCode(t, err, "InvalidMaxResultsException")
	l.clock.Advance(time.Second)
	_, err = ct.LookupEvents(ctx(t), &cloudtrail.LookupEventsInput{StartTime: aws.Time(l.clock.Now()), EndTime: aws.Time(l.clock.Now().Add(-time.Hour))})
	wantCode(t, err, "InvalidTimeRangeException")
	l.clock.Advance(time.Second)
	window, err := ct.LookupEvents(ctx(t), &cloudtrail.LookupEventsInput{StartTime: aws.Time(times[1]), EndTime: aws.Time(times[0]),
		LookupAttributes: in.LookupAttributes})
	ok(t, err)
	if len(window.Events) != 2 {
		t.Fatalf("time window gave %d events", len(window.Events))
	}
}
