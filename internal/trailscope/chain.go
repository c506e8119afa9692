package trailscope

import (
	"regexp"
	"slices"
	"strings"
)

// Credential is the followed credential or a session minted from it.
type Credential struct {
	// AccessKeyID is the credential's key (AKIA… or ASIA…).
	AccessKeyID string `json:"access_key_id"`
	// Parent is the key that minted it; empty for the followed key.
	Parent string `json:"parent,omitempty"`
	// Via is the call that minted it: GetSessionToken, AssumeRole or
	// GetFederationToken; empty for the followed key.
	Via string `json:"via,omitempty"`
	// Depth is how many mints lie between it and the followed key.
	Depth int `json:"depth"`
	// Account is the account the credential acts in.
	Account string `json:"account,omitempty"`
	// ARN is the identity the credential acts as: the assumed-role or
	// federated-user ARN of a session.
	ARN string `json:"arn,omitempty"`
	// RoleARN and SessionName are an AssumeRole's role and session name.
	RoleARN     string `json:"role_arn,omitempty"`
	SessionName string `json:"session_name,omitempty"`
	// MintEventID is the minting event in the caller's account;
	// SharedEventID ties it to the role account's copy of a cross-account
	// AssumeRole, and TargetEventID is that copy's id once found.
	MintEventID   string `json:"mint_event_id,omitempty"`
	SharedEventID string `json:"shared_event_id,omitempty"`
	TargetEventID string `json:"target_event_id,omitempty"`
	// CrossAccount is set when an AssumeRole entered another account.
	CrossAccount bool `json:"cross_account,omitempty"`
	// Inferred is set when the mint's caller-side copy was not among the
	// records and the role account's copy was tied to the parent by its
	// principal id alone. Every key of one IAM user, and every session of
	// one role with one session name, shares a principal id, so an
	// inferred session is a lead to confirm, not a fact.
	Inferred bool `json:"inferred,omitempty"`
}

// Chain is the followed key and every session minted from it, directly
// or through other sessions.
type Chain struct {
	// Seed is the followed key.
	Seed string `json:"seed"`
	// Credentials holds the seed first, then the sessions in the order
	// they were found (a breadth-first walk).
	Credentials []*Credential `json:"credentials"`
	byKey       map[string]*Credential
}

// Credential returns the chain's credential with the key, or nil.
func (c *Chain) Credential(key string) *Credential {
	if c.byKey == nil {
		// A chain decoded from JSON has no index.
		for _, cr := range c.Credentials {
			if cr.AccessKeyID == key {
				return cr
			}
		}
	}
	return c.byKey[key]
}

// Keys returns every key of the chain, the seed first.
func (c *Chain) Keys() []string {
	out := make([]string, 0, len(c.Credentials))
	for _, cr := range c.Credentials {
		out = append(out, cr.AccessKeyID)
	}
	return out
}

// mintCalls are the STS calls whose responseElements carry a new key.
var mintCalls = map[string]bool{"AssumeRole": true, "GetSessionToken": true, "GetFederationToken": true}

var sessionARN = regexp.MustCompile(`^arn:aws[\w-]*:sts::(\d{12}):(assumed-role|federated-user)/`)

// IsMint reports whether the record minted a credential.
func IsMint(r *Record) bool {
	return r.EventSource == "sts.amazonaws.com" && mintCalls[r.EventName] && !r.Failed()
}

