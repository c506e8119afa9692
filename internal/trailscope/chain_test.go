package trailscope

import (
	"fmt"
	"slices"
	"testing"
)

const (
	thirdAccount = "222233334444"
	sessionKey1  = "ASIAQRSTUVWXYZSESSN1" // GetSessionToken from the leaked key
	hopKey1      = "ASIAQRSTUVWXYZHOPKY1" // AssumeRole into otherAccount
	hopKey2      = "ASIAQRSTUVWXYZHOPKY2" // AssumeRole from there into thirdAccount
	fedKey       = "ASIAQRSTUVWXYZFEDKEY" // GetFederationToken
	strangerKey  = "ASIAQRSTUVWXYZSTRNGR" // someone else's session of the same role
)

// assumeRole renders both copies of an AssumeRole as CloudTrail writes
// them: the caller's, with its identity, and the role account's, with
// "AWSAccount" as identity and the same sharedEventID.
func assumeRole(callerIdentity, callerAccount, principalID, roleAccount, role, session, newKey, shared, at string) (caller, owner event) {
	params := fmt.Sprintf(`{"roleArn":"arn:aws:iam::%s:role/%s","roleSessionName":%q,"durationSeconds":3600}`, roleAccount, role, session)
	resp := fmt.Sprintf(`{"credentials":{"accessKeyId":%q,"sessionToken":"IQoJb3JpZ2luX2VjEXAMPLE","expiration":"May 1, 2024, 11:15:00 AM"},`+
		`"assumedRoleUser":{"assumedRoleId":"AROAIDPPEZS35WEXAMPLE:%s","arn":"arn:aws:sts::%s:assumed-role/%s/%s"}}`, newKey, session, roleAccount, role, session)
	caller = event{identity: callerIdentity, source: "sts", name: "AssumeRole", account: callerAccount, params: params, response: resp,
		shared: shared, id: "caller-" + shared, at: at}
	owner = event{identity: fmt.Sprintf(`{"type":"AWSAccount","principalId":%q,"accountId":%q}`, principalID, callerAccount),
		source: "sts", name: "AssumeRole", account: roleAccount, params: params, response: resp, shared: shared, id: "owner-" + shared, at: at}
	return caller, owner
}

