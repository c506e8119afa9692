package awsemu

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// iamLifecycleOperations are the IAM calls that create and delete users and
// roles and replace a role's trust policy: what an attacker uses for
// persistence and what eradication undoes.
func iamLifecycleOperations() []*operation {
	user, role := (*Emulator).iamUserResource, (*Emulator).iamRoleResource
	return []*operation{
		{name: "CreateUser", handle: (*Emulator).iamCreateUser, resources: user},
		{name: "DeleteUser", handle: (*Emulator).iamDeleteUser, resources: user},
		{name: "CreateRole", handle: (*Emulator).iamCreateRole, resources: role},
		{name: "DeleteRole", handle: (*Emulator).iamDeleteRole, resources: role},
		{name: "UpdateAssumeRolePolicy", handle: (*Emulator).iamUpdateAssumeRolePolicy, resources: role},
	}
}

// iamPath reads an optional IAM path parameter, "/" when absent.
func iamPath(c *call) (string, *apiError) {
	path := c.form.str("Path")
	if path == "" {
		return "/", nil
	}
	if !strings.HasPrefix(path, "/") || !strings.HasSuffix(path, "/") || len(path) > 512 {
		return "", iamValidation("The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters.")
	}
	return path, nil
}

// iamRequestTags reads the Tags.member.N.Key/Value list of a create call.
func iamRequestTags(c *call) tags {
	out := tags{}
	for _, t := range c.form.list("Tags") {
		out[t.str("Key")] = t.str("Value")
	}
	return out
}

func (e *Emulator) iamCreateUser(c *call) (any, error) {
	name := c.form.str("UserName")
	if !iamNamePattern.MatchString(name) || len(name) > 64 {
		return nil, iamValidation("The specified value for userName is invalid. It must contain only alphanumeric characters and/or the following: +=,.@_-")
	}
	path, ae := iamPath(c)
	if ae != nil {
		return nil, ae
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	// IAM names are unique without regard to case.
	for n := range c.acct.users {
		if strings.EqualFold(n, name) {
			return nil, errorf(http.StatusConflict, "EntityAlreadyExists", "User with name %s already exists.", name)
		}
	}
	u := &iamUser{name: name, path: path, id: e.ids.uniqueID("AIDA"), arn: userARN(c.acct.id, path, name), created: c.now, tags: iamRequestTags(c)}
	c.acct.users[name] = u
	c.trail.response = map[string]any{"user": map[string]any{
		"path": u.path, "userName": u.name, "userId": u.id, "arn": u.arn, "createDate": trailTime(u.created),
	}}
	return &struct {
		User iamUserOut `xml:"User"`
	}{renderUser(u, true)}, nil
}

// deleteConflict is IAM's refusal to delete an entity that still has
// subordinate entities.
func deleteConflict(format string, args ...any) *apiError {
	return errorf(http.StatusConflict, "DeleteConflict", format, args...)
}

func (e *Emulator) iamDeleteUser(c *call) (any, error) {
	name := c.form.str("UserName")
	if name == "" {
		return nil, iamValidation("1 validation error detected: Value null at 'userName' failed to satisfy constraint: Member must not be null")
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	u := c.acct.users[name]
	if u == nil {
		return nil, noSuchEntity("The user with name %s cannot be found.", name)
	}
	// IAM refuses to delete a user that still has keys, a password or
	// policies; the caller removes them first.
	switch {
	case len(u.keys) > 0:
		return nil, deleteConflict("Cannot delete entity, must delete access keys first.")
	case u.login != nil:
		return nil, deleteConflict("Cannot delete entity, must delete login profile first.")
	case len(u.inline) > 0:
		return nil, deleteConflict("Cannot delete entity, must delete policies first.")
	case len(u.attached) > 0:
		return nil, deleteConflict("Cannot delete entity, must detach all policies first.")
	}
	delete(c.acct.users, name)
	return nil, nil
}

func (e *Emulator) iamCreateRole(c *call) (any, error) {
	name := c.form.str("RoleName")
	if !iamNamePattern.MatchString(name) || len(name) > 64 {
		return nil, iamValidation("The specified value for roleName is invalid. It must contain only alphanumeric characters and/or the following: +=,.@_-")
	}
	path, ae := iamPath(c)
	if ae != nil {
		return nil, ae
	}
	doc := c.form.str("AssumeRolePolicyDocument")
	parsed, err := parsePolicy(doc, trustPolicy)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", err.Error())
	}
	maxSession := int32(3600)
	if n, ok, err := c.form.integer("MaxSessionDuration"); err != nil {
		return nil, iamValidation("%v", err)
	} else if ok {
		if n < 3600 || n > 43200 {
			return nil, iamValidation("1 validation error detected: Value '%d' at 'maxSessionDuration' failed to satisfy constraint: Member must have value less than or equal to 43200", n)
		}
		maxSession = int32(n) //nolint:gosec // bounded to 3600..43200 just above
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	for n := range c.acct.roles {
		if strings.EqualFold(n, name) {
			return nil, errorf(http.StatusConflict, "EntityAlreadyExists", "Role with name %s already exists.", name)
		}
	}
	r := &iamRole{name: name, path: path, id: e.ids.uniqueID("AROA"), arn: roleARN(c.acct.id, path, name), created: c.now,
		description: c.form.str("Description"), trust: &storedPolicy{doc, parsed}, maxSession: maxSession, tags: iamRequestTags(c)}
	c.acct.roles[name] = r
	c.trail.response = map[string]any{"role": map[string]any{
		"path": r.path, "roleName": r.name, "roleId": r.id, "arn": r.arn, "createDate": trailTime(r.created),
		"assumeRolePolicyDocument": iamEncode(doc),
	}}
	return &struct {
		Role iamRoleOut `xml:"Role"`
	}{renderRole(r, false)}, nil
}

func (e *Emulator) iamDeleteRole(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	switch {
	case len(r.inline) > 0:
		return nil, deleteConflict("Cannot delete entity, must delete policies first.")
	case len(r.attached) > 0:
		return nil, deleteConflict("Cannot delete entity, must detach all policies first.")
	}
	for _, p := range c.acct.instanceProfiles {
		if slices.Contains(p.roles, r.name) {
			return nil, deleteConflict("Cannot delete entity, must remove roles from instance profile first.")
		}
	}
	delete(c.acct.roles, r.name)
	return nil, nil
}

func (e *Emulator) iamUpdateAssumeRolePolicy(c *call) (any, error) {
	doc := c.form.str("PolicyDocument")
	parsed, err := parsePolicy(doc, trustPolicy)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", err.Error())
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	r, ae := c.roleFor(c.form.str("RoleName"))
	if ae != nil {
		return nil, ae
	}
	if ae := protectedRole(r); ae != nil {
		return nil, ae
	}
	r.trust = &storedPolicy{doc, parsed}
	return nil, nil
}

// trailTime formats an IAM date as CloudTrail's responseElements carry it:
// IAM's Java-style "Jan 2, 2006 3:04:05 PM", not RFC 3339.
func trailTime(t time.Time) string {
	return t.UTC().Format("Jan 2, 2006 3:04:05 PM")
}
