package awsemu

import (
	"crypto/sha256"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// awsManagedPolicies are the AWS managed policies the emulator knows, in
// simplified but faithful form: ReadOnlyAccess allows the read actions of
// every service.
var awsManagedPolicies = func() map[string]*managedPolicy {
	mk := func(name, doc string) *managedPolicy {
		parsed, err := parsePolicy(doc, identityPolicy)
		if err != nil {
			panic("awsemu: built-in policy " + name + ": " + err.Error())
		}
		return &managedPolicy{arn: "arn:aws:iam::aws:policy/" + name, name: name, path: "/", id: managedPolicyID(name),
			created: time.Date(2015, 2, 6, 18, 39, 46, 0, time.UTC), doc: &storedPolicy{doc, parsed}}
	}
	out := map[string]*managedPolicy{}
	for _, p := range []*managedPolicy{
		mk("AdministratorAccess", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`),
		mk("ReadOnlyAccess", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["*:Describe*","*:Get*","*:List*","*:Lookup*"],"Resource":"*"}]}`),
		mk("AWSDenyAll", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`),
		mk("SecurityAudit", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["*:Describe*","*:List*","*:GetBucketPolicy*","*:GetBucketAcl","*:GetAccessKeyLastUsed","*:GetRole*","*:GetUser*","*:LookupEvents"],"Resource":"*"}]}`),
	} {
		out[p.arn] = p
	}
	return out
}()

// managedPolicyID is the stable unique id of an AWS managed policy.
func managedPolicyID(name string) string {
	d := sha256.Sum256([]byte("aws-managed/" + name))
	return "ANPA" + upperBase32.EncodeToString(d[:11])[:17]
}

func (e *Emulator) iamService() *service {
	s := &service{
		name:        "iam",
		eventSource: "iam.amazonaws.com",
		protocol:    protoQuery,
		xmlns:       "https://iam.amazonaws.com/doc/2010-05-08/",
		version:     "2010-05-08",
		global:      true,
		errs:        queryErrors(),
	}
	user, role := (*Emulator).iamUserResource, (*Emulator).iamRoleResource
	ops := []*operation{
		{name: "GetUser", readOnly: true, handle: (*Emulator).iamGetUser, resources: user},
		{name: "ListUsers", readOnly: true, handle: (*Emulator).iamListUsers},
		{name: "GetRole", readOnly: true, handle: (*Emulator).iamGetRole, resources: role},
		{name: "SimulatePrincipalPolicy", readOnly: true, handle: (*Emulator).iamSimulatePrincipalPolicy,
			resources: func(_ *Emulator, c *call) []string { return []string{c.form.str("PolicySourceArn")} }},
		{name: "ListRoles", readOnly: true, handle: (*Emulator).iamListRoles},
		{name: "ListAccessKeys", readOnly: true, handle: (*Emulator).iamListAccessKeys, resources: user},
		{name: "UpdateAccessKey", handle: (*Emulator).iamUpdateAccessKey, resources: user},
		{name: "CreateAccessKey", handle: (*Emulator).iamCreateAccessKey, resources: user},
		{name: "DeleteAccessKey", handle: (*Emulator).iamDeleteAccessKey, resources: user},
		{name: "GetAccessKeyLastUsed", readOnly: true, handle: (*Emulator).iamGetAccessKeyLastUsed},
		{name: "GetLoginProfile", readOnly: true, handle: (*Emulator).iamGetLoginProfile, resources: user},
		{name: "CreateLoginProfile", handle: (*Emulator).iamCreateLoginProfile, resources: user},
		{name: "DeleteLoginProfile", handle: (*Emulator).iamDeleteLoginProfile, resources: user},
		{name: "PutUserPolicy", handle: (*Emulator).iamPutUserPolicy, resources: user},
		{name: "GetUserPolicy", readOnly: true, handle: (*Emulator).iamGetUserPolicy, resources: user},
		{name: "DeleteUserPolicy", handle: (*Emulator).iamDeleteUserPolicy, resources: user},
		{name: "ListUserPolicies", readOnly: true, handle: (*Emulator).iamListUserPolicies, resources: user},
		{name: "PutRolePolicy", handle: (*Emulator).iamPutRolePolicy, resources: role},
		{name: "GetRolePolicy", readOnly: true, handle: (*Emulator).iamGetRolePolicy, resources: role},
		{name: "DeleteRolePolicy", handle: (*Emulator).iamDeleteRolePolicy, resources: role},
		{name: "ListRolePolicies", readOnly: true, handle: (*Emulator).iamListRolePolicies, resources: role},
		{name: "AttachUserPolicy", handle: (*Emulator).iamAttachUserPolicy, resources: user, requestKeys: policyARNKey},
		{name: "DetachUserPolicy", handle: (*Emulator).iamDetachUserPolicy, resources: user, requestKeys: policyARNKey},
		{name: "ListAttachedUserPolicies", readOnly: true, handle: (*Emulator).iamListAttachedUserPolicies, resources: user},
		{name: "AttachRolePolicy", handle: (*Emulator).iamAttachRolePolicy, resources: role, requestKeys: policyARNKey},
		{name: "DetachRolePolicy", handle: (*Emulator).iamDetachRolePolicy, resources: role, requestKeys: policyARNKey},
		{name: "ListAttachedRolePolicies", readOnly: true, handle: (*Emulator).iamListAttachedRolePolicies, resources: role},
		{name: "GetInstanceProfile", readOnly: true, handle: (*Emulator).iamGetInstanceProfile},
		{name: "ListInstanceProfilesForRole", readOnly: true, handle: (*Emulator).iamListInstanceProfilesForRole, resources: role},
	}
	ops = append(ops, iamLifecycleOperations()...)
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "iam:" + op.name
		s.ops[op.name] = op
	}
	return s
}

