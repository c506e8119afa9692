package awsemu

import (
	"crypto/subtle"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// principalKind says who an access key speaks for.
type principalKind int

const (
	principalUser principalKind = iota
	principalRoot
	principalSession
)

// accessKey is an IAM user's long-term key. Its status and last-use record
// have their own lock so authentication never waits on the account's.
type accessKey struct {
	id      string
	secret  string
	account string
	user    string
	created time.Time

	mu          sync.Mutex
	status      string // Active, Inactive
	lastUsed    time.Time
	lastService string
	lastRegion  string
}

func (k *accessKey) active() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.status == "Active"
}

func (k *accessKey) setStatus(s string) {
	k.mu.Lock()
	k.status = s
	k.mu.Unlock()
}

func (k *accessKey) markUsed(at time.Time, service, region string) {
	k.mu.Lock()
	k.lastUsed, k.lastService, k.lastRegion = at, service, region
	k.mu.Unlock()
}

// session is the state behind temporary credentials from AssumeRole.
type session struct {
	roleName          string
	rolePath          string
	roleID            string
	name              string
	issued            time.Time
	expires           time.Time
	sourceIdentity    string
	tags              map[string]string
	transitive        []string
	chained           bool
	sourceInstanceARN string
	policy            *policyDocument
	policyARNs        []string
	// issuer names the principal that called AssumeRole, for CloudTrail.
	issuer string
}

// credential is what an access key id resolves to.
type credential struct {
	id      string
	secret  string
	token   string
	account string
	kind    principalKind
	key     *accessKey // principalUser with a long-term key
	user    string     // principalUser
	session *session   // principalSession
	// userSession is set for an IAM user's temporary credentials from
	// sts:GetSessionToken (kind principalUser, key nil).
	userSession *userSession
}

// userSession is the state behind an IAM user's temporary credentials from
// sts:GetSessionToken. They act as the user, with the user's policies, and
// carry aws:TokenIssueTime. Deactivating or deleting the access key that
// minted them does not end them: a deny policy on the user conditioned on
// aws:TokenIssueTime does.
type userSession struct {
	issued  time.Time
	expires time.Time
}

// principal is the authenticated caller of one request.
type principal struct {
	cred    *credential
	account string
	kind    principalKind
	// arn is the caller's ARN as GetCallerIdentity reports it.
	arn string
	// principalARN is aws:PrincipalArn: for a session, its role's ARN.
	principalARN string
	// userID is GetCallerIdentity's UserId.
	userID string
	// name is the user name, or the session name, as CloudTrail shows it.
	name string
}

func userARN(account, path, name string) string {
	return "arn:aws:iam::" + account + ":user" + path + name
}

func roleARN(account, path, name string) string {
	return "arn:aws:iam::" + account + ":role" + path + name
}

func sessionARN(account, role, name string) string {
	return "arn:aws:sts::" + account + ":assumed-role/" + role + "/" + name
}

// principalFor describes the owner of a credential. The account lock is not
// needed: everything read here is fixed when the credential is made, except
// the user's path and id, which the caller passes in.
func principalFor(c *credential, userPath, userID string) *principal {
	p := &principal{cred: c, account: c.account, kind: c.kind}
	switch c.kind {
	case principalRoot:
		p.arn = "arn:aws:iam::" + c.account + ":root"
		p.principalARN = p.arn
		p.userID = c.account
		p.name = "root"
	case principalUser:
		p.arn = userARN(c.account, userPath, c.user)
		p.principalARN = p.arn
		p.userID = userID
		p.name = c.user
	case principalSession:
		s := c.session
		p.arn = sessionARN(c.account, s.roleName, s.name)
		p.principalARN = roleARN(c.account, s.rolePath, s.roleName)
		p.userID = s.roleID + ":" + s.name
		p.name = s.name
	}
	return p
}

// caller returns the identity Principal elements are matched against.
func (p *principal) caller() *callerIdentity {
	ids := []string{p.arn}
	if p.principalARN != p.arn {
		ids = append(ids, p.principalARN)
	}
	return &callerIdentity{Account: p.account, ARNs: ids}
}

// authFailure is why a credential was refused; the service turns it into its
// own error.
type authFailure int

const (
	authOK authFailure = iota
	authUnknownKey
	authBadSignature
	authExpired
	authSkewed
)

