package awstrail_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/awstrail"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

type fixture struct {
	lab    *awstest.Lab
	clock  *awsresponsetest.Clock
	client *sdk.Client
}

// newFixture serves the action with small pages on the lab's clock, whose
// Sleep moves the clock instead of waiting.
func newFixture(t *testing.T, regionsAtOnce int) *fixture {
	t.Helper()
	clock := awsresponsetest.NewClock()
	lab := awsresponsetest.StartLab(t, awsemu.LabSeed(3), clock)
	a, err := awstrail.New(awstrail.Config{Clock: clock.Now, Sleep: clock.Sleep, PageSize: 5, Regions: regionsAtOnce})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{lab: lab, clock: clock, client: sdktest.Start(t, a)}
}

// run runs one task a second after the last: CloudTrail's own limit
// refills on the emulated clock, which only the test moves.
func (f *fixture) run(t *testing.T, params map[string]any) (*awstrail.Result, *sdktest.Outcome) {
	t.Helper()
	f.clock.Advance(time.Second)
	o := sdktest.Execute(context.Background(), t, f.client, f.lab.Request(t, awstest.Member(0)), params)
	if o.Result == nil {
		return nil, o
	}
	var res awstrail.Result
	o.Output(t, &res)
	return &res, o
}

// attack has the leaked key of member 0 make calls a second apart, in two
// regions, including one refused call and a session token, and returns
// how many calls it made by event name. listings is the number of Lambda
// ListFunctions calls among them.
func attack(t *testing.T, f *fixture, listings int) map[string]int {
	t.Helper()
	ctx := context.Background()
	acct := awstest.Member(0)
	cfg := awsresponsetest.Attacker(t, f.lab, acct)
	west := cfg.Copy()
	west.Region = "us-west-2"
	made := map[string]int{}
	step := func(name string, err error) {
		t.Helper()
		made[name]++
		f.clock.Advance(time.Second)
		if err != nil && name != "ListRoles" {
			t.Fatalf("attacker's %s: %v", name, err)
		}
	}
	for range listings {
		_, err := lambda.NewFromConfig(cfg).ListFunctions(ctx, &lambda.ListFunctionsInput{})
		step("ListFunctions", err)
	}
	for range 4 {
		_, err := ec2.NewFromConfig(west).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
		step("DescribeInstances", err)
	}
	_, err := iam.NewFromConfig(cfg).ListRoles(ctx, &iam.ListRolesInput{})
	step("ListRoles", err)
	_, err = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }).GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String("lab-public-assets-" + acct)})
	step("GetBucketPolicy", err)
	_, err = sts.NewFromConfig(cfg).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
	step("GetSessionToken", err)
	return made
}