// policyARNKey is iam:PolicyARN, the managed policy an Attach or Detach
// call names.
func policyARNKey(c *call) map[string][]string {
	return map[string][]string{"iam:policyarn": {c.form.str("PolicyArn")}}
}

// iamUserResource is the ARN of the user a call names, or of the calling
// user when it names none.
func (e *Emulator) iamUserResource(c *call) []string {
	name := c.form.str("UserName")
	if name == "" {
		if c.who.kind != principalUser {
			return nil
		}
		return []string{c.who.arn}
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	if u := c.acct.users[name]; u != nil {
		return []string{u.arn}
	}
	return []string{userARN(c.who.account, "/", name)}
}

func (e *Emulator) iamRoleResource(c *call) []string {
	name := c.form.str("RoleName")
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	if r := c.acct.roles[name]; r != nil {
		return []string{r.arn}
	}
	return []string{roleARN(c.who.account, "/", name)}
}

func noSuchEntity(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, "NoSuchEntity", format, args...)
}

func iamValidation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

var iamNamePattern = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// iamEncode percent-encodes a policy document as IAM returns it: every byte
// outside the RFC 3986 unreserved set.
func iamEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(strconv.FormatUint(uint64(c)>>4, 16)) + strings.ToUpper(strconv.FormatUint(uint64(c)&15, 16)))
		}
	}
	return b.String()
}

type iamTag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

func iamTags(t tags) []iamTag {
	out := make([]iamTag, 0, len(t))
	for _, k := range t.sortedKeys() {
		out = append(out, iamTag{k, t[k]})
	}
	return out
}

type iamUserOut struct {
	Path             string   `xml:"Path"`
	UserName         string   `xml:"UserName"`
	UserID           string   `xml:"UserId"`
	Arn              string   `xml:"Arn"`
	CreateDate       string   `xml:"CreateDate"`
	PasswordLastUsed string   `xml:"PasswordLastUsed,omitempty"`
	Tags             []iamTag `xml:"Tags>member"`
}

func renderUser(u *iamUser, withTags bool) iamUserOut {
	out := iamUserOut{Path: u.path, UserName: u.name, UserID: u.id, Arn: u.arn, CreateDate: xmlTime(u.created)}
	if !u.passwordAt.IsZero() {
		out.PasswordLastUsed = xmlTime(u.passwordAt)
	}
	if withTags {
		out.Tags = iamTags(u.tags)
	}
	return out
}

type iamRoleLastUsed struct {
	LastUsedDate string `xml:"LastUsedDate,omitempty"`
	Region       string `xml:"Region,omitempty"`
}

