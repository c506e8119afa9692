package awsemu

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

func (e *Emulator) stsService() *service {
	s := &service{
		name:        "sts",
		eventSource: "sts.amazonaws.com",
		protocol:    protoQuery,
		xmlns:       "https://sts.amazonaws.com/doc/2011-06-15/",
		version:     "2011-06-15",
		errs:        queryErrors(),
	}
	ops := []*operation{
		// GetCallerIdentity needs no permission: a policy that denies it
		// explicitly still lets the caller learn who it is.
		{name: "GetCallerIdentity", readOnly: true, handle: (*Emulator).stsGetCallerIdentity},
		{name: "AssumeRole", action: "sts:AssumeRole", handle: (*Emulator).stsAssumeRole},
		{name: "GetAccessKeyInfo", action: "sts:GetAccessKeyInfo", readOnly: true, handle: (*Emulator).stsGetAccessKeyInfo},
		// GetSessionToken needs no permission either.
		{name: "GetSessionToken", readOnly: true, handle: (*Emulator).stsGetSessionToken},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		s.ops[op.name] = op
	}
	// AssumeRole authorises itself: the trust policy decides whether the
	// caller's identity policies must also allow it.
	s.ops["AssumeRole"].action = ""
	return s
}

func (e *Emulator) stsGetCallerIdentity(c *call) (any, error) {
	return &struct {
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
		Arn     string `xml:"Arn"`
	}{c.who.userID, c.who.account, c.who.arn}, nil
}

func (e *Emulator) stsGetAccessKeyInfo(c *call) (any, error) {
	id := c.form.str("AccessKeyId")
	e.credMu.RLock()
	cred := e.creds[id]
	e.credMu.RUnlock()
	if cred == nil {
		return nil, iamValidation("The access key ID %s is not valid.", id)
	}
	return &struct {
		Account string `xml:"Account"`
	}{cred.account}, nil
}

var (
	roleARNPattern     = regexp.MustCompile(`^arn:aws:iam::(\d{12}):role(/(?:[\x21-\x7e]*/)?)([\w+=,.@-]{1,64})$`)
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// Session limits.
const (
	minSessionSeconds  = 900
	maxSessionSeconds  = 43200
	chainedSessionMax  = 3600
	maxSessionTags     = 50
	maxPackedPolicyLen = 2048
)

// Credentials are temporary credentials the emulator issued.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expires         time.Time
}

// sessionRequest is what a new role session is made from.
type sessionRequest struct {
	role              *iamRole
	account           string
	name              string
	duration          time.Duration
	sourceIdentity    string
	tags              map[string]string
	transitive        []string
	chained           bool
	sourceInstanceARN string
	policy            *policyDocument
	policyARNs        []string
	issuer            string
}

