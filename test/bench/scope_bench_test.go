package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awsscope"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

// Scope measurement's organisation: 50 member accounts in 4 regions whose
// organisation trail holds 100,000 events, 500 per account and region, in
// log files of 100 events.
const (
	scopeMembers       = 50
	scopeEventsPerArea = 500
	scopeFileRecords   = 100
)

var scopeRegions = []string{"us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"}

// trailRecord renders one CloudTrail record in the layout AWS writes.
func trailRecord(id int, account, region, identity, name, source string, at time.Time, params, response, shared string) json.RawMessage {
	extra := ""
	if shared != "" {
		extra = fmt.Sprintf(`"sharedEventID":%q,`, shared)
	}
	return json.RawMessage(fmt.Sprintf(`{"eventVersion":"1.10","userIdentity":%s,"eventTime":%q,"eventSource":"%s.amazonaws.com","eventName":%q,`+
		`"awsRegion":%q,"sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0 Python/3.11.6","requestParameters":%s,"responseElements":%s,`+
		`"requestID":"req-%08d","eventID":"ev-%08d-0000-4000-8000-000000000000","readOnly":%t,"eventType":"AwsApiCall","managementEvent":true,`+
		`"recipientAccountId":%q,%s"eventCategory":"Management"}`,
		identity, at.UTC().Format(time.RFC3339), source, name, region, params, response, id, id,
		len(name) > 4 && (name[:4] == "Desc" || name[:4] == "List" || name[:3] == "Get"), account, extra))
}

func userIdentity(account, user, key string) string {
	return fmt.Sprintf(`{"type":"IAMUser","principalId":"AIDA%016d","arn":"arn:aws:iam::%s:user/%s","accountId":%q,"accessKeyId":%q,"userName":%q}`,
		0, account, user, account, key, user)
}

func sessionIdentity(account, role, session, key string) string {
	return fmt.Sprintf(`{"type":"AssumedRole","principalId":"AROA%016d:%s","arn":"arn:aws:sts::%s:assumed-role/%s/%s","accountId":%q,"accessKeyId":%q,`+
		`"sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA%016d","arn":"arn:aws:iam::%s:role/%s","accountId":%q,"userName":%q},`+
		`"attributes":{"creationDate":"2025-03-01T00:00:00Z","mfaAuthenticated":"false"}}}`, 0, session, account, role, session, account, key, 0, account, role, account, role)
}