type iamRoleOut struct {
	Path                     string           `xml:"Path"`
	RoleName                 string           `xml:"RoleName"`
	RoleID                   string           `xml:"RoleId"`
	Arn                      string           `xml:"Arn"`
	CreateDate               string           `xml:"CreateDate"`
	AssumeRolePolicyDocument string           `xml:"AssumeRolePolicyDocument"`
	Description              string           `xml:"Description,omitempty"`
	MaxSessionDuration       int32            `xml:"MaxSessionDuration"`
	Tags                     []iamTag         `xml:"Tags>member"`
	RoleLastUsed             *iamRoleLastUsed `xml:"RoleLastUsed,omitempty"`
}

func renderRole(r *iamRole, full bool) iamRoleOut {
	out := iamRoleOut{Path: r.path, RoleName: r.name, RoleID: r.id, Arn: r.arn, CreateDate: xmlTime(r.created),
		AssumeRolePolicyDocument: iamEncode(r.trust.text), Description: r.description, MaxSessionDuration: r.maxSession}
	if full {
		out.Tags = iamTags(r.tags)
		out.RoleLastUsed = &iamRoleLastUsed{}
		if !r.lastUsed.IsZero() {
			out.RoleLastUsed = &iamRoleLastUsed{xmlTime(r.lastUsed), r.lastRegion}
		}
	}
	return out
}

// userFor finds the user a call names, or the calling user. The caller
// holds the account lock.
func (c *call) userFor(name string) (*iamUser, *apiError) {
	if name == "" {
		switch c.who.kind {
		case principalUser:
			name = c.who.cred.user
		case principalRoot:
			return nil, nil
		default:
			return nil, iamValidation("Must specify userName when calling with non-User credentials")
		}
	}
	u := c.acct.users[name]
	if u == nil {
		return nil, noSuchEntity("The user with name %s cannot be found.", name)
	}
	return u, nil
}

func (c *call) roleFor(name string) (*iamRole, *apiError) {
	if name == "" {
		return nil, errorf(http.StatusBadRequest, "ValidationError", "1 validation error detected: Value null at 'roleName' failed to satisfy constraint: Member must not be null")
	}
	r := c.acct.roles[name]
	if r == nil {
		return nil, noSuchEntity("The role with name %s cannot be found.", name)
	}
	return r, nil
}

// iamPage reads Marker and MaxItems and cuts the sorted names into a page.
func iamPage(c *call, names []string) ([]string, string, *apiError) {
	max := 100
	if n, ok, err := c.form.integer("MaxItems"); err != nil {
		return nil, "", iamValidation("%v", err)
	} else if ok {
		if n < 1 || n > 1000 {
			return nil, "", iamValidation("1 validation error detected: Value '%d' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000", n)
		}
		max = int(n)
	}
	page, next, ae := jsonPage(names, c.form.str("Marker"), max, 1000, func(string) *apiError {
		return iamValidation("Invalid Marker.")
	})
	return page, next, ae
}

func (e *Emulator) iamGetUser(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.userFor(c.form.str("UserName"))
	if ae != nil {
		return nil, ae
	}
	if u == nil {
		// The account root, asking about itself.
		return &struct {
			User iamUserOut `xml:"User"`
		}{iamUserOut{UserID: c.who.account, Arn: c.who.arn, CreateDate: xmlTime(c.acct.joined)}}, nil
	}
	return &struct {
		User iamUserOut `xml:"User"`
	}{renderUser(u, true)}, nil
}

func (e *Emulator) iamListUsers(c *call) (any, error) {
	prefix := orDefault(c.form.str("PathPrefix"), "/")
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	page, next, ae := iamPage(c, namesUnder(c.acct.users, prefix, func(u *iamUser) string { return u.path }))
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		Users       []iamUserOut `xml:"Users>member"`
		IsTruncated bool         `xml:"IsTruncated"`
		Marker      string       `xml:"Marker,omitempty"`
	}{Users: []iamUserOut{}, IsTruncated: next != "", Marker: next}
	for _, n := range page {
		out.Users = append(out.Users, renderUser(c.acct.users[n], false))
	}
	return out, nil
}