// issueSession mints temporary credentials for a role session.
func (e *Emulator) issueSession(req sessionRequest, now time.Time) *credential {
	s := &session{
		roleName: req.role.name, rolePath: req.role.path, roleID: req.role.id, name: req.name,
		issued: now, expires: now.Add(req.duration), sourceIdentity: req.sourceIdentity, tags: req.tags,
		transitive: req.transitive, chained: req.chained, sourceInstanceARN: req.sourceInstanceARN,
		policy: req.policy, policyARNs: req.policyARNs, issuer: req.issuer,
	}
	cred := &credential{id: e.ids.accessKeyID("ASIA"), secret: e.ids.secret(), token: e.ids.sessionToken(),
		account: req.account, kind: principalSession, session: s}
	e.credMu.Lock()
	e.creds[cred.id] = cred
	e.credMu.Unlock()
	return cred
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

type assumeRoleResponse struct {
	Credentials     stsCredentials `xml:"Credentials"`
	AssumedRoleUser struct {
		AssumedRoleID string `xml:"AssumedRoleId"`
		Arn           string `xml:"Arn"`
	} `xml:"AssumedRoleUser"`
	PackedPolicySize *int   `xml:"PackedPolicySize,omitempty"`
	SourceIdentity   string `xml:"SourceIdentity,omitempty"`
}

func (e *Emulator) stsAssumeRole(c *call) (any, error) {
	p := c.form
	arn, name := p.str("RoleArn"), p.str("RoleSessionName")
	m := roleARNPattern.FindStringSubmatch(arn)
	if m == nil {
		return nil, iamValidation("%s is invalid", arn)
	}
	if !sessionNamePattern.MatchString(name) {
		return nil, iamValidation("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", name)
	}
	duration := int64(3600)
	if n, ok, err := p.integer("DurationSeconds"); err != nil {
		return nil, iamValidation("%v", err)
	} else if ok {
		if n < minSessionSeconds || n > maxSessionSeconds {
			return nil, iamValidation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value between %d and %d", n, minSessionSeconds, maxSessionSeconds)
		}
		duration = n
	}
	if c.who.kind == principalRoot {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Roles may not be assumed by root accounts.")
	}
	var caller *session
	if c.who.kind == principalSession {
		caller = c.who.cred.session
	}
	if caller != nil && duration > chainedSessionMax {
		return nil, iamValidation("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}

	sessionTags := map[string]string{}
	var transitive []string
	if caller != nil {
		// Transitive tags travel down a role chain and cannot be replaced.
		for _, k := range caller.transitive {
			if v, ok := caller.tags[k]; ok {
				sessionTags[k] = v
				transitive = append(transitive, k)
			}
		}
	}
	var newTagKeys []string
	for _, t := range p.list("Tags") {
		k, v := t.str("Key"), t.str("Value")
		if k == "" || len(k) > 128 || len(v) > 256 {
			return nil, iamValidation("1 validation error detected: Value at 'tags' failed to satisfy constraint: tag keys must be 1 to 128 characters and values at most 256")
		}
		for ek := range sessionTags {
			if strings.EqualFold(ek, k) {
				return nil, iamValidation("One or more of the specified session tags conflict with transitive tags: %s", k)
			}
		}
		sessionTags[k] = v
		newTagKeys = append(newTagKeys, k)
	}
	if len(sessionTags) > maxSessionTags {
		return nil, errorf(http.StatusBadRequest, "PackedPolicyTooLarge", "Packed policy consumes more than the allowed 100%% of the session's policy size limit.")
	}
	for _, k := range p.strings("TransitiveTagKeys") {
		if !slices.Contains(newTagKeys, k) {
			return nil, iamValidation("The specified transitive tag key must be included in the requested tags.")
		}
		transitive = append(transitive, k)
	}
	sourceIdentity := p.str("SourceIdentity")
	if caller != nil && caller.sourceIdentity != "" {
		if sourceIdentity != "" && sourceIdentity != caller.sourceIdentity {
			return nil, iamValidation("Source identity cannot be changed once it is set on a role session.")
		}
		sourceIdentity = caller.sourceIdentity
	}
	var sessionPolicy *policyDocument
	packed := 0
	if doc := p.str("Policy"); doc != "" {
		var err error
		if sessionPolicy, err = parsePolicy(doc, identityPolicy); err != nil {
			return nil, errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", err.Error())
		}
		if policySize(doc) > maxPackedPolicyLen {
			return nil, errorf(http.StatusBadRequest, "PackedPolicyTooLarge", "Packed policy consumes %d%% of allotted space, please use smaller policy.", policySize(doc)*100/maxPackedPolicyLen)
		}
		packed = policySize(doc) * 100 / maxPackedPolicyLen
	}
	var policyARNs []string
	for _, pa := range p.list("PolicyArns") {
		policyARNs = append(policyARNs, pa.str("arn"))
	}

	targetAccount, roleName := m[1], m[3]
	denied := func(action string) *apiError {
		return errorf(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: %s on resource: %s", c.who.arn, action, arn)
	}
	target := e.account(targetAccount)
	if target == nil || target.status == "SUSPENDED" {
		return nil, denied("sts:AssumeRole")
	}
	target.mu.Lock()
	role := target.roles[roleName]
	var roleCopy iamRole
	var trust *policyDocument
	if role != nil && role.path == m[2] {
		roleCopy = *role
		trust = role.trust.doc
	}
	target.mu.Unlock()
	if trust == nil {
		// A missing role looks exactly like a refusal, so the API does not
		// reveal which roles exist.
		return nil, denied("sts:AssumeRole")
	}
	if int64(roleCopy.maxSession) < duration {
		return nil, iamValidation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}

	// Security-critical: the trust policy must allow the caller, and unless
	// it names the caller within the role's own account, so must the
	// caller's identity policies.
	e.ensurePolicies(c)
	keys := make(map[string][]string, len(c.keys)+8)
	for k, v := range c.keys {
		keys[k] = v
	}
	if v := p.str("ExternalId"); v != "" {
		keys["sts:externalid"] = []string{v}
	}
	keys["sts:rolesessionname"] = []string{name}
	if sourceIdentity != "" {
		keys["sts:sourceidentity"] = []string{sourceIdentity}
	}
	var tagKeys []string
	for _, k := range newTagKeys {
		keys["aws:requesttag/"+strings.ToLower(k)] = []string{sessionTags[k]}
		tagKeys = append(tagKeys, k)
	}
	if len(tagKeys) > 0 {
		keys["aws:tagkeys"] = tagKeys
	}
	if len(transitive) > 0 {
		keys["sts:transitivetagkeys"] = transitive
	}
	check := func(action string) *apiError {
		rc := &requestContext{Action: action, Resource: arn, Keys: keys, Caller: c.who.caller()}
		ev := trust.evaluate(rc)
		if ev.Decision != allowed {
			return denied(action)
		}
		if ev.NamedPrincipal && targetAccount == c.who.account {
			if evaluateIdentity(c.identity, c.sessionPolicies, rc) == explicitDeny {
				return denied(action)
			}
			return nil
		}
		if evaluateIdentity(c.identity, c.sessionPolicies, rc) != allowed {
			return denied(action)
		}
		return nil
	}
	if ae := check("sts:AssumeRole"); ae != nil {
		return nil, ae
	}
	if len(newTagKeys) > 0 {
		if ae := check("sts:TagSession"); ae != nil {
			return nil, ae
		}
	}
	if p.str("SourceIdentity") != "" {
		if ae := check("sts:SetSourceIdentity"); ae != nil {
			return nil, ae
		}
	}

	cred := e.issueSession(sessionRequest{
		role: &roleCopy, account: targetAccount, name: name, duration: time.Duration(duration) * time.Second,
		sourceIdentity: sourceIdentity, tags: sessionTags, transitive: transitive, chained: caller != nil,
		policy: sessionPolicy, policyARNs: policyARNs, issuer: c.who.arn,
	}, c.now)
	target.mu.Lock()
	if r := target.roles[roleName]; r != nil {
		r.lastUsed, r.lastRegion = c.now, c.region
	}
	target.mu.Unlock()

	out := &assumeRoleResponse{Credentials: stsCredentials{cred.id, cred.secret, cred.token, xmlTime(cred.session.expires)}, SourceIdentity: sourceIdentity}
	out.AssumedRoleUser.AssumedRoleID = roleCopy.id + ":" + name
	out.AssumedRoleUser.Arn = sessionARN(targetAccount, roleName, name)
	if len(sessionTags) > 0 || sessionPolicy != nil {
		n := packed + len(sessionTags)*2
		out.PackedPolicySize = &n
	}
	c.trail.resources = append(c.trail.resources, trailResource{"AWS::IAM::Role", arn})
	c.trail.response = map[string]any{
		"credentials":     map[string]string{"accessKeyId": cred.id, "expiration": cred.session.expires.Format(time.RFC1123)},
		"assumedRoleUser": map[string]string{"assumedRoleId": out.AssumedRoleUser.AssumedRoleID, "arn": out.AssumedRoleUser.Arn},
	}
	if targetAccount != c.who.account {
		c.trail.alsoIn = append(c.trail.alsoIn, targetAccount)
	}
	return out, nil
}

// ensurePolicies loads the caller's policies and condition keys once.
func (e *Emulator) ensurePolicies(c *call) {
	if c.policiesLoaded {
		return
	}
	c.identity, c.sessionPolicies, c.principalTags = e.identityPolicies(c.who)
	c.policiesLoaded = true
	c.keys = e.conditionKeys(c)
}

// IssueInstanceCredentials returns the credentials EC2 would give an
// instance through its metadata service: a session of the role in the
// instance's associated profile, carrying ec2:SourceInstanceARN.
func (e *Emulator) IssueInstanceCredentials(accountID, region, instanceID string) (Credentials, error) {
	a := e.account(accountID)
	if a == nil {
		return Credentials{}, fmt.Errorf("awsemu: no account %s", accountID)
	}
	now := e.now()
	a.mu.Lock()
	rg := a.regions[region]
	var role *iamRole
	if rg != nil && rg.instances[instanceID] != nil {
		if assoc := rg.activeAssociation(instanceID); assoc != nil {
			for _, p := range a.instanceProfiles {
				if p.arn == assoc.profileARN && len(p.roles) > 0 {
					if r := a.roles[p.roles[0]]; r != nil {
						cp := *r
						role = &cp
					}
				}
			}
		}
	}
	exists := rg != nil && rg.instances[instanceID] != nil
	a.mu.Unlock()
	switch {
	case !exists:
		return Credentials{}, fmt.Errorf("awsemu: no instance %s in %s/%s", instanceID, accountID, region)
	case role == nil:
		return Credentials{}, fmt.Errorf("awsemu: instance %s has no instance profile with a role", instanceID)
	}
	cred := e.issueSession(sessionRequest{
		role: role, account: accountID, name: instanceID, duration: 6 * time.Hour,
		sourceInstanceARN: "arn:aws:ec2:" + region + ":" + accountID + ":instance/" + instanceID, issuer: "ec2.amazonaws.com",
	}, now)
	return Credentials{cred.id, cred.secret, cred.token, cred.session.expires}, nil
}