// attack is a leaked key's activity: a session token, a federation token,
// and a role chain two hops deep across three accounts, plus noise.
func attack() []event {
	leaked := iamUserIdentity(exampleAccount, "ci-deployer", exampleKey)
	hop1, hop1Owner := assumeRole(leaked, exampleAccount, "AIDACKCEVSQ6C2EXAMPLE", otherAccount, "ops", "maintenance", hopKey1, "shared-1", "2024-05-01T10:05:00Z")
	hop1Identity := roleIdentity(otherAccount, "ops", "maintenance", hopKey1)
	hop2, hop2Owner := assumeRole(hop1Identity, otherAccount, "AROAIDPPEZS35WEXAMPLE:maintenance", thirdAccount, "deep", "pivot", hopKey2, "shared-2", "2024-05-01T10:06:00Z")
	hop2Identity := roleIdentity(thirdAccount, "deep", "pivot", hopKey2)
	stranger := roleIdentity(otherAccount, "ops", "nightly", strangerKey)
	return []event{
		{identity: leaked, source: "sts", name: "GetCallerIdentity", readOnly: true, id: "e-whoami", at: "2024-05-01T10:00:00Z"},
		{identity: leaked, source: "sts", name: "GetSessionToken", readOnly: true, id: "e-gst", at: "2024-05-01T10:01:00Z",
			params:   `{"durationSeconds":43200}`,
			response: fmt.Sprintf(`{"credentials":{"accessKeyId":%q,"sessionToken":"<redacted>","expiration":"May 1, 2024, 10:01:00 PM"}}`, sessionKey1)},
		{identity: leaked, source: "sts", name: "GetFederationToken", id: "e-gft", at: "2024-05-01T10:02:00Z",
			params: `{"name":"Bob","durationSeconds":3600}`,
			response: fmt.Sprintf(`{"credentials":{"accessKeyId":%q,"sessionToken":"<redacted>","expiration":"May 1, 2024, 11:02:00 AM"},`+
				`"federatedUser":{"federatedUserId":"444455556666:Bob","arn":"arn:aws:sts::444455556666:federated-user/Bob"},"packedPolicySize":6}`, fedKey)},
		hop1, hop1Owner, hop2, hop2Owner,
		{identity: fmt.Sprintf(`{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::444455556666:user/ci-deployer","accountId":"444455556666","accessKeyId":%q,"userName":"ci-deployer","sessionContext":{"attributes":{"creationDate":"2024-05-01T10:01:00Z","mfaAuthenticated":"false"}}}`, sessionKey1),
			source: "ec2", name: "DescribeInstances", readOnly: true, id: "e-gst-use", at: "2024-05-01T10:03:00Z"},
		{identity: fmt.Sprintf(`{"type":"FederatedUser","principalId":"444455556666:Bob","arn":"arn:aws:sts::444455556666:federated-user/Bob","accountId":"444455556666","accessKeyId":%q,"sessionContext":{"sessionIssuer":{"type":"IAMUser","principalId":"AIDACKCEVSQ6C2EXAMPLE","arn":"arn:aws:iam::444455556666:user/ci-deployer","accountId":"444455556666","userName":"ci-deployer"},"attributes":{"creationDate":"2024-05-01T10:02:00Z","mfaAuthenticated":"false"}}}`, fedKey),
			source: "s3", name: "ListBuckets", readOnly: true, id: "e-fed-use", at: "2024-05-01T10:04:00Z"},
		{identity: hop1Identity, source: "iam", name: "CreateAccessKey", account: otherAccount, id: "e-hop1-key", at: "2024-05-01T10:05:30Z",
			params: `{"userName":"svc-backup"}`, response: `{"accessKey":{"accessKeyId":"AKIABACKDOOREXAMPLE1","status":"Active","userName":"svc-backup"}}`},
		{identity: hop2Identity, source: "ec2", name: "AuthorizeSecurityGroupIngress", account: thirdAccount, region: "eu-west-1", id: "e-hop2-sg", at: "2024-05-01T10:07:00Z",
			params: `{"groupId":"sg-0123456789abcdef0","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]}}]}}`},
		// Noise: another session of the same role, and a forged record
		// that borrows a chain key under another identity.
		{identity: stranger, source: "iam", name: "CreateUser", account: otherAccount, id: "e-stranger", at: "2024-05-01T10:08:00Z", params: `{"userName":"legit"}`},
		{identity: roleIdentity(otherAccount, "admin", "someone", hopKey1), source: "iam", name: "DeleteUser", account: otherAccount, id: "e-forged", at: "2024-05-01T10:09:00Z", params: `{"userName":"x"}`},
	}
}

func records(t testing.TB, evs []event) []*Record {
	var out []*Record
	for _, e := range evs {
		out = append(out, e.record(t))
	}
	return out
}

func TestFollowTwoHopRoleChain(t *testing.T) {
	recs := records(t, attack())
	// Shuffle: log files arrive in no order.
	slices.Reverse(recs)
	ch := Follow(exampleKey, recs)
	want := map[string]struct {
		parent, via, account string
		depth                int
		cross                bool
		target               string
	}{
		exampleKey:  {"", "", exampleAccount, 0, false, ""},
		sessionKey1: {exampleKey, "GetSessionToken", exampleAccount, 1, false, ""},
		fedKey:      {exampleKey, "GetFederationToken", exampleAccount, 1, false, ""},
		hopKey1:     {exampleKey, "AssumeRole", otherAccount, 1, true, "owner-shared-1"},
		hopKey2:     {hopKey1, "AssumeRole", thirdAccount, 2, true, "owner-shared-2"},
	}
	if len(ch.Credentials) != len(want) {
		t.Fatalf("chain keys %v, want %d", ch.Keys(), len(want))
	}
	for key, w := range want {
		c := ch.Credential(key)
		if c == nil {
			t.Fatalf("key %s not followed", key)
		}
		if c.Parent != w.parent || c.Via != w.via || c.Account != w.account || c.Depth != w.depth || c.CrossAccount != w.cross || c.TargetEventID != w.target || c.Inferred {
			t.Fatalf("credential %s: %+v, want %+v", key, c, w)
		}
	}
	if c := ch.Credential(hopKey2); c.RoleARN != "arn:aws:iam::"+thirdAccount+":role/deep" || c.SessionName != "pivot" ||
		c.ARN != "arn:aws:sts::"+thirdAccount+":assumed-role/deep/pivot" || c.SharedEventID != "shared-2" {
		t.Fatalf("second hop %+v", c)
	}
	if ch.Credential(strangerKey) != nil {
		t.Fatal("another session of the same role joined the chain")
	}
}

