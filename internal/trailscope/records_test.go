package trailscope

import (
	"fmt"
	"strings"
	"testing"
)

// The record shapes below follow AWS's documented examples: the envelope
// and userIdentity of the CloudTrail user guide ("CloudTrail log file
// examples", "CloudTrail userIdentity element"), and the
// requestParameters / responseElements of each service's "Logging API
// calls with CloudTrail" page (IAM and STS in the IAM user guide, EC2,
// Lambda, S3, GuardDuty, Security Hub, Config, EventBridge). Account ids,
// keys and names are AWS's example values.

const (
	exampleAccount = "444455556666"
	otherAccount   = "111122223333"
	outsideAccount = "999988887777"
	exampleKey     = "AKIAI44QH8DHBEXAMPLE"
)

// iamUserIdentity is the userIdentity of a long-term IAM user key.
func iamUserIdentity(account, user, key string) string {
	return fmt.Sprintf(`{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::%[1]s:user/%[2]s","accountId":"%[1]s","accessKeyId":"%[3]s","userName":"%[2]s"}`, account, user, key)
}

// roleIdentity is the userIdentity of a role session.
func roleIdentity(account, role, session, key string) string {
	return fmt.Sprintf(`{"type":"AssumedRole","principalId":"AROAIDPPEZS35WEXAMPLE:%[3]s","arn":"arn:aws:sts::%[1]s:assumed-role/%[2]s/%[3]s","accountId":"%[1]s","accessKeyId":"%[4]s",`+
		`"sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAIDPPEZS35WEXAMPLE","arn":"arn:aws:iam::%[1]s:role/%[2]s","accountId":"%[1]s","userName":"%[2]s"},`+
		`"webIdFederationData":{},"attributes":{"creationDate":"2024-05-01T10:00:00Z","mfaAuthenticated":"false"}}}`, account, role, session, key)
}

// event renders a full record as a trail delivers it.
type event struct {
	identity, source, name, region, account string
	params, response                        string
	readOnly                                bool
	errorCode, shared, id, at, category     string
}

func (e event) json() string {
	if e.region == "" {
		e.region = "us-east-1"
	}
	if e.account == "" {
		e.account = exampleAccount
	}
	if e.params == "" {
		e.params = "null"
	}
	if e.response == "" {
		e.response = "null"
	}
	if e.id == "" {
		e.id = "3c5ab3e6-4e2b-4b5c-9f3c-" + fmt.Sprintf("%012x", len(e.name)*7919+len(e.params))
	}
	if e.at == "" {
		e.at = "2024-05-01T10:15:00Z"
	}
	if e.category == "" {
		e.category = "Management"
	}
	var extra strings.Builder
	if e.errorCode != "" {
		fmt.Fprintf(&extra, `"errorCode":%q,"errorMessage":"User is not authorized",`, e.errorCode)
	}
	if e.shared != "" {
		fmt.Fprintf(&extra, `"sharedEventID":%q,`, e.shared)
	}
	return fmt.Sprintf(`{"eventVersion":"1.08","userIdentity":%s,"eventTime":%q,"eventSource":"%s.amazonaws.com","eventName":%q,"awsRegion":%q,`+
		`"sourceIPAddress":"203.0.113.12","userAgent":"aws-cli/2.13.5 Python/3.11.4 Linux/4.14.255 botocore/2.4.5",%s`+
		`"requestParameters":%s,"responseElements":%s,"requestID":"a1b2c3d4-5678-90ab-cdef-EXAMPLE11111","eventID":%q,"readOnly":%t,`+
		`"eventType":"AwsApiCall","managementEvent":%t,"recipientAccountId":%q,"eventCategory":%q}`,
		e.identity, e.at, e.source, e.name, e.region, extra.String(), e.params, e.response, e.id, e.readOnly,
		e.category == "Management", e.account, e.category)
}

func (e event) record(t testing.TB) *Record {
	t.Helper()
	r, err := ParseRecord([]byte(e.json()))
	if err != nil {
		t.Fatalf("ParseRecord(%s): %v", e.name, err)
	}
	return r
}