// namesUnder returns, sorted, the names of the IAM entities whose path
// starts with prefix (ListUsers and ListRoles filter alike).
func namesUnder[T any](m map[string]T, prefix string, path func(T) string) []string {
	var names []string
	for n, v := range m {
		if strings.HasPrefix(path(v), prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func (e *Emulator) iamGetRole(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	return &struct {
		Role iamRoleOut `xml:"Role"`
	}{renderRole(r, true)}, nil
}

func (e *Emulator) iamListRoles(c *call) (any, error) {
	prefix := orDefault(c.form.str("PathPrefix"), "/")
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	page, next, ae := iamPage(c, namesUnder(c.acct.roles, prefix, func(r *iamRole) string { return r.path }))
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		Roles       []iamRoleOut `xml:"Roles>member"`
		IsTruncated bool         `xml:"IsTruncated"`
		Marker      string       `xml:"Marker,omitempty"`
	}{Roles: []iamRoleOut{}, IsTruncated: next != "", Marker: next}
	for _, n := range page {
		out.Roles = append(out.Roles, renderRole(c.acct.roles[n], false))
	}
	return out, nil
}

type iamKeyMetadata struct {
	UserName    string `xml:"UserName"`
	AccessKeyID string `xml:"AccessKeyId"`
	Status      string `xml:"Status"`
	CreateDate  string `xml:"CreateDate"`
}

func keyMetadata(k *accessKey) iamKeyMetadata {
	k.mu.Lock()
	defer k.mu.Unlock()
	return iamKeyMetadata{k.user, k.id, k.status, xmlTime(k.created)}
}

// namedUser returns the user a request that acts on a user's keys or
// policies names (UserName, or the caller when it is a user); the root
// user has neither.
func (c *call) namedUser() (*iamUser, *apiError) {
	u, ae := c.userFor(c.form.str("UserName"))
	if ae == nil && u == nil {
		ae = iamValidation("Must specify userName when calling with root credentials")
	}
	return u, ae
}

func (e *Emulator) iamListAccessKeys(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.userFor(c.form.str("UserName"))
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		Keys        []iamKeyMetadata `xml:"AccessKeyMetadata>member"`
		IsTruncated bool             `xml:"IsTruncated"`
	}{Keys: []iamKeyMetadata{}}
	if u == nil {
		return out, nil
	}
	for _, k := range u.keys {
		out.Keys = append(out.Keys, keyMetadata(k))
	}
	return out, nil
}

func (e *Emulator) iamUpdateAccessKey(c *call) (any, error) {
	id, status := c.form.str("AccessKeyId"), c.form.str("Status")
	if status != "Active" && status != "Inactive" {
		return nil, iamValidation("1 validation error detected: Value '%s' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]", status)
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	for _, k := range u.keys {
		if k.id == id {
			k.setStatus(status)
			return nil, nil
		}
	}
	return nil, noSuchEntity("The Access Key with id %s cannot be found.", id)
}

// maxAccessKeysPerUser is IAM's quota.
const maxAccessKeysPerUser = 2

func (e *Emulator) iamCreateAccessKey(c *call) (any, error) {
	c.acct.mu.Lock()
	u, ae := c.namedUser()
	if ae != nil {
		c.acct.mu.Unlock()
		return nil, ae
	}
	if len(u.keys) >= maxAccessKeysPerUser {
		c.acct.mu.Unlock()
		return nil, errorf(http.StatusConflict, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: %d", maxAccessKeysPerUser)
	}
	k := &accessKey{id: e.ids.accessKeyID("AKIA"), secret: e.ids.secret(), account: c.acct.id, user: u.name, created: c.now, status: "Active"}
	u.keys = append(u.keys, k)
	c.acct.mu.Unlock()
	e.credMu.Lock()
	e.creds[k.id] = &credential{id: k.id, secret: k.secret, account: k.account, kind: principalUser, key: k, user: k.user}
	e.credMu.Unlock()
	c.trail.response = map[string]any{"accessKey": map[string]string{"accessKeyId": k.id, "status": "Active", "userName": k.user}}
	return &struct {
		AccessKey struct {
			UserName        string `xml:"UserName"`
			AccessKeyID     string `xml:"AccessKeyId"`
			Status          string `xml:"Status"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			CreateDate      string `xml:"CreateDate"`
		} `xml:"AccessKey"`
	}{AccessKey: struct {
		UserName        string `xml:"UserName"`
		AccessKeyID     string `xml:"AccessKeyId"`
		Status          string `xml:"Status"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		CreateDate      string `xml:"CreateDate"`
	}{k.user, k.id, "Active", k.secret, xmlTime(k.created)}}, nil
}

func (e *Emulator) iamDeleteAccessKey(c *call) (any, error) {
	id := c.form.str("AccessKeyId")
	c.acct.mu.Lock()
	u, ae := c.namedUser()
	if ae != nil {
		c.acct.mu.Unlock()
		return nil, ae
	}
	i := slices.IndexFunc(u.keys, func(k *accessKey) bool { return k.id == id })
	if i < 0 {
		c.acct.mu.Unlock()
		return nil, noSuchEntity("The Access Key with id %s cannot be found.", id)
	}
	u.keys = slices.Delete(u.keys, i, i+1)
	c.acct.mu.Unlock()
	e.credMu.Lock()
	delete(e.creds, id)
	e.credMu.Unlock()
	return nil, nil
}

func (e *Emulator) iamGetAccessKeyLastUsed(c *call) (any, error) {
	id := c.form.str("AccessKeyId")
	if len(id) < 16 {
		return nil, iamValidation("1 validation error detected: Value '%s' at 'accessKeyId' failed to satisfy constraint: Member must have length greater than or equal to 16", id)
	}
	e.credMu.RLock()
	cred := e.creds[id]
	e.credMu.RUnlock()
	// The API reference documents the key's owner as the only account that
	// can read its last use; other accounts get the documented NoSuchEntity.
	if cred == nil || cred.kind != principalUser || cred.key == nil || cred.account != c.who.account {
		return nil, noSuchEntity("The Access Key with id %s cannot be found.", id)
	}
	k := cred.key
	k.mu.Lock()
	last := struct {
		LastUsedDate string `xml:"LastUsedDate,omitempty"`
		ServiceName  string `xml:"ServiceName"`
		Region       string `xml:"Region"`
	}{ServiceName: "N/A", Region: "N/A"}
	if !k.lastUsed.IsZero() {
		last.LastUsedDate, last.ServiceName, last.Region = xmlTime(k.lastUsed), k.lastService, k.lastRegion
	}
	user := k.user
	k.mu.Unlock()
	return &struct {
		UserName          string `xml:"UserName"`
		AccessKeyLastUsed any    `xml:"AccessKeyLastUsed"`
	}{user, last}, nil
}

type iamLoginProfile struct {
	UserName              string `xml:"UserName"`
	CreateDate            string `xml:"CreateDate"`
	PasswordResetRequired bool   `xml:"PasswordResetRequired"`
}

func (e *Emulator) iamGetLoginProfile(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if u.login == nil {
		return nil, noSuchEntity("Login Profile for User %s cannot be found.", u.name)
	}
	return &struct {
		LoginProfile iamLoginProfile `xml:"LoginProfile"`
	}{iamLoginProfile{u.name, xmlTime(u.login.created), u.login.resetRequired}}, nil
}

func (e *Emulator) iamCreateLoginProfile(c *call) (any, error) {
	password := c.form.str("Password")
	if len(password) < 8 {
		return nil, errorf(http.StatusBadRequest, "PasswordPolicyViolation", "Password should have a minimum length of 8")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if u.login != nil {
		return nil, errorf(http.StatusConflict, "EntityAlreadyExists", "Login Profile for user %s already exists.", u.name)
	}
	// The password itself is never kept: nothing signs in to the emulator.
	u.login = &loginProfile{created: c.now, resetRequired: c.form.boolean("PasswordResetRequired")}
	return &struct {
		LoginProfile iamLoginProfile `xml:"LoginProfile"`
	}{iamLoginProfile{u.name, xmlTime(u.login.created), u.login.resetRequired}}, nil
}

func (e *Emulator) iamDeleteLoginProfile(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if u.login == nil {
		return nil, noSuchEntity("Login Profile for User %s cannot be found.", u.name)
	}
	u.login = nil
	return nil, nil
}

// IAM's quotas on the aggregate size of inline policies, in characters
// other than white space.
const (
	maxUserInlineBytes = 2048
	maxRoleInlineBytes = 10240
)

// putInline validates a document and stores it among a principal's inline
// policies, enforcing the aggregate quota.
func putInline(c *call, inline *map[string]*storedPolicy, owner, kind string, quota int) *apiError {
	name, doc := c.form.str("PolicyName"), c.form.str("PolicyDocument")
	if !iamNamePattern.MatchString(name) {
		return iamValidation("The specified value for policyName is invalid. It must contain only alphanumeric characters and/or the following: +=,.@_-")
	}
	parsed, err := parsePolicy(doc, identityPolicy)
	if err != nil {
		return errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", err.Error())
	}
	total := policySize(doc)
	for n, p := range *inline {
		if n != name {
			total += policySize(p.text)
		}
	}
	if total > quota {
		return errorf(http.StatusConflict, "LimitExceeded", "Maximum policy size of %d bytes exceeded for %s %s", quota, kind, owner)
	}
	if *inline == nil {
		*inline = map[string]*storedPolicy{}
	}
	(*inline)[name] = &storedPolicy{doc, parsed}
	return nil
}

type iamPolicyOut struct {
	UserName       string `xml:"UserName,omitempty"`
	RoleName       string `xml:"RoleName,omitempty"`
	PolicyName     string `xml:"PolicyName"`
	PolicyDocument string `xml:"PolicyDocument"`
}

func (e *Emulator) iamPutUserPolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if ae := putInline(c, &u.inline, u.name, "user", maxUserInlineBytes); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamGetUserPolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	name := c.form.str("PolicyName")
	p := u.inline[name]
	if p == nil {
		return nil, noSuchEntity("The user policy with name %s cannot be found.", name)
	}
	return &iamPolicyOut{UserName: u.name, PolicyName: name, PolicyDocument: iamEncode(p.text)}, nil
}

func (e *Emulator) iamDeleteUserPolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	name := c.form.str("PolicyName")
	if u.inline[name] == nil {
		return nil, noSuchEntity("The user policy with name %s cannot be found.", name)
	}
	delete(u.inline, name)
	return nil, nil
}

type iamNameList struct {
	PolicyNames []string `xml:"PolicyNames>member"`
	IsTruncated bool     `xml:"IsTruncated"`
	Marker      string   `xml:"Marker,omitempty"`
}

func listInline(c *call, inline map[string]*storedPolicy) (any, error) {
	names := slices.Sorted(maps.Keys(inline))
	page, next, ae := iamPage(c, names)
	if ae != nil {
		return nil, ae
	}
	if page == nil {
		page = []string{}
	}
	return &iamNameList{page, next != "", next}, nil
}

func (e *Emulator) iamListUserPolicies(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	return listInline(c, u.inline)
}

// protectedRole refuses changes to service-linked roles, which only AWS
// may modify.
func protectedRole(r *iamRole) *apiError {
	if r.serviceLinked() {
		return errorf(http.StatusBadRequest, "UnmodifiableEntity", "Cannot perform the operation on the protected role '%s' - this role is only modifiable by AWS", r.name)
	}
	return nil
}

func (e *Emulator) iamPutRolePolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	if ae := putInline(c, &r.inline, r.name, "role", maxRoleInlineBytes); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamGetRolePolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	name := c.form.str("PolicyName")
	p := r.inline[name]
	if p == nil {
		return nil, noSuchEntity("The role policy with name %s cannot be found.", name)
	}
	return &iamPolicyOut{RoleName: r.name, PolicyName: name, PolicyDocument: iamEncode(p.text)}, nil
}

func (e *Emulator) iamDeleteRolePolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	name := c.form.str("PolicyName")
	if r.inline[name] == nil {
		return nil, noSuchEntity("The role policy with name %s cannot be found.", name)
	}
	delete(r.inline, name)
	return nil, nil
}