// Follow walks the records from the seed key: every successful mint made
// with a key of the chain adds the key it returned, until no new key
// appears. A session counts only when its minting event names it in
// responseElements.credentials.accessKeyId; a cross-account AssumeRole is
// matched with the role account's copy by sharedEventID (and, failing
// that, by the role session), so the chain stays whole when only one side
// of the mint was read.
func Follow(seed string, records []*Record) *Chain {
	ch := &Chain{Seed: seed, byKey: map[string]*Credential{}}
	root := &Credential{AccessKeyID: seed}
	ch.Credentials = append(ch.Credentials, root)
	ch.byKey[seed] = root

	// Index the mints by the key that made them, and the role-account
	// copies (no accessKeyId: the caller is another account) by shared id
	// and by the new key.
	byCaller := map[string][]*Record{}
	targetByShared := map[string]*Record{}
	targetByKey := map[string]*Record{}
	// principals maps a key to the principal id its events show, and
	// targetByPrincipal holds role-account copies by the caller's
	// principal id, so a mint whose caller-side copy was never read is
	// still found from the role account's side.
	principals := map[string]Identity{}
	targetByPrincipal := map[string][]*Record{}
	for _, r := range records {
		if k := r.UserIdentity.AccessKeyID; k != "" && r.UserIdentity.PrincipalID != "" && principals[k].PrincipalID == "" {
			principals[k] = r.UserIdentity
		}
		if !IsMint(r) {
			continue
		}
		if r.UserIdentity.Type == "AWSAccount" && r.UserIdentity.PrincipalID != "" {
			targetByPrincipal[r.UserIdentity.PrincipalID] = append(targetByPrincipal[r.UserIdentity.PrincipalID], r)
		}
		if k := r.UserIdentity.AccessKeyID; k != "" {
			byCaller[k] = append(byCaller[k], r)
		}
		if r.UserIdentity.Type == "AWSAccount" {
			if r.SharedEventID != "" {
				targetByShared[r.SharedEventID] = r
			}
			if k := str(r.response(), "credentials", "accessKeyId"); k != "" {
				targetByKey[k] = r
			}
		}
	}
	for _, rs := range byCaller {
		slices.SortStableFunc(rs, func(a, b *Record) int { return a.EventTime.Compare(b.EventTime) })
	}
	if id, ok := principals[seed]; ok {
		root.Account, root.ARN = id.AccountID, id.ARN
	}
	queue := []*Credential{root}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		mints := byCaller[parent.AccessKeyID]
		inferred := map[*Record]bool{}
		if id := principals[parent.AccessKeyID]; id.PrincipalID != "" {
			for _, t := range targetByPrincipal[id.PrincipalID] {
				if t.UserIdentity.AccountID == id.AccountID {
					mints = append(mints, t)
					inferred[t] = true
				}
			}
		}
		for _, r := range mints {
			resp := r.response()
			key := str(resp, "credentials", "accessKeyId")
			if key == "" || ch.byKey[key] != nil {
				continue
			}
			cr := &Credential{AccessKeyID: key, Parent: parent.AccessKeyID, Via: r.EventName, Depth: parent.Depth + 1,
				Account: r.UserIdentity.AccountID, MintEventID: r.EventID, SharedEventID: r.SharedEventID, Inferred: inferred[r]}
			switch r.EventName {
			case "AssumeRole":
				p := r.params()
				cr.RoleARN, cr.SessionName = str(p, "roleArn"), str(p, "roleSessionName")
				cr.ARN = str(resp, "assumedRoleUser", "arn")
				if m := sessionARN.FindStringSubmatch(cr.ARN); m != nil {
					cr.Account = m[1]
				} else if m := accountInARN.FindStringSubmatch(cr.RoleARN); m != nil {
					cr.Account = m[1]
				}
				cr.CrossAccount = cr.Account != r.UserIdentity.AccountID
				if t := targetByShared[r.SharedEventID]; r.SharedEventID != "" && t != nil {
					cr.TargetEventID = t.EventID
				} else if t := targetByKey[key]; t != nil && sameSession(t, cr) {
					cr.TargetEventID = t.EventID
					cr.SharedEventID = t.SharedEventID
				}
			case "GetFederationToken":
				cr.ARN = str(resp, "federatedUser", "arn")
			case "GetSessionToken":
				// The session acts as the user that minted it.
				cr.ARN = r.UserIdentity.ARN
			}
			ch.byKey[key] = cr
			ch.Credentials = append(ch.Credentials, cr)
			queue = append(queue, cr)
		}
	}
	return ch
}

// sameSession reports whether a role-account copy of AssumeRole names the
// same role session as the caller's copy.
func sameSession(t *Record, cr *Credential) bool {
	p := t.params()
	return str(p, "roleArn") == cr.RoleARN && str(p, "roleSessionName") == cr.SessionName
}

// Owns reports which chain credential made the record, if any. A record
// made with a session key counts only when its identity agrees with the
// session the mint created (the same assumed-role or federated-user ARN),
// so a key id reused in a forged record cannot pull in another identity.
func (c *Chain) Owns(r *Record) (*Credential, bool) {
	cr := c.byKey[r.UserIdentity.AccessKeyID]
	if cr == nil {
		// The role account's copy of a chain mint has no key; it belongs
		// to the credential that made the mint.
		if r.UserIdentity.Type == "AWSAccount" && IsMint(r) {
			if s := c.byKey[str(r.response(), "credentials", "accessKeyId")]; s != nil && c.byKey[s.Parent] != nil {
				return c.byKey[s.Parent], true
			}
		}
		return nil, false
	}
	if cr.Parent != "" && cr.ARN != "" && r.UserIdentity.ARN != "" && cr.Via != "GetSessionToken" &&
		!strings.EqualFold(r.UserIdentity.ARN, cr.ARN) {
		return nil, false
	}
	return cr, true
}
