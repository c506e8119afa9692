package awsiam

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"time"

	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
)

// The policies containment adds. Rollback removes exactly these, and only
// where this containment added or replaced them.
const (
	// DenyAllPolicy is the AWS managed policy deny_all attaches: it denies
	// every action. The responder role may attach this policy and no other
	// (its iam:PolicyARN condition), so containment needs no inline put
	// for it.
	DenyAllPolicy = "AWSDenyAll"
	// LegacyDenyAllPolicy is the inline policy earlier versions put for
	// deny_all. Rollback records that list it are still undone.
	LegacyDenyAllPolicy = "FirebreakDenyAll"
	// RevokeSessionsPolicy denies every action to sessions issued before
	// the containment. The name is the one the IAM console's "Revoke active
	// sessions" uses, so responders recognise it.
	RevokeSessionsPolicy = "AWSRevokeOlderSessions"
)

// denyAllARNRE matches AWSDenyAll's ARN in any partition.
var denyAllARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::aws:policy/AWSDenyAll$`)

// partitionRE reads the partition of an ARN.
var partitionRE = regexp.MustCompile(`^arn:(aws[a-z-]*):`)

// denyAllARN is AWSDenyAll's ARN in the partition of the role Firebreak
// acts through (aws when that is not known).
func denyAllARN(responderRoleARN string) string {
	partition := "aws"
	if m := partitionRE.FindStringSubmatch(responderRoleARN); m != nil {
		partition = m[1]
	}
	return "arn:" + partition + ":iam::aws:policy/" + DenyAllPolicy
}

// revokeDocument is AWSRevokeOlderSessions's document: deny everything to
// credentials whose token was issued before cutoff. Long-term access keys
// carry no aws:TokenIssueTime and are not affected.
func revokeDocument(cutoff time.Time) string {
	return fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["*"],"Resource":["*"],"Condition":{"DateLessThan":{"aws:TokenIssueTime":%q}}}]}`,
		cutoff.UTC().Format(time.RFC3339))
}

// revocationCutoff is the aws:TokenIssueTime before which sessions are
// denied: the next whole second after now.
//
// Security-critical: issue times are compared at one-second resolution, so
// a cut-off rounded down would spare the sessions issued earlier in the
// same second. Rounding up also denies sessions issued in the rest of that
// second, which only have to be renewed.
func revocationCutoff(now time.Time) time.Time {
	return now.UTC().Truncate(time.Second).Add(time.Second)
}

// decodePolicyDocument reads a policy document as IAM returns it:
// percent-encoded (RFC 3986).
func decodePolicyDocument(s string) (string, error) {
	doc, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("IAM returned a policy document that is not percent-encoded: %w", err)
	}
	return doc, nil
}

// samePolicy reports whether two policy documents are the same JSON value.
func samePolicy(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return a == b
	}
	return reflect.DeepEqual(va, vb)
}

// containRecord is aws-iam-contain's rollback record: what the task
// changed, with the state before, so that aws-iam-uncontain undoes exactly
// that.
type containRecord struct {
	awsresponse.RecordHeader
	// User or Role is the contained principal; both are empty when there
	// was nothing to contain in the account.
	User string `json:"user,omitempty"`
	Role string `json:"role,omitempty"`
	// Keys are the access keys the task deactivated.
	Keys []recordedKey `json:"keys,omitempty"`
	// Policies are the inline policies the task added or replaced.
	Policies []recordedPolicy `json:"policies,omitempty"`
	// Attached are the ARNs of the managed policies the task attached
	// (AWSDenyAll only); they were not attached before.
	Attached []string `json:"attached_policies,omitempty"`
	// LoginProfileDeleted says the task deleted the user's console
	// password, which no rollback can restore.
	LoginProfileDeleted bool `json:"login_profile_deleted,omitempty"`
}

// recordedKey is an access key the containment deactivated.
type recordedKey struct {
	ID string `json:"id"`
	// PreviousStatus is the key's status before, always Active.
	PreviousStatus string `json:"previous_status"`
}

// recordedPolicy is an inline policy the containment put.
type recordedPolicy struct {
	Name string `json:"name"`
	// Document is the document the containment put.
	Document string `json:"document"`
	// Previous is the document it replaced, nil when there was none.
	Previous *string `json:"previous,omitempty"`
}