// authenticate verifies the request's signature and resolves its principal.
// It returns the decoded payload on success.
//
// Security-critical: every refusal here is an explicit deny.
func (e *Emulator) authenticate(r *http.Request, sig *signature, body []byte, s3Style bool) (*principal, *signedPayload, authFailure, string) {
	now := time.Now()
	if e.cfg.MaxClockSkew > 0 && !sig.Presigned {
		if d := now.Sub(sig.Time); d > e.cfg.MaxClockSkew || d < -e.cfg.MaxClockSkew {
			return nil, nil, authSkewed, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
				sig.Time.Format(sigTimeFormat), now.Add(-e.cfg.MaxClockSkew).UTC().Format(sigTimeFormat), now.UTC().Format(sigTimeFormat), e.cfg.MaxClockSkew)
		}
	}
	if sig.Presigned && now.After(sig.Time.Add(sig.Expires)) {
		return nil, nil, authExpired, "Request has expired"
	}

	e.credMu.RLock()
	cred := e.creds[sig.AccessKeyID]
	e.credMu.RUnlock()
	if cred == nil {
		return nil, nil, authUnknownKey, ""
	}
	if cred.kind == principalUser && cred.key != nil && !cred.key.active() {
		return nil, nil, authUnknownKey, ""
	}
	if cred.kind == principalSession || cred.userSession != nil {
		// Security-critical: a session key is only valid with its own token.
		if subtle.ConstantTimeCompare([]byte(sig.SecurityToken), []byte(cred.token)) != 1 {
			return nil, nil, authUnknownKey, ""
		}
	} else if sig.SecurityToken != "" {
		return nil, nil, authUnknownKey, ""
	}
	payload, err := sig.verify(r, body, cred.secret, s3Style)
	if err != nil {
		return nil, nil, authBadSignature, err.Error()
	}
	if cred.kind == principalSession && !e.now().Before(cred.session.expires) {
		return nil, nil, authExpired, ""
	}
	if cred.userSession != nil && !e.now().Before(cred.userSession.expires) {
		return nil, nil, authExpired, ""
	}

	var path, uid string
	if cred.kind == principalUser {
		a := e.account(cred.account)
		if a == nil {
			return nil, nil, authUnknownKey, ""
		}
		a.mu.Lock()
		u := a.users[cred.user]
		if u != nil {
			path, uid = u.path, u.id
		}
		a.mu.Unlock()
		if u == nil {
			return nil, nil, authUnknownKey, ""
		}
	}
	return principalFor(cred, path, uid), payload, authOK, ""
}

// conditionKeys builds the global condition keys of a request.
func (e *Emulator) conditionKeys(c *call) map[string][]string {
	p := c.who
	keys := map[string][]string{
		"aws:currenttime":      {c.now.UTC().Format(time.RFC3339)},
		"aws:epochtime":        {fmt.Sprint(c.now.Unix())},
		"aws:principalarn":     {p.principalARN},
		"aws:principalaccount": {p.account},
		"aws:userid":           {p.userID},
		"aws:requestedregion":  {c.region},
		"aws:securetransport":  {fmt.Sprint(c.r.TLS != nil)},
	}
	if ip := clientIP(c.r); ip != "" {
		keys["aws:sourceip"] = []string{ip}
	}
	switch p.kind {
	case principalUser:
		keys["aws:principaltype"] = []string{"User"}
		keys["aws:username"] = []string{p.name}
		if s := p.cred.userSession; s != nil {
			keys["aws:tokenissuetime"] = []string{s.issued.UTC().Format(time.RFC3339)}
		}
	case principalRoot:
		keys["aws:principaltype"] = []string{"Account"}
	case principalSession:
		s := p.cred.session
		keys["aws:principaltype"] = []string{"AssumedRole"}
		keys["aws:tokenissuetime"] = []string{s.issued.UTC().Format(time.RFC3339)}
		if s.sourceIdentity != "" {
			keys["aws:sourceidentity"] = []string{s.sourceIdentity}
		}
		if s.sourceInstanceARN != "" {
			keys["ec2:sourceinstancearn"] = []string{s.sourceInstanceARN}
		}
	}
	for k, v := range c.principalTags {
		keys["aws:principaltag/"+strings.ToLower(k)] = []string{v}
	}
	return keys
}