// scopeOrganisation fills the emulator's trail bucket (and, with history,
// the LookupEvents history) with the measurement's events: noise from a
// workload session in every account and region, and the attack of a leaked
// key of member 0 that assumes a role in member 7 and acts there in every
// region. It returns the leaked key and the number of attack events.
func scopeOrganisation(b *testing.B, lab *awstest.Lab, now time.Time, history bool) (string, int) {
	b.Helper()
	victim, pivot := awstest.Member(0), awstest.Member(7)
	leaked := awsresponsetest.LeakedKey(b, lab, victim).ID
	hopKey := "ASIAHOPKEYBENCH00007"
	start := now.Add(-23 * time.Hour)
	id := 0
	attack := 0
	for m := range scopeMembers {
		acct := awstest.Member(m)
		for ri, region := range scopeRegions {
			var recs []json.RawMessage
			noiseKey := fmt.Sprintf("ASIANOISE%05d%06d", m, ri)
			for i := range scopeEventsPerArea {
				id++
				at := start.Add(time.Duration(i) * 22 * time.Hour / scopeEventsPerArea)
				identity := sessionIdentity(acct, "app", "worker", noiseKey)
				name, source, params, resp, shared := []string{"DescribeInstances", "GetObject", "PutMetricData", "ListQueues"}[i%4], "ec2", "{}", "null", ""
				switch {
				case acct == victim && region == "us-east-1" && i == 10:
					identity, name, source = userIdentity(acct, awsemu.LabCompromisedUser, leaked), "AssumeRole", "sts"
					params = fmt.Sprintf(`{"roleArn":"arn:aws:iam::%s:role/ops","roleSessionName":"maintenance"}`, pivot)
					resp = fmt.Sprintf(`{"credentials":{"accessKeyId":%q},"assumedRoleUser":{"arn":"arn:aws:sts::%s:assumed-role/ops/maintenance"}}`, hopKey, pivot)
					shared = "shared-bench-hop"
					attack++
				case acct == victim && region == "us-east-1" && i < 40:
					identity, name, source, params = userIdentity(acct, awsemu.LabCompromisedUser, leaked), "ListUsers", "iam", "{}"
					if i == 20 {
						name, params = "CreateUser", `{"userName":"backup-admin"}`
					}
					attack++
				case acct == pivot && region == "us-east-1" && i == 11:
					identity = fmt.Sprintf(`{"type":"AWSAccount","principalId":"AIDA%016d","accountId":%q}`, 0, victim)
					name, source, shared = "AssumeRole", "sts", "shared-bench-hop"
					params = fmt.Sprintf(`{"roleArn":"arn:aws:iam::%s:role/ops","roleSessionName":"maintenance"}`, pivot)
					resp = fmt.Sprintf(`{"credentials":{"accessKeyId":%q},"assumedRoleUser":{"arn":"arn:aws:sts::%s:assumed-role/ops/maintenance"}}`, hopKey, pivot)
					attack++
				case acct == pivot && i >= 20 && i < 95:
					identity = sessionIdentity(acct, "ops", "maintenance", hopKey)
					name = "DescribeSecurityGroups"
					if i == 30 && region == "eu-west-1" {
						name, params = "AuthorizeSecurityGroupIngress", `{"groupId":"sg-0bench","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]}}`
					}
					attack++
				}
				if name == "GetObject" || name == "PutMetricData" || name == "ListQueues" {
					source = map[string]string{"GetObject": "s3", "PutMetricData": "monitoring", "ListQueues": "sqs"}[name]
				}
				recs = append(recs, trailRecord(id, acct, region, identity, name, source, at, params, resp, shared))
			}
			for f := 0; f < len(recs); f += scopeFileRecords {
				file := recs[f:min(f+scopeFileRecords, len(recs))]
				if err := lab.Emu.WriteTrailLogFile(acct, region, start.Add(time.Duration(f)*time.Minute), file); err != nil {
					b.Fatal(err)
				}
			}
			if history {
				if err := lab.Emu.AddEventHistory(acct, region, recs); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return leaked, attack
}

// BenchmarkScopeKeyAcrossOrganisation scopes one leaked key across a
// 50-account, 4-region emulated organisation whose trail holds 100,000
// events, at the plugin level (over go-plugin's gRPC transport, as a worker
// does, against the emulator on loopback):
//
//   - trail: one aws-credential-scope task in the log-archive account
//     reads every log file of the window, 32 at a time. It reports the
//     wall time, the files and bytes read (gzip, as stored) and the events
//     found.
//   - lookup: one task per account, each looking every chain key up in the
//     4 regions at LookupEvents' 2 requests per second per region (on the
//     emulated clock, which the rate limiter's waits move), then the next
//     keys in the accounts they entered. It reports the pages read and the
//     longest task's time at AWS's rate, which is what an organisation-wide
//     fan-out takes when every account runs at once.
func BenchmarkScopeKeyAcrossOrganisation(b *testing.B) {
	clock := awsresponsetest.NewClock()
	seed := awsemu.Lab{Accounts: scopeMembers + 2, OrgTrail: true}.Seed()
	for i := 2; i < len(seed.Accounts); i++ {
		seed.Accounts[i].Regions = scopeRegions
	}
	lab := awsresponsetest.StartLab(b, seed, clock)
	leaked, attack := scopeOrganisation(b, lab, clock.Now(), true)
	a, err := awsscope.New(awsscope.Config{Clock: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		b.Fatal(err)
	}
	client := sdktest.Start(b, a)
	ctx := context.Background()
	scope := func(account string, params map[string]any) *awsscope.Result {
		o := sdktest.Execute(ctx, b, client, lab.Request(b, account), params)
		if o.Err != nil || o.Result.GetError() != "" {
			b.Fatalf("scope in %s: %v %s", account, o.Err, o.Result.GetError())
		}
		var res awsscope.Result
		o.Output(b, &res)
		return &res
	}
	for b.Loop() {
		began := time.Now()
		res := scope(awstest.SecurityAccount(), map[string]any{"access_key_id": leaked, "source": "trail", "trail_bucket": awsemu.LabTrailBucket, "start": "24h"})
		wall := time.Since(began)
		if res.Scope.EventCount != attack || res.Read.Records != scopeMembers*len(scopeRegions)*scopeEventsPerArea {
			b.Fatalf("trail: %d events of %d, %d records read", res.Scope.EventCount, attack, res.Read.Records)
		}
		b.ReportMetric(wall.Seconds(), "trail-wall-s")
		b.ReportMetric(float64(res.Read.Bytes)/1e6, "trail-MB-read")
		b.ReportMetric(float64(res.Read.Files), "trail-files")
		b.ReportMetric(float64(res.Read.Records), "trail-records")
		b.ReportMetric(float64(res.Scope.EventCount), "trail-matched")

		// LookupEvents: every account at once in production; here one after
		// the other, each timed on the emulated clock.
		pages, found, longest := 0, 0, time.Duration(0)
		began = time.Now()
		next := map[string][]string{}
		for m := range scopeMembers {
			acct := awstest.Member(m)
			t0 := clock.Now()
			r := scope(acct, map[string]any{"access_key_id": leaked, "start": "24h", "regions": scopeRegions})
			longest = max(longest, clock.Now().Sub(t0))
			pages += r.Read.Pages
			found += r.Scope.EventCount
			for _, k := range r.NextKeys {
				next[k.Account] = append(next[k.Account], k.AccessKeyID)
			}
			clock.Advance(time.Second)
		}
		for acct, keys := range next {
			for _, k := range keys {
				t0 := clock.Now()
				r := scope(acct, map[string]any{"access_key_id": k, "start": "24h", "regions": scopeRegions})
				longest = max(longest, clock.Now().Sub(t0))
				pages += r.Read.Pages
				found += r.Scope.EventCount
			}
		}
		b.ReportMetric(time.Since(began).Seconds(), "lookup-wall-s")
		b.ReportMetric(float64(pages), "lookup-pages")
		b.ReportMetric(longest.Seconds(), "lookup-longest-task-at-aws-rate-s")
		b.ReportMetric(float64(found), "lookup-matched")
	}
}