func (e *Emulator) iamListRolePolicies(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	return listInline(c, r.inline)
}

// maxManagedPoliciesPerPrincipal is IAM's default quota.
const maxManagedPoliciesPerPrincipal = 10

func attach(c *call, list *[]string) *apiError {
	arn := c.form.str("PolicyArn")
	if !strings.HasPrefix(arn, "arn:aws:iam::") {
		return errorf(http.StatusBadRequest, "InvalidInput", "ARN %s is not valid.", arn)
	}
	if c.acct.managedPolicy(arn) == nil {
		return noSuchEntity("Policy %s does not exist or is not attachable.", arn)
	}
	if slices.Contains(*list, arn) {
		return nil
	}
	if len(*list) >= maxManagedPoliciesPerPrincipal {
		return errorf(http.StatusConflict, "LimitExceeded", "Cannot exceed quota for PoliciesPerUser: %d", maxManagedPoliciesPerPrincipal)
	}
	*list = append(*list, arn)
	return nil
}

func detach(c *call, list *[]string) *apiError {
	arn := c.form.str("PolicyArn")
	i := slices.Index(*list, arn)
	if i < 0 {
		return noSuchEntity("Policy %s was not found.", arn)
	}
	*list = slices.Delete(*list, i, i+1)
	return nil
}