// identityPolicies returns the policies that grant the principal its
// permissions: those of its user or role, and for a session the session
// policies that further limit it. The caller holds no lock.
func (e *Emulator) identityPolicies(p *principal) (identity, sessionPolicies []*policyDocument, principalTags map[string]string) {
	a := e.account(p.account)
	if a == nil {
		return nil, nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var inline map[string]*storedPolicy
	var attached []string
	switch p.kind {
	case principalUser:
		u := a.users[p.cred.user]
		if u == nil {
			return nil, nil, nil
		}
		inline, attached, principalTags = u.inline, u.attached, maps.Clone(u.tags)
	case principalSession:
		s := p.cred.session
		r := a.roles[s.roleName]
		// A deleted and recreated role does not revive old sessions.
		if r == nil || r.id != s.roleID {
			return nil, nil, nil
		}
		inline, attached = r.inline, r.attached
		principalTags = maps.Clone(r.tags)
		if principalTags == nil {
			principalTags = map[string]string{}
		}
		// Session tags override the role's tags with the same key.
		for k, v := range s.tags {
			for rk := range principalTags {
				if strings.EqualFold(rk, k) {
					delete(principalTags, rk)
				}
			}
			principalTags[k] = v
		}
		if s.policy != nil {
			sessionPolicies = append(sessionPolicies, s.policy)
		}
		for _, arn := range s.policyARNs {
			if mp := a.managedPolicy(arn); mp != nil {
				sessionPolicies = append(sessionPolicies, mp.doc.doc)
			}
		}
	default:
		return nil, nil, nil
	}
	for _, name := range slices.Sorted(maps.Keys(inline)) {
		identity = append(identity, inline[name].doc)
	}
	for _, arn := range attached {
		if mp := a.managedPolicy(arn); mp != nil {
			identity = append(identity, mp.doc.doc)
		}
	}
	return identity, sessionPolicies, principalTags
}

// managedPolicy finds a customer-managed policy of the account or an AWS
// managed one. The caller holds a.mu.
func (a *account) managedPolicy(arn string) *managedPolicy {
	if mp, ok := awsManagedPolicies[arn]; ok {
		return mp
	}
	return a.policies[arn]
}

// evaluateIdentity decides a request against identity and session policies:
// an explicit deny anywhere wins; otherwise the identity policies must allow,
// and so must every session policy when there are any.
func evaluateIdentity(identity, sessionPolicies []*policyDocument, rc *requestContext) decision {
	idAllowed := false
	for _, d := range identity {
		switch d.evaluate(rc).Decision {
		case explicitDeny:
			return explicitDeny
		case allowed:
			idAllowed = true
		}
	}
	sessionAllowed := len(sessionPolicies) == 0
	for _, d := range sessionPolicies {
		switch d.evaluate(rc).Decision {
		case explicitDeny:
			return explicitDeny
		case allowed:
			sessionAllowed = true
		}
	}
	if idAllowed && sessionAllowed {
		return allowed
	}
	return implicitDeny
}

// authorize checks that the caller may perform the call's action on each of
// the resources. The account root bypasses identity policies.
//
// Security-critical: the default is deny.
func (e *Emulator) authorize(c *call, action string, resources ...string) *apiError {
	if c.who.kind == principalRoot {
		return nil
	}
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	// Credentials from GetSessionToken without MFA may not call IAM, nor STS
	// beyond AssumeRole and GetCallerIdentity (which authorise themselves).
	if c.who.cred.userSession != nil && (c.svc.name == "iam" || c.svc.name == "sts") {
		return c.accessDenied(action, resources[0], "because no MFA was presented when the session token was issued")
	}
	e.ensurePolicies(c)
	keys := c.keys
	if c.op != nil && c.op.requestKeys != nil {
		keys = maps.Clone(c.keys)
		maps.Copy(keys, c.op.requestKeys(c))
	}
	for _, res := range resources {
		if ae := c.decide(action, res, keys); ae != nil {
			return ae
		}
	}
	return nil
}

// decide evaluates one action on one resource against the caller's
// policies, which ensurePolicies has loaded.
func (c *call) decide(action, resource string, keys map[string][]string) *apiError {
	rc := &requestContext{Action: action, Resource: resource, Keys: keys}
	switch evaluateIdentity(c.identity, c.sessionPolicies, rc) {
	case allowed:
		return nil
	case explicitDeny:
		return c.accessDenied(action, resource, "with an explicit deny in an identity-based policy")
	default:
		return c.accessDenied(action, resource, "because no identity-based policy allows the "+action+" action")
	}
}

// authorizePassRole checks iam:PassRole on a role that the call hands to
// a service, as AWS does when a call attaches a role to a resource (an
// instance profile to an instance): with iam:PassedToService and, when
// the role goes to one resource, iam:AssociatedResourceArn. The caller
// holds no account lock.
//
// Security-critical: without this check a caller allowed the service's
// call could hand any role (an administrator's) to a resource it controls.
func (e *Emulator) authorizePassRole(c *call, roleARN, service, resourceARN string) *apiError {
	if c.who.kind == principalRoot {
		return nil
	}
	e.ensurePolicies(c)
	keys := maps.Clone(c.keys)
	keys["iam:passedtoservice"] = []string{service}
	if resourceARN != "" {
		keys["iam:associatedresourcearn"] = []string{resourceARN}
	}
	return c.decide("iam:PassRole", roleARN, keys)
}

// accessDenied renders an authorisation refusal in the service's words.
func (c *call) accessDenied(action, resource, why string) *apiError {
	k := c.svc.errs
	msg := "User: " + c.who.arn + " is not authorized to perform: " + action
	if resource != "*" && resource != "" {
		msg += " on resource: " + resource
	}
	msg += " " + why
	if k.accessDeniedCode == "UnauthorizedOperation" {
		msg = "You are not authorized to perform this operation. " + msg
	}
	return &apiError{Code: k.accessDeniedCode, Status: k.accessDeniedStatus, Message: msg, QueryCode: "AccessDenied"}
}