func TestFollowFromTheRoleAccountSide(t *testing.T) {
	// Only the role account's copy of the second hop was read (the middle
	// account's trail was not): the session is still found, marked
	// inferred, through the caller's principal id.
	var evs []event
	for _, e := range attack() {
		if e.id != "caller-shared-2" {
			evs = append(evs, e)
		}
	}
	ch := Follow(exampleKey, records(t, evs))
	c := ch.Credential(hopKey2)
	if c == nil || !c.Inferred || c.Parent != hopKey1 || c.Account != thirdAccount || c.TargetEventID != "owner-shared-2" {
		t.Fatalf("second hop from the role account's side: %+v", c)
	}
}

func TestBuildScope(t *testing.T) {
	recs := records(t, attack())
	// The same events read twice (LookupEvents and the trail) count once.
	recs = append(recs, records(t, attack())...)
	s := Build(exampleKey, recs, &Classifier{OrgAccounts: map[string]bool{exampleAccount: true, otherAccount: true, thirdAccount: true}})
	var ids []string
	for _, ev := range s.Events {
		ids = append(ids, ev.Record.EventID)
	}
	wantIDs := []string{"e-whoami", "e-gst", "e-gft", "e-gst-use", "e-fed-use", "caller-shared-1", "owner-shared-1", "e-hop1-key", "caller-shared-2", "owner-shared-2", "e-hop2-sg"}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("matched events %v, want %v", ids, wantIDs)
	}
	if got := s.Accounts(); !slices.Equal(got, []string{otherAccount, thirdAccount, exampleAccount}) {
		t.Fatalf("accounts %v", got)
	}
	if s.ByClass[Persistence] != 1 || s.ByClass[Exposure] != 1 || s.ByClass[Session] != 6 || s.ByClass[Reconnaissance] != 3 {
		t.Fatalf("by class %v", s.ByClass)
	}
	if len(s.Artifacts) != 2 || s.Artifacts[0].Kind != KindAccessKey || s.Artifacts[0].Account != otherAccount ||
		s.Artifacts[1].Kind != KindIngressRule || s.Artifacts[1].Account != thirdAccount || s.Artifacts[1].Region != "eu-west-1" {
		t.Fatalf("artifacts %+v", s.Artifacts)
	}
	var sg *Place
	for _, p := range s.Places {
		if p.Account == thirdAccount && p.Region == "eu-west-1" {
			sg = p
		}
	}
	if sg == nil || sg.Events != 1 || sg.SourceIPs["203.0.113.12"] != 1 || sg.First.IsZero() || sg.Last.Before(sg.First) {
		t.Fatalf("place %+v", sg)
	}
}

func TestCollectorMatchesBuild(t *testing.T) {
	recs := records(t, attack())
	want := Build(exampleKey, recs, nil)
	c := &Collector{}
	for _, r := range recs {
		c.Add(r)
	}
	got := c.Scope(exampleKey, nil)
	if len(got.Events) != len(want.Events) || len(got.Chain.Credentials) != len(want.Chain.Credentials) || len(got.Artifacts) != len(want.Artifacts) {
		t.Fatalf("collector: %d events, %d keys, %d artifacts; build: %d, %d, %d", len(got.Events), len(got.Chain.Credentials), len(got.Artifacts),
			len(want.Events), len(want.Chain.Credentials), len(want.Artifacts))
	}
	if c.Records() != len(recs) {
		t.Fatalf("records %d, want %d", c.Records(), len(recs))
	}
}