type iamAttachedPolicy struct {
	PolicyName string `xml:"PolicyName"`
	PolicyArn  string `xml:"PolicyArn"`
}

func listAttached(c *call, list []string) (any, error) {
	prefix := orDefault(c.form.str("PathPrefix"), "/")
	var arns []string
	for _, arn := range list {
		if mp := c.acct.managedPolicy(arn); mp != nil && strings.HasPrefix(mp.path, prefix) {
			arns = append(arns, arn)
		}
	}
	page, next, ae := iamPage(c, arns)
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		AttachedPolicies []iamAttachedPolicy `xml:"AttachedPolicies>member"`
		IsTruncated      bool                `xml:"IsTruncated"`
		Marker           string              `xml:"Marker,omitempty"`
	}{AttachedPolicies: []iamAttachedPolicy{}, IsTruncated: next != "", Marker: next}
	for _, arn := range page {
		out.AttachedPolicies = append(out.AttachedPolicies, iamAttachedPolicy{c.acct.managedPolicy(arn).name, arn})
	}
	return out, nil
}

func (e *Emulator) iamAttachUserPolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if ae := attach(c, &u.attached); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamDetachUserPolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	if ae := detach(c, &u.attached); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamListAttachedUserPolicies(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u, ae := c.namedUser()
	if ae != nil {
		return nil, ae
	}
	return listAttached(c, u.attached)
}

