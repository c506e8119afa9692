package finding_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/finding"
)

func sample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseEventSamples(t *testing.T) {
	tests := []struct {
		file string
		want []finding.Finding
	}{
		{
			file: "guardduty-ssh-bruteforce.json",
			want: []finding.Finding{{
				Source: finding.SourceGuardDuty, ID: "16c5e3d9a0b1f2e7c4d8a6b9e0f1a2b3",
				Type: "UnauthorizedAccess:EC2/SSHBruteForce", Types: []string{"UnauthorizedAccess:EC2/SSHBruteForce"},
				Title:       "198.51.100.7 is performing SSH brute force attacks against i-0a1b2c3d4e5f67890.",
				Description: "198.51.100.7 is performing SSH brute force attacks against i-0a1b2c3d4e5f67890. Brute force attacks are used to gain unauthorized access to your instance by guessing the SSH password.",
				Severity:    2, SeverityLabel: "LOW", Account: "111122223333", Region: "eu-west-1",
				FirstSeen: ts("2026-11-20T08:51:02Z"), UpdatedAt: ts("2026-11-20T09:14:40.120Z"),
				ResourceKind: finding.ResourceInstance, ResourceType: "Instance", InstanceID: "i-0a1b2c3d4e5f67890",
				Tags: map[string]string{"Name": "web-1", "env": "prod"}, EventID: "c8c4daa7-a20c-2f03-0070-b7393dd542ad",
			}},
		},
		{
			file: "guardduty-bitcointool-dns.json",
			want: []finding.Finding{{
				Source: finding.SourceGuardDuty, ID: "a4c1f0b2e3d45f6a7b8c9d0e1f2a3b4c",
				Type: "CryptoCurrency:EC2/BitcoinTool.B!DNS", Types: []string{"CryptoCurrency:EC2/BitcoinTool.B!DNS"},
				Title:       "Bitcoin-related domain name queried by EC2 instance i-0fedcba9876543210.",
				Description: "EC2 instance i-0fedcba9876543210 is querying a domain name that is associated with Bitcoin-related activity.",
				Severity:    8, SeverityLabel: "HIGH", Account: "444455556666", Region: "us-east-1",
				FirstSeen: ts("2026-11-21T01:12:44Z"), UpdatedAt: ts("2026-11-21T02:02:51.907Z"),
				ResourceKind: finding.ResourceInstance, ResourceType: "Instance", InstanceID: "i-0fedcba9876543210",
				Tags: map[string]string{"Name": "batch-7", "env": "prod", "team": "data"}, EventID: "0e2f8c61-7d3b-4a4e-9a0c-5b1d9e3f7a21",
			}},
		},
		{
			file: "guardduty-credential-exfiltration.json",
			want: []finding.Finding{{
				Source: finding.SourceGuardDuty, ID: "e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2",
				Type:        "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
				Types:       []string{"UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"},
				Title:       "Credentials for instance role web-server-role used from external IP address.",
				Description: "Credentials created exclusively for an EC2 instance using instance role web-server-role have been used from external IP address 192.0.2.55.",
				Severity:    8, SeverityLabel: "HIGH", Account: "111122223333", Region: "eu-west-1",
				FirstSeen: ts("2026-11-22T14:05:40Z"), UpdatedAt: ts("2026-11-22T14:29:59.010Z"),
				ResourceKind: finding.ResourceAccessKey, ResourceType: "AccessKey",
				InstanceID: "i-0a1b2c3d4e5f67890", AccessKeyID: "ASIAEXAMPLEEXFIL0001", RoleName: "web-server-role",
				Tags: map[string]string{"Name": "web-1", "env": "prod"}, EventID: "7b9e2f40-1c5d-4e8a-b3f6-2d0c9a8e7f61",
			}},
		},
		{
			file: "guardduty-s3-anonymous-access.json",
			want: []finding.Finding{{
				Source: finding.SourceGuardDuty, ID: "b2a1c3d4e5f60718293a4b5c6d7e8f90",
				Type: "Policy:S3/BucketAnonymousAccessGranted", Types: []string{"Policy:S3/BucketAnonymousAccessGranted"},
				Title:       "Amazon S3 Block Public Access was disabled for S3 bucket acme-quarterly-reports.",
				Description: "The S3 bucket acme-quarterly-reports was made publicly accessible to anonymous users by the IAM user dev-alice.",
				Severity:    8, SeverityLabel: "HIGH", Account: "222233334444", Region: "us-west-2",
				FirstSeen: ts("2026-11-23T08:41:10Z"), UpdatedAt: ts("2026-11-23T08:44:51.230Z"),
				ResourceKind: finding.ResourceS3Bucket, ResourceType: "S3Bucket",
				AccessKeyID: "AKIAEXAMPLEUSER00001", UserName: "dev-alice", Bucket: "acme-quarterly-reports",
				Tags: map[string]string{"data-class": "internal"}, EventID: "3d1f5a9c-6e2b-4f70-8c4d-9a1b2c3d4e5f",
			}},
		},
		{
			file: "securityhub-imported.json",
			want: []finding.Finding{
				{
					Source:      finding.SourceSecurityHub,
					ID:          "arn:aws:guardduty:us-east-1:444455556666:detector/0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e/finding/c0ffee00d15ea5e0b0a7f00d5ca1ab1e",
					Type:        "TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS",
					Types:       []string{"TTPs/Command and Control/Backdoor:EC2-C&CActivity.B!DNS"},
					Title:       "Command and Control server domain name queried by EC2 instance i-0123abcd4567ef890.",
					Description: "EC2 instance i-0123abcd4567ef890 is querying a domain name associated with a known Command & Control server.",
					Severity:    8, SeverityLabel: "HIGH", Account: "444455556666", Region: "us-east-1",
					FirstSeen: ts("2026-11-24T10:31:00Z"), UpdatedAt: ts("2026-11-24T11:01:59.402Z"),
					ResourceKind: finding.ResourceInstance, ResourceType: "AwsEc2Instance", InstanceID: "i-0123abcd4567ef890",
					Tags: map[string]string{"Name": "api-3", "env": "prod"}, EventID: "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0",
				},
				{
					Source:      finding.SourceSecurityHub,
					ID:          "arn:aws:guardduty:us-east-1:444455556666:detector/0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e/finding/f00dbabe12345678f00dbabe12345678",
					Type:        "Unusual Behaviors/User/UnauthorizedAccess:IAMUser-MaliciousIPCaller.Custom",
					Types:       []string{"Unusual Behaviors/User/UnauthorizedAccess:IAMUser-MaliciousIPCaller.Custom"},
					Title:       "API GetSecretValue was invoked from an IP address on a custom threat list.",
					Description: "API GetSecretValue was invoked by IAM user ci-deploy from 198.51.100.99, an address on a custom threat list.",
					Severity:    5, SeverityLabel: "MEDIUM", Account: "444455556666", Region: "us-east-1",
					FirstSeen: ts("2026-11-24T10:50:03Z"), UpdatedAt: ts("2026-11-24T10:50:03Z"),
					ResourceKind: finding.ResourceAccessKey, ResourceType: "AwsIamAccessKey",
					AccessKeyID: "AKIAEXAMPLEKEY000002", UserName: "ci-deploy",
					Tags: map[string]string{}, EventID: "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0",
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := finding.ParseEvent(sample(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d findings, want %d", len(got), len(tt.want))
			}
			for i, f := range got {
				if len(f.Raw) == 0 || !json.Valid(f.Raw) {
					t.Errorf("finding %d: raw JSON missing or invalid", i)
				}
				c := *f
				c.Raw = nil
				if !reflect.DeepEqual(c, tt.want[i]) {
					t.Errorf("finding %d:\n got %+v\nwant %+v", i, c, tt.want[i])
				}
			}
		})
	}
}

func TestFindingMapAndDedupKey(t *testing.T) {
	fs, err := finding.ParseEvent(sample(t, "guardduty-credential-exfiltration.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := fs[0]
	if got, want := f.DedupKey(), "e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2|2026-11-22T14:29:59.01Z"; got != want {
		t.Errorf("DedupKey() = %q, want %q", got, want)
	}
	m := f.Map()
	checks := map[string]any{
		"severity": 8.0, "role_name": "web-server-role", "user_name": "", "bucket": "", "source": "guardduty",
		"updated_at": "2026-11-22T14:29:59.01Z", "resource_kind": "access_key",
	}
	for k, want := range checks {
		if m[k] != want {
			t.Errorf("Map()[%q] = %#v, want %#v", k, m[k], want)
		}
	}
	raw, _ := m["raw"].(map[string]any)
	svc, _ := raw["service"].(map[string]any)
	if svc["count"] != 7.0 {
		t.Errorf("Map()[raw].service.count = %#v, want 7", svc["count"])
	}
	if tags, _ := m["tags"].(map[string]any); tags["env"] != "prod" {
		t.Errorf("Map()[tags] = %#v", m["tags"])
	}
	// An update of the same finding is a new version.
	f2 := *f
	f2.UpdatedAt = f.UpdatedAt.Add(time.Minute)
	if f2.DedupKey() == f.DedupKey() {
		t.Error("an updated finding has the same dedup key")
	}
}

// mutate decodes a sample, applies edit to it, and encodes it again.
func mutate(t *testing.T, file string, edit func(ev map[string]any)) []byte {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(sample(t, file), &ev); err != nil {
		t.Fatal(err)
	}
	edit(ev)
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func detail(ev map[string]any) map[string]any { return ev["detail"].(map[string]any) }

func asff(ev map[string]any) map[string]any {
	return detail(ev)["findings"].([]any)[0].(map[string]any)
}

func TestParseEventRefusals(t *testing.T) {
	const gd = "guardduty-ssh-bruteforce.json"
	const sh = "securityhub-imported.json"
	big := append([]byte(`{"pad":"`), append([]byte(strings.Repeat("x", finding.MaxEventSize)), '"', '}')...)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"too large", big, fmt.Sprintf("event is %d bytes; the limit is 262144", len(big))},
		{"not JSON", []byte(`{"version": "0",`), "invalid JSON: unexpected end of input"},
		{"bad JSON token", []byte(`{"version": 0x1}`), "invalid JSON at byte 13: invalid character 'x' after object key:value pair"},
		{"not an object", []byte(`[1, 2]`), "event: want object, got array"},
		{"trailing data", append(sample(t, gd), []byte(` {}`)...), fmt.Sprintf("unexpected data after the JSON value, which ends at byte %d", len(sample(t, gd))-1)},
		{"duplicate key", []byte(strings.Replace(string(sample(t, gd)), `"severity": 2,`, `"severity": 2, "severity": 9,`, 1)), "detail.severity: duplicate key"},
		{"duplicate key spelled with an escape", []byte(strings.Replace(string(sample(t, gd)), `"severity": 2,`, `"severity": 2, "sev\u0065rity": 9,`, 1)), "detail.severity: duplicate key"},
		{"duplicate key in a later finding", []byte(strings.Replace(string(sample(t, sh)), `"Severity": {"Label": "MEDIUM", "Normalized": 50},`, `"Severity": {"Label": "MEDIUM", "Normalized": 50, "Label": "LOW"},`, 1)), "detail.findings[1].Severity.Label: duplicate key"},
		{"too deep in arrays", []byte(`{"detail":{"x":` + strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70) + `}}`), "detail.x" + strings.Repeat("[0]", 63) + ": nested deeper than 64 levels"},
		{"too deep", []byte(`{"detail":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 71)), "detail.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a: nested deeper than 64 levels"},
		{"unknown detail-type", mutate(t, gd, func(ev map[string]any) { ev["detail-type"] = "AWS API Call via CloudTrail" }),
			`detail-type: "AWS API Call via CloudTrail" is not a finding event; want "GuardDuty Finding" or "Security Hub Findings - Imported"`},
		{"source does not match", mutate(t, gd, func(ev map[string]any) { ev["source"] = "aws.securityhub" }),
			`source: "aws.securityhub" does not send "GuardDuty Finding"; want aws.guardduty`},
		{"missing id", mutate(t, gd, func(ev map[string]any) { delete(ev, "id") }), "id: missing"},
		{"bad account", mutate(t, gd, func(ev map[string]any) { ev["account"] = "12345" }), `account: "12345" is not a 12-digit AWS account id`},
		{"bad region", mutate(t, gd, func(ev map[string]any) { ev["region"] = "EU" }), `region: "EU" is not an AWS region name`},
		{"bad time", mutate(t, gd, func(ev map[string]any) { ev["time"] = "now" }), `time: "now" is not an RFC 3339 time`},
		{"resources not strings", mutate(t, gd, func(ev map[string]any) { ev["resources"] = []any{1} }), "resources[0]: want string, got number"},
		{"missing detail", mutate(t, gd, func(ev map[string]any) { delete(ev, "detail") }), "detail: missing"},
		{"detail not an object", mutate(t, gd, func(ev map[string]any) { ev["detail"] = "x" }), "detail: want object, got string"},
		{"severity as string", mutate(t, gd, func(ev map[string]any) { detail(ev)["severity"] = "high" }), "detail.severity: want number, got string"},
		{"severity out of range", mutate(t, gd, func(ev map[string]any) { detail(ev)["severity"] = 42 }), "detail.severity: 42 is outside 0–10"},
		{"type missing", mutate(t, gd, func(ev map[string]any) { delete(detail(ev), "type") }), "detail.type: missing"},
		{"type empty", mutate(t, gd, func(ev map[string]any) { detail(ev)["type"] = " " }), "detail.type: empty"},
		{"accountId wrong", mutate(t, gd, func(ev map[string]any) { detail(ev)["accountId"] = 111122223333 }), "detail.accountId: want string, got number"},
		{"updatedAt not a time", mutate(t, gd, func(ev map[string]any) { detail(ev)["updatedAt"] = "yesterday" }), `detail.updatedAt: "yesterday" is not an RFC 3339 time`},
		{"service wrong type", mutate(t, gd, func(ev map[string]any) { detail(ev)["service"].(map[string]any)["count"] = "42" }), "detail.service.count: want number, got string"},
		{"instance without details", mutate(t, gd, func(ev map[string]any) {
			delete(detail(ev)["resource"].(map[string]any), "instanceDetails")
		}), "detail.resource.instanceDetails: missing for resourceType Instance"},
		{"tag key wrong type", mutate(t, gd, func(ev map[string]any) {
			detail(ev)["resource"].(map[string]any)["instanceDetails"].(map[string]any)["tags"] = []any{map[string]any{"key": 1, "value": "x"}}
		}), "detail.resource.instanceDetails.tags[0].key: want string, got number"},
		{"string too long", mutate(t, gd, func(ev map[string]any) { detail(ev)["title"] = strings.Repeat("t", 5000) }), "detail.title: string of 5000 bytes; the limit is 4096"},
		{"no findings", mutate(t, sh, func(ev map[string]any) { detail(ev)["findings"] = []any{} }), "detail.findings: empty"},
		{"findings not a list", mutate(t, sh, func(ev map[string]any) { detail(ev)["findings"] = map[string]any{} }), "detail.findings: want array, got object"},
		{"finding not an object", mutate(t, sh, func(ev map[string]any) { detail(ev)["findings"] = []any{"x"} }), "detail.findings[0]: want object, got string"},
		{"ASFF severity label", mutate(t, sh, func(ev map[string]any) { asff(ev)["Severity"] = map[string]any{"Label": "SEVERE"} }),
			`detail.findings[0].Severity.Label: "SEVERE" is not INFORMATIONAL, LOW, MEDIUM, HIGH or CRITICAL`},
		{"ASFF severity missing", mutate(t, sh, func(ev map[string]any) { asff(ev)["Severity"] = map[string]any{} }),
			"detail.findings[0].Severity.Label: missing; Severity needs Label or Normalized"},
		{"ASFF normalized out of range", mutate(t, sh, func(ev map[string]any) { asff(ev)["Severity"] = map[string]any{"Normalized": 170} }),
			"detail.findings[0].Severity.Normalized: 170 is outside 0–100"},
		{"ASFF types missing", mutate(t, sh, func(ev map[string]any) { delete(asff(ev), "Types") }), "detail.findings[0].Types: missing"},
		{"ASFF resources wrong", mutate(t, sh, func(ev map[string]any) { asff(ev)["Resources"] = "i-1" }), "detail.findings[0].Resources: want array, got string"},
		{"ASFF instance id", mutate(t, sh, func(ev map[string]any) {
			asff(ev)["Resources"].([]any)[0].(map[string]any)["Id"] = "arn:aws:ec2:us-east-1:444455556666:volume/vol-1"
		}), `detail.findings[0].Resources[0].Id: "arn:aws:ec2:us-east-1:444455556666:volume/vol-1" does not name an EC2 instance`},
		{"ASFF tags wrong", mutate(t, sh, func(ev map[string]any) {
			asff(ev)["Resources"].([]any)[0].(map[string]any)["Tags"] = map[string]any{"env": true}
		}), "detail.findings[0].Resources[0].Tags.env: want string, got boolean"},
		{"ASFF second finding checked", mutate(t, sh, func(ev map[string]any) {
			detail(ev)["findings"].([]any)[1].(map[string]any)["AwsAccountId"] = "x"
		}), `detail.findings[1].AwsAccountId: "x" is not a 12-digit AWS account id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := finding.ParseEvent(tt.data)
			if err == nil {
				t.Fatalf("accepted: %+v", fs)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\n want   %q", err, tt.want)
			}
		})
	}
}