// TestLookupReturnsTheAttackersCalls reads the key's events in two regions
// and checks the artifact and the summary against what the attacker did.
func TestLookupReturnsTheAttackersCalls(t *testing.T) {
	f := newFixture(t, 4)
	made := attack(t, f, 7)
	key := awsresponsetest.LeakedKey(t, f.lab, awstest.Member(0)).ID
	res, o := f.run(t, map[string]any{"access_key_id": key, "start": "1h", "regions": []string{"us-east-1", "us-west-2"}})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("lookup failed: %v %s", o.Err, o.Result.GetError())
	}
	total := 0
	for name, n := range made {
		total += n
		if res.Summary.ByEventName[name] != n {
			t.Errorf("%s: %d events, want %d", name, res.Summary.ByEventName[name], n)
		}
	}
	if res.Summary.Events != total || res.Summary.ByRegion["us-west-2"] != made["DescribeInstances"] || res.Summary.ByErrorCode["AccessDenied"] != 1 {
		t.Fatalf("summary %+v, want %d events", res.Summary, total)
	}
	if len(res.Summary.DerivedAccessKeys) != 1 || !strings.HasPrefix(res.Summary.DerivedAccessKeys[0], "ASIA") {
		t.Fatalf("derived keys %v, want the session token's key", res.Summary.DerivedAccessKeys)
	}
	if res.Summary.First == nil || res.Summary.Last.Sub(*res.Summary.First) != time.Duration(total-1)*time.Second || len(res.Summary.BySourceIP) != 1 {
		t.Fatalf("first %v last %v sources %v", res.Summary.First, res.Summary.Last, res.Summary.BySourceIP)
	}

	data := o.Artifacts[res.Artifact.Name]
	if !slices.Contains(o.Closed, res.Artifact.Name) || res.Artifact.MediaType != "application/x-ndjson" {
		t.Fatalf("artifact %q not sent and closed (%v)", res.Artifact.Name, o.Closed)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != res.Artifact.SHA256 || int64(len(data)) != res.Artifact.Bytes || res.Artifact.Events != total {
		t.Fatalf("artifact %+v does not match its %d bytes", res.Artifact, len(data))
	}
	lines, ids := 0, map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var rec struct {
			EventID      string `json:"eventID"`
			UserIdentity struct {
				AccessKeyID string `json:"accessKeyId"`
			} `json:"userIdentity"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d is not a JSON record: %v", lines+1, err)
		}
		if rec.UserIdentity.AccessKeyID != key || ids[rec.EventID] {
			t.Fatalf("line %d: key %s, event %s (repeated %v)", lines+1, rec.UserIdentity.AccessKeyID, rec.EventID, ids[rec.EventID])
		}
		ids[rec.EventID] = true
		lines++
	}
	if lines != total {
		t.Fatalf("%d lines, want %d", lines, total)
	}
	for _, c := range f.lab.Emu.Calls() {
		if c.Operation == "LookupEvents" && c.ErrorCode != "" {
			t.Fatalf("the emulator refused a LookupEvents call: %s", c.ErrorCode)
		}
	}
}

// TestLookupRespectsTheRateLimit reads many pages in two regions one after
// the other and checks, on the emulator's clock and call log, that no two
// requests in a region came less than half a second apart, that CloudTrail
// throttled none, and that every page was read.
func TestLookupRespectsTheRateLimit(t *testing.T) {
	f := newFixture(t, 1)
	made := attack(t, f, 40)
	key := awsresponsetest.LeakedKey(t, f.lab, awstest.Member(0)).ID
	start := f.clock.Now()
	res, o := f.run(t, map[string]any{"access_key_id": key, "start": "1h", "regions": []string{"us-east-1", "us-west-2"}})
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("lookup failed: %v %s", o.Err, o.Result.GetError())
	}
	byRegion := map[string][]time.Time{}
	for _, c := range f.lab.Emu.Calls() {
		if c.Operation != "LookupEvents" {
			continue
		}
		if c.ErrorCode != "" {
			t.Fatalf("LookupEvents answered %s", c.ErrorCode)
		}
		byRegion[c.Region] = append(byRegion[c.Region], c.Time)
	}
	east := made["ListFunctions"] + made["ListRoles"] + made["GetBucketPolicy"] + made["GetSessionToken"]
	pages := func(events int) int { return max(1, (events+4)/5) }
	wantPages := map[string]int{"us-east-1": pages(east), "us-west-2": pages(made["DescribeInstances"])}
	for _, r := range res.Regions {
		times := byRegion[r.Region]
		if r.Pages != wantPages[r.Region] || len(times) != r.Pages {
			t.Fatalf("%s: %d pages reported, %d requests seen, want %d", r.Region, r.Pages, len(times), wantPages[r.Region])
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap < time.Second/awstrail.RequestsPerSecond {
				t.Fatalf("%s: requests %d and %d came %v apart", r.Region, i-1, i, gap)
			}
		}
		if span := times[len(times)-1].Sub(times[0]); span < time.Duration(len(times)-1)*time.Second/awstrail.RequestsPerSecond {
			t.Fatalf("%s: %d requests in %v", r.Region, len(times), span)
		}
	}
	if n := len(byRegion["us-east-1"]); n < 9 {
		t.Fatalf("only %d pages in us-east-1: the test needs more events", n)
	}
	if elapsed := f.clock.Now().Sub(start); elapsed > 20*time.Second {
		t.Fatalf("the lookup waited %v of emulated time for %d requests", elapsed, len(byRegion["us-east-1"])+len(byRegion["us-west-2"]))
	}
}

func TestLookupCapsAndNarrows(t *testing.T) {
	f := newFixture(t, 4)
	attack(t, f, 7)
	acct := awstest.Member(0)
	key := awsresponsetest.LeakedKey(t, f.lab, acct).ID

	res, o := f.run(t, map[string]any{"access_key_id": key, "max_events": 7})
	if o.Err != nil || !res.Truncated || res.Summary.Events != 7 || res.Artifact.Events != 7 {
		t.Fatalf("capped lookup: %v %+v", o.Err, res)
	}

	res, o = f.run(t, map[string]any{"resource": "lab-public-assets-" + acct})
	if o.Err != nil || res.Summary.ByEventName["GetBucketPolicy"] != 1 {
		t.Fatalf("resource lookup: %v %+v", o.Err, res.Summary)
	}

	// The responder's own session: the lookups above are its events.
	arn := "arn:aws:sts::" + acct + ":assumed-role/" + awsemu.LabResponderRole + "/firebreak-run-test"
	res, o = f.run(t, map[string]any{"role_session": arn})
	if o.Err != nil || res.Summary.ByEventName["LookupEvents"] == 0 || res.Lookup.SessionARN != arn || res.Lookup.Value != "firebreak-run-test" {
		t.Fatalf("role session lookup: %v %+v", o.Err, res)
	}
}

func TestLookupThrottlingAndUnreadableRegions(t *testing.T) {
	f := newFixture(t, 4)
	attack(t, f, 7)
	key := awsresponsetest.LeakedKey(t, f.lab, awstest.Member(0)).ID
	f.lab.Emu.ThrottleNext("cloudtrail", "LookupEvents", 1)
	res, o := f.run(t, map[string]any{"access_key_id": key, "regions": []string{"us-east-1", "eu-west-1"}})
	if o.Result == nil || !strings.Contains(o.Result.GetError(), "eu-west-1") {
		t.Fatalf("lookup with a region the account has not enabled: %v / %v", o.Err, o.Result.GetError())
	}
	if res.Regions[0].Error != "" || res.Regions[0].Events == 0 || res.Regions[1].Error == "" {
		t.Fatalf("regions: %+v", res.Regions)
	}
	retried := false
	for _, c := range res.APICalls {
		retried = retried || (c.Operation == "cloudtrail:LookupEvents" && c.Attempts == 2 && c.Error == "")
	}
	if !retried {
		t.Fatalf("no retried LookupEvents in %+v", res.APICalls)
	}
}

func TestLookupRefusals(t *testing.T) {
	f := newFixture(t, 4)
	for _, tt := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"nothing to look up", map[string]any{}, "exactly one"},
		{"two attributes", map[string]any{"user": "a", "resource": "b"}, "exactly one"},
		{"all regions", map[string]any{"user": "a", "regions": []string{"all"}}, "--regions all"},
		{"bad start", map[string]any{"user": "a", "start": "yesterday"}, "start: want an RFC 3339 time"},
		{"start after end", map[string]any{"user": "a", "start": "1h", "end": "2h"}, "is not before end"},
		{"bad session", map[string]any{"role_session": "arn:aws:iam::1:role/x"}, "neither a session name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, o := f.run(t, tt.params)
			if st, _ := status.FromError(o.Err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("error %v, want %q", o.Err, tt.want)
			}
		})
	}
	d, err := must(awstrail.New(awstrail.Config{})).Describe(context.Background())
	if err != nil || sdk.CheckDescription(d) != nil || d.GetDestructive() {
		t.Fatalf("description: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