func (e *Emulator) iamAttachRolePolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	if ae := attach(c, &r.attached); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamDetachRolePolicy(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	if ae := detach(c, &r.attached); ae != nil {
		return nil, ae
	}
	return nil, nil
}

func (e *Emulator) iamListAttachedRolePolicies(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	return listAttached(c, r.attached)
}

type iamInstanceProfileOut struct {
	Path                string       `xml:"Path"`
	InstanceProfileName string       `xml:"InstanceProfileName"`
	InstanceProfileID   string       `xml:"InstanceProfileId"`
	Arn                 string       `xml:"Arn"`
	CreateDate          string       `xml:"CreateDate"`
	Roles               []iamRoleOut `xml:"Roles>member"`
}

func (c *call) renderProfile(p *instanceProfile) iamInstanceProfileOut {
	out := iamInstanceProfileOut{Path: p.path, InstanceProfileName: p.name, InstanceProfileID: p.id, Arn: p.arn, CreateDate: xmlTime(p.created), Roles: []iamRoleOut{}}
	for _, rn := range p.roles {
		if r := c.acct.roles[rn]; r != nil {
			out.Roles = append(out.Roles, renderRole(r, false))
		}
	}
	return out
}

func (e *Emulator) iamGetInstanceProfile(c *call) (any, error) {
	name := c.form.str("InstanceProfileName")
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	p := c.acct.instanceProfiles[name]
	if p == nil {
		return nil, noSuchEntity("Instance Profile %s cannot be found.", name)
	}
	return &struct {
		InstanceProfile iamInstanceProfileOut `xml:"InstanceProfile"`
	}{c.renderProfile(p)}, nil
}

func (e *Emulator) iamListInstanceProfilesForRole(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	var names []string
	for n, p := range c.acct.instanceProfiles {
		if slices.Contains(p.roles, r.name) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	page, next, ae := iamPage(c, names)
	if ae != nil {
		return nil, ae
	}
	out := &struct {
		InstanceProfiles []iamInstanceProfileOut `xml:"InstanceProfiles>member"`
		IsTruncated      bool                    `xml:"IsTruncated"`
		Marker           string                  `xml:"Marker,omitempty"`
	}{InstanceProfiles: []iamInstanceProfileOut{}, IsTruncated: next != "", Marker: next}
	for _, n := range page {
		out.InstanceProfiles = append(out.InstanceProfiles, c.renderProfile(c.acct.instanceProfiles[n]))
	}
	return out, nil
}
