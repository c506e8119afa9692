package trailscope

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Trust documents as the IAM user guide's CloudTrail examples record them:
// requestParameters carry the JSON text (CreateRole's
// assumeRolePolicyDocument, UpdateAssumeRolePolicy's policyDocument).
const (
	ec2Trust     = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com"]},"Action":["sts:AssumeRole"]}]}`
	opsTrust     = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"sts:AssumeRole"}]}`
	vendorTrust  = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"12345"}}}]}`
	attackTrust  = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}`
	attackTrust2 = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}`
	adminKey     = "AKIAIOSFODNN7ADMIN01"
)

// createRole is CreateRole as the IAM user guide's example logs it.
func createRole(identity, account, role, doc, id, at string) event {
	params := fmt.Sprintf(`{"roleName":%q,"description":"Allows EC2 instances to call AWS services on your behalf.","assumeRolePolicyDocument":%q}`, role, doc)
	resp := fmt.Sprintf(`{"role":{"assumeRolePolicyDocument":%q,"arn":"arn:aws:iam::%s:role/%s","roleId":"AROA6EXAMPLEROLEID123","createDate":"Jan 6, 2020 6:21:36 PM","roleName":%q,"path":"/"}}`,
		url.QueryEscape(doc), account, role, role)
	return event{identity: identity, source: "iam", name: "CreateRole", account: account, params: params, response: resp, id: id, at: at}
}

// updateTrust is UpdateAssumeRolePolicy as the IAM user guide logs it
// (responseElements null).
func updateTrust(identity, account, role, doc, id, at string) event {
	return event{identity: identity, source: "iam", name: "UpdateAssumeRolePolicy", account: account,
		params: fmt.Sprintf(`{"roleName":%q,"policyDocument":%q}`, role, doc), id: id, at: at}
}

