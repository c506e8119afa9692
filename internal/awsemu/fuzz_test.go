package awsemu

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseForm feeds arbitrary query strings to the form parser and the
// accessors handlers use; none may panic, and what parses must read back.
func FuzzParseForm(f *testing.F) {
	for _, s := range []string{
		"Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0&Filter.1.Name=tag%3AName&Filter.1.Value.1=web-*",
		"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fx&Tags.member.1.Key=a&Tags.member.1.Value=b",
		"IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=abc",
		"a..b=1&.=2&a.=3&%zz=4", "X.99999999999=1&X.0=2&X.-1=3&X.member.2=4",
		strings.Repeat("a.", 40) + "=deep",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseParams(values)
		if err != nil {
			return
		}
		for k, vs := range values {
			if k == "" || len(vs) == 0 || strings.Contains(k, "..") || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") {
				continue
			}
			if got := p.str(k); got != vs[0] {
				t.Fatalf("str(%q) = %q, want %q", k, got, vs[0])
			}
		}
		for _, name := range []string{"Filter", "InstanceId", "Tags", "X", "IpPermissions", "a"} {
			for _, item := range p.list(name) {
				item.str("Name")
				item.strings("Value")
				item.integer("FromPort")
				item.optBool("Ebs.DeleteOnTermination")
			}
		}
		if _, err := json.Marshal(p.flatten(redactParam)); err != nil {
			t.Fatalf("flatten gave something JSON cannot render: %v", err)
		}
	})
}

// FuzzParsePolicy feeds arbitrary documents to the policy parser and
// evaluates whatever parses; neither may panic, and a document that parses
// must parse the same way again.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-03-01T12:00:00Z"}}}]}`,
		`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:role/W","123456789012"]},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"x"},"Null":{"aws:SourceIdentity":"false"}}}}`,
		`{"Statement":[{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:s3:::b/*","Condition":{"ForAnyValue:StringLike":{"aws:PrincipalTag/team":["sec*","ops?"]},"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"},"NumericLessThan":{"s3:max-keys":10}}}]}`,
		`{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${aws:username}/*"}]}`,
		`{"Statement":[]}`, `[]`, `{"Statement":[{"Effect":"Allow"}]}`, `{"Version":1}`, ` {"Statement":{}}`,
	} {
		f.Add(s)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	keys := map[string][]string{
		"aws:tokenissuetime": {now.Add(-time.Hour).Format(time.RFC3339)}, "aws:currenttime": {now.Format(time.RFC3339)},
		"aws:principalarn": {"arn:aws:iam::123456789012:role/W"}, "aws:username": {"alice"}, "aws:principaltag/team": {"security"},
		"aws:sourceip": {"10.1.2.3"}, "sts:externalid": {"x"}, "aws:tagkeys": {"a", "b"},
	}
	f.Fuzz(func(t *testing.T, doc string) {
		for _, kind := range []policyKind{identityPolicy, trustPolicy, resourcePolicy} {
			p, err := parsePolicy(doc, kind)
			if err != nil {
				continue
			}
			again, err := parsePolicy(doc, kind)
			if err != nil || len(again.Statements) != len(p.Statements) {
				t.Fatalf("a parsed document failed to parse again: %v", err)
			}
			rc := &requestContext{Action: "ec2:DescribeInstances", Resource: "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
				Keys: keys, Caller: &callerIdentity{Account: "123456789012", ARNs: []string{"arn:aws:iam::123456789012:role/W"}}}
			p.evaluate(rc)
			rc.Action, rc.Resource = "sts:AssumeRole", "arn:aws:iam::123456789012:role/R"
			p.evaluate(rc)
		}
		policyIsPublic(doc)
	})
}

func TestPolicyEvaluation(t *testing.T) {
	issued := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	keys := map[string][]string{
		"aws:tokenissuetime":    {issued.Format(time.RFC3339)},
		"aws:principalarn":      {"arn:aws:iam::123456789012:role/FirebreakWorker"},
		"aws:sourceidentity":    {"alice@example.com"},
		"aws:principaltag/team": {"security"},
		"ec2:sourceinstancearn": {"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"},
		"aws:username":          {"alice"},
	}
	tests := []struct {
		name   string
		policy string
		action string
		want   decision
	}{
		{"allow star", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`, "ec2:DescribeInstances", allowed},
		{"action wildcard", `{"Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}`, "ec2:DescribeInstances", allowed},
		{"action is case-insensitive", `{"Statement":[{"Effect":"Allow","Action":"EC2:describeinstances","Resource":"*"}]}`, "ec2:DescribeInstances", allowed},
		{"other action", `{"Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}`, "ec2:ModifyInstanceAttribute", implicitDeny},
		{"deny wins", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"ec2:*","Resource":"*"}]}`, "ec2:DescribeInstances", explicitDeny},
		{"NotAction", `{"Statement":[{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}]}`, "iam:GetUser", implicitDeny},
		{"revoke older sessions", `{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-03-01T12:00:00Z"}}}]}`, "s3:ListAllMyBuckets", explicitDeny},
		{"revoke spares newer sessions", `{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"DateLessThan":{"aws:TokenIssueTime":"2025-03-01T10:00:00Z"}}}]}`, "s3:ListAllMyBuckets", implicitDeny},
		{"arn like principal", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Firebreak*"}}}]}`, "ec2:DescribeInstances", allowed},
		{"string equals source identity", `{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SourceIdentity":"alice@example.com"}}}]}`, "ec2:DescribeInstances", explicitDeny},
		{"principal tag", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"security"}}}]}`, "ec2:DescribeInstances", allowed},
		{"instance credentials", `{"Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"ArnEquals":{"ec2:SourceInstanceARN":"arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}}}]}`, "s3:GetObject", explicitDeny},
		{"absent key fails a positive test", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"sts:ExternalId":"x"}}}]}`, "ec2:DescribeInstances", implicitDeny},
		{"absent key passes a negated test", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringNotEquals":{"sts:ExternalId":"x"}}}]}`, "ec2:DescribeInstances", allowed},
		{"IfExists on absent key", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEqualsIfExists":{"sts:ExternalId":"x"}}}]}`, "ec2:DescribeInstances", allowed},
		{"Null true", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Null":{"sts:ExternalId":"true"}}}]}`, "ec2:DescribeInstances", allowed},
		{"Null false", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Null":{"aws:SourceIdentity":"false"}}}]}`, "ec2:DescribeInstances", allowed},
		{"policy variable", `{"Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:iam::123456789012:user/${aws:username}"}]}`, "iam:GetUser", allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePolicy(tt.policy, identityPolicy)
			ok(t, err)
			got := p.evaluate(&requestContext{Action: tt.action, Resource: "arn:aws:iam::123456789012:user/alice", Keys: keys}).Decision
			if got != tt.want {
				t.Fatalf("decision %d, want %d", got, tt.want)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"a*c", "abbbc", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"*:Describe*", "ec2:DescribeInstances", true}, {"arn:aws:s3:::b/*", "arn:aws:s3:::b", false},
		{"***a", "bbba", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"*", "anything*", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s, false); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