func TestPriorTrust(t *testing.T) {
	attacker := iamUserIdentity(exampleAccount, "ci-deployer", exampleKey)
	admin := iamUserIdentity(exampleAccount, "Alice", adminKey)
	org := &Classifier{OrgAccounts: map[string]bool{exampleAccount: true, otherAccount: true}}
	change := updateTrust(attacker, exampleAccount, "ops", attackTrust, "e-attack", "2024-05-01T10:15:00Z")
	tests := []struct {
		name string
		evs  []event
		// want is the earlier document and its event, or unknown the
		// start of the reason it cannot be known.
		want, wantEvent, unknown string
		outside                  bool
	}{
		{name: "set by the role's CreateRole",
			evs:  []event{createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-03-01T09:00:00Z"), change},
			want: opsTrust, wantEvent: "e-create"},
		{name: "the latest earlier update wins over the CreateRole",
			evs: []event{createRole(admin, exampleAccount, "ops", ec2Trust, "e-create", "2024-03-01T09:00:00Z"),
				updateTrust(admin, exampleAccount, "ops", opsTrust, "e-update", "2024-04-01T09:00:00Z"), change},
			want: opsTrust, wantEvent: "e-update"},
		{name: "a change after the attacker's is not the earlier document",
			evs: []event{createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-03-01T09:00:00Z"), change,
				updateTrust(admin, exampleAccount, "ops", ec2Trust, "e-later", "2024-05-01T11:00:00Z")},
			want: opsTrust, wantEvent: "e-create"},
		{name: "the same second as the change counts as before it",
			evs:  []event{createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-05-01T10:15:00Z"), change},
			want: opsTrust, wantEvent: "e-create"},
		{name: "the attacker changes it twice: the document before the first",
			evs: []event{createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-03-01T09:00:00Z"), change,
				updateTrust(attacker, exampleAccount, "ops", attackTrust2, "e-attack-2", "2024-05-01T10:20:00Z")},
			want: opsTrust, wantEvent: "e-create"},
		{name: "a refused earlier update is not a document the role had",
			evs: []event{createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-03-01T09:00:00Z"),
				func() event {
					e := updateTrust(admin, exampleAccount, "ops", ec2Trust, "e-denied", "2024-04-01T09:00:00Z")
					e.errorCode = "AccessDenied"
					return e
				}(), change},
			want: opsTrust, wantEvent: "e-create"},
		{name: "an earlier document trusting a vendor outside the organisation is flagged",
			evs:  []event{createRole(admin, exampleAccount, "ops", vendorTrust, "e-create", "2024-03-01T09:00:00Z"), change},
			want: vendorTrust, wantEvent: "e-create", outside: true},
		{name: "URL-encoded in requestParameters",
			evs:  []event{updateTrust(admin, exampleAccount, "ops", url.QueryEscape(opsTrust), "e-update", "2024-04-01T09:00:00Z"), change},
			want: opsTrust, wantEvent: "e-update"},
		{name: "nothing earlier was read",
			evs: []event{change}, unknown: "no CreateRole or UpdateAssumeRolePolicy"},
		{name: "the same role name in another account is another role",
			evs:     []event{createRole(iamUserIdentity(otherAccount, "Bob", "AKIAOTHERACCOUNTKEY1"), otherAccount, "ops", opsTrust, "e-other", "2024-03-01T09:00:00Z"), change},
			unknown: "no CreateRole or UpdateAssumeRolePolicy"},
		{name: "another role of the account is not this one",
			evs:     []event{createRole(admin, exampleAccount, "ops-ro", opsTrust, "e-other", "2024-03-01T09:00:00Z"), change},
			unknown: "no CreateRole or UpdateAssumeRolePolicy"},
		{name: "the attacker created the role",
			evs:     []event{createRole(attacker, exampleAccount, "ops", ec2Trust, "e-attacker-create", "2024-05-01T10:10:00Z"), change},
			unknown: "the role was created by the followed credential"},
		{name: "two documents in the same second",
			evs: []event{updateTrust(admin, exampleAccount, "ops", opsTrust, "e-a", "2024-04-01T09:00:00Z"),
				updateTrust(iamUserIdentity(exampleAccount, "Carol", "AKIACAROLEXAMPLEKEY1"), exampleAccount, "ops", ec2Trust, "e-b", "2024-04-01T09:00:00Z"), change},
			unknown: "events "},
		{name: "a document that is not a policy",
			evs:     []event{updateTrust(admin, exampleAccount, "ops", "not a policy", "e-update", "2024-04-01T09:00:00Z"), change},
			unknown: "the document event e-update recorded is not a JSON policy"},
		{name: "a document over IAM's quota",
			evs:     []event{updateTrust(admin, exampleAccount, "ops", `{"Statement":[],"Pad":"`+strings.Repeat("x", MaxTrustPolicyBytes)+`"}`, "e-update", "2024-04-01T09:00:00Z"), change},
			unknown: "the document event e-update recorded is not a JSON policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Build(exampleKey, records(t, tt.evs), org)
			var trust []Artifact
			for _, a := range s.Artifacts {
				if a.Kind == KindRoleTrust {
					trust = append(trust, a)
				}
			}
			if len(trust) == 0 {
				t.Fatalf("no trust artifact in %+v", s.Artifacts)
			}
			for _, a := range trust {
				d := a.Detail
				if tt.unknown != "" {
					if d[DetailPriorTrust] != "" || !strings.HasPrefix(d[DetailPriorUnknown], tt.unknown) {
						t.Fatalf("artifact %s: prior %q, unknown %q; want unknown starting %q", a.EventID, d[DetailPriorTrust], d[DetailPriorUnknown], tt.unknown)
					}
					continue
				}
				if d[DetailPriorTrust] != tt.want || d[DetailPriorEventID] != tt.wantEvent || d[DetailPriorUnknown] != "" {
					t.Fatalf("artifact %s: prior %q from %q (unknown %q); want %q from %q", a.EventID, d[DetailPriorTrust], d[DetailPriorEventID],
						d[DetailPriorUnknown], tt.want, tt.wantEvent)
				}
				if (d[DetailPriorOutside] == "true") != tt.outside {
					t.Fatalf("artifact %s: prior trusts outside = %q, want %t", a.EventID, d[DetailPriorOutside], tt.outside)
				}
				if _, err := time.Parse(time.RFC3339, d[DetailPriorEventTime]); err != nil {
					t.Fatalf("artifact %s: prior event time %q: %v", a.EventID, d[DetailPriorEventTime], err)
				}
			}
		})
	}
}

// The collector keeps a trust change from before the window, by anyone,
// for the earlier document, and does not count it as the chain's event.
func TestCollectorKeepsEarlierTrust(t *testing.T) {
	attacker := iamUserIdentity(exampleAccount, "ci-deployer", exampleKey)
	admin := iamUserIdentity(exampleAccount, "Alice", adminKey)
	col := &Collector{Start: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)}
	for _, r := range records(t, []event{
		createRole(admin, exampleAccount, "ops", opsTrust, "e-create", "2024-01-10T09:00:00Z"),
		updateTrust(attacker, exampleAccount, "ops", attackTrust, "e-attack", "2024-05-01T10:15:00Z"),
		// After the window: neither an event nor the earlier document.
		updateTrust(admin, exampleAccount, "ops", ec2Trust, "e-after", "2024-05-03T10:15:00Z"),
	}) {
		col.Add(r)
	}
	s := col.Scope(exampleKey, nil)
	if s.EventCount != 1 || len(s.Artifacts) != 1 {
		t.Fatalf("scope has %d events and artifacts %+v; want the attacker's change only", s.EventCount, s.Artifacts)
	}
	if got := s.Artifacts[0].Detail[DetailPriorTrust]; got != opsTrust {
		t.Fatalf("earlier document %q, want the CreateRole's from before the window", got)
	}
}
