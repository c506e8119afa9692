package awsiam

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The actions' names.
const (
	ContainName   = "aws-iam-contain"
	UncontainName = "aws-iam-uncontain"
)

// Outcomes of aws-iam-contain.
const (
	// OutcomeContained means the task changed something.
	OutcomeContained = "contained"
	// OutcomeAlreadyContained means everything asked for was already in
	// place; the task changed nothing.
	OutcomeAlreadyContained = "already_contained"
	// OutcomeNotFound means the key, user or role is not in this account:
	// in an organisation-wide run, every other account reports this.
	OutcomeNotFound = "not_found_in_account"
)

// ContainParams are aws-iam-contain's parameters. Exactly one of
// AccessKeyID, User and Role names what to contain, except that User may
// accompany AccessKeyID as the owner the finding names.
type ContainParams struct {
	awsresponse.Target
	// AccessKeyID is a long-term access key (AKIA…) to find and
	// deactivate.
	AccessKeyID string `json:"access_key_id,omitempty"`
	// User is an IAM user name or ARN.
	User string `json:"user,omitempty"`
	// Role is an IAM role name or ARN.
	Role string `json:"role,omitempty"`
	// DeactivateKeys deactivates every active key of User (default true;
	// only with user).
	DeactivateKeys *bool `json:"deactivate_keys,omitempty"`
	// DeleteLoginProfile deletes the user's console password.
	DeleteLoginProfile bool `json:"delete_login_profile,omitempty"`
	// DenyAll attaches the AWS managed policy AWSDenyAll to the principal.
	DenyAll bool `json:"deny_all,omitempty"`
	// RevokeSessions puts AWSRevokeOlderSessions on the principal (default
	// true for a role, false otherwise).
	RevokeSessions *bool `json:"revoke_sessions,omitempty"`
}

// ContainResult is aws-iam-contain's result.
type ContainResult struct {
	// Account is the account the task acted in.
	Account string `json:"account"`
	// Outcome is contained, already_contained or not_found_in_account.
	Outcome string `json:"outcome"`
	// Detail says why the outcome is not_found_in_account.
	Detail string `json:"detail,omitempty"`
	// AccessKeyID is the key asked for.
	AccessKeyID string `json:"access_key_id,omitempty"`
	// OwnerAccount is the account AWS says owns AccessKeyID, when known.
	OwnerAccount string `json:"owner_account,omitempty"`
	// User and Role are the contained principal.
	User string `json:"user,omitempty"`
	Role string `json:"role,omitempty"`
	// RoleARN is the contained role's ARN.
	RoleARN string `json:"role_arn,omitempty"`
	// Keys are the access keys looked at, with their status before and
	// after.
	Keys []KeyChange `json:"keys"`
	// LoginProfile is what happened to the console password, when asked.
	LoginProfile *LoginProfileChange `json:"login_profile,omitempty"`
	// Policies are the inline policies put or found in place.
	Policies []PolicyChange `json:"policies"`
	// AttachedPolicies are the managed policies attached or found in
	// place (AWSDenyAll, with deny_all).
	AttachedPolicies []AttachmentChange `json:"attached_policies"`
	// SessionsRevokedBefore is the aws:TokenIssueTime cut-off of
	// AWSRevokeOlderSessions, when sessions were revoked.
	SessionsRevokedBefore *time.Time `json:"sessions_revoked_before,omitempty"`
	// Notes are things a responder should know about the result.
	Notes []string `json:"notes,omitempty"`
	// RollbackRecord is aws-iam-uncontain's rollback_record parameter.
	RollbackRecord string `json:"rollback_record"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// KeyChange is one access key of the contained user.
type KeyChange struct {
	AccessKeyID  string `json:"access_key_id"`
	User         string `json:"user"`
	StatusBefore string `json:"status_before"`
	StatusAfter  string `json:"status_after"`
	// LastUsed is the key's last use as IAM reports it, when read and the
	// key was ever used.
	LastUsed *KeyLastUsed `json:"last_used,omitempty"`
}

// KeyLastUsed is IAM's record of a key's last use.
type KeyLastUsed struct {
	Time    *time.Time `json:"time,omitempty"`
	Service string     `json:"service,omitempty"`
	Region  string     `json:"region,omitempty"`
}

// LoginProfileChange is what happened to a user's console password.
type LoginProfileChange struct {
	Existed               bool       `json:"existed"`
	Deleted               bool       `json:"deleted"`
	Created               *time.Time `json:"created,omitempty"`
	PasswordResetRequired bool       `json:"password_reset_required,omitempty"`
}

// PolicyChange is an inline policy the containment wants in place.
type PolicyChange struct {
	// PrincipalType is user or role.
	PrincipalType string `json:"principal_type"`
	Principal     string `json:"principal"`
	PolicyName    string `json:"policy_name"`
	// Change is added, replaced (a different document of that name was
	// there; rollback puts it back) or unchanged.
	Change string `json:"change"`
}

// AttachmentChange is a managed policy the containment wants attached.
type AttachmentChange struct {
	// PrincipalType is user or role.
	PrincipalType string `json:"principal_type"`
	Principal     string `json:"principal"`
	PolicyARN     string `json:"policy_arn"`
	// Change is attached, or unchanged when it already was (rollback then
	// leaves it).
	Change string `json:"change"`
}

// Contain is the aws-iam-contain action.
type Contain struct{ cfg Config }

// NewContain returns aws-iam-contain.
func NewContain(cfg Config) (*Contain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Contain{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Contain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	str, boolean := pluginv1.ParamType_PARAM_TYPE_STRING, pluginv1.ParamType_PARAM_TYPE_BOOL
	params := []*pluginv1.ParamSpec{
		{Name: "access_key_id", Type: str, Description: "long-term access key (AKIA…) to find in the account and deactivate; in an organisation-wide run, accounts that do not own it report not_found_in_account"},
		{Name: "user", Type: str, Description: "IAM user name or ARN to contain (deactivates its active keys); with access_key_id, the owner the finding names, checked"},
		{Name: "role", Type: str, Description: "IAM role name or ARN whose sessions to revoke; service-linked roles are refused"},
		{Name: "deactivate_keys", Type: boolean, Description: "with user: deactivate every active access key of the user (default true)"},
		{Name: "delete_login_profile", Type: boolean, DefaultJson: "false", Description: "delete the user's console password; it cannot be restored by rollback (the user needs a new one)"},
		{Name: "deny_all", Type: boolean, DefaultJson: "false", Description: "attach the AWS managed policy " + DenyAllPolicy + " (deny everything) to the user or role"},
		{Name: "revoke_sessions", Type: boolean, Description: "put the inline policy " + RevokeSessionsPolicy + ", denying every session issued before now (default true for a role, false otherwise)"},
	}
	return &pluginv1.ActionDescription{
		Name:    ContainName,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Contains an IAM access key, user or role: finds the key's owner and deactivates the key, optionally deletes the console password, " +
			"attaches AWSDenyAll and revokes existing sessions; the rollback record undoes exactly what was changed",
		Destructive:    true,
		RollbackAction: UncontainName,
		Roles:          awsresponse.Roles,
		Params:         append(params, awsresponse.TargetParams()...),
	}, nil
}

var (
	accessKeyRE = regexp.MustCompile(`^[A-Z0-9]{16,128}$`)
	nameRE      = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	// principalARNRE reads arn:aws:iam::ACCOUNT:user/PATH/NAME and
	// arn:aws:iam::ACCOUNT:role/PATH/NAME.
	principalARNRE = regexp.MustCompile(`^arn:aws[\w-]*:iam::(\d{12}):(user|role)(/(?:[\x21-\x7e]*/)?)([\w+=,.@-]{1,128})$`)
)

// principalRef is a user or role named by name or ARN.
type principalRef struct {
	name    string
	account string // from an ARN, else empty
	arn     string // as given, when an ARN
}

func parsePrincipal(kind, s string) (principalRef, error) {
	if m := principalARNRE.FindStringSubmatch(s); m != nil {
		if m[2] != kind {
			return principalRef{}, sdk.Errorf(codes.InvalidArgument, "%s %q is the ARN of a %s, not a %s", kind, s, m[2], kind)
		}
		return principalRef{name: m[4], account: m[1], arn: s}, nil
	}
	if !nameRE.MatchString(s) {
		return principalRef{}, sdk.Errorf(codes.InvalidArgument, "%s %q is neither an IAM %s name nor its ARN", kind, s, kind)
	}
	return principalRef{name: s}, nil
}

// Execute implements sdk.Action.
func (a *Contain) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p ContainParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, _, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := &containment{
		Clients: a.cfg.NewClients(cfg, req.AWS),
		creds:   req.AWS,
		now:     a.cfg.Clock,
		emit:    emit,
		journal: journal,
		p:       p,
		res:     &ContainResult{Account: account, AccessKeyID: p.AccessKeyID, Keys: []KeyChange{}, Policies: []PolicyChange{}, AttachedPolicies: []AttachmentChange{}},
		rec:     &containRecord{},
	}
	switch {
	case p.Role != "":
		err = c.containRole(ctx)
	case p.AccessKeyID != "":
		err = c.containKey(ctx)
	default:
		err = c.containUser(ctx)
	}
	return c.finish(err)
}

// check validates the parameters' combination.
func (p *ContainParams) check() error {
	p.AccessKeyID, p.User, p.Role = strings.TrimSpace(p.AccessKeyID), strings.TrimSpace(p.User), strings.TrimSpace(p.Role)
	switch {
	case p.AccessKeyID == "" && p.User == "" && p.Role == "":
		return sdk.Errorf(codes.InvalidArgument, "name what to contain: access_key_id=AKIA…, user=NAME or role=NAME")
	case p.Role != "" && (p.AccessKeyID != "" || p.User != ""):
		return sdk.Errorf(codes.InvalidArgument, "give role alone: a role has no access keys; contain a user or key in a separate task")
	case p.AccessKeyID != "" && !accessKeyRE.MatchString(p.AccessKeyID):
		return sdk.Errorf(codes.InvalidArgument, "access_key_id %q is not an AWS access key id (16 to 128 upper-case letters and digits, e.g. AKIA…)", p.AccessKeyID)
	}
	if p.Role != "" {
		if p.DeactivateKeys != nil || p.DeleteLoginProfile {
			return sdk.Errorf(codes.InvalidArgument, "deactivate_keys and delete_login_profile apply to users; a role has neither keys nor a password")
		}
		if !p.revokeSessions() && !p.DenyAll {
			return sdk.Errorf(codes.InvalidArgument, "nothing to do for role %s: set revoke_sessions=true or deny_all=true", p.Role)
		}
	}
	if p.AccessKeyID != "" && p.DeactivateKeys != nil {
		return sdk.Errorf(codes.InvalidArgument, "deactivate_keys applies to user=…; with access_key_id only that key is deactivated")
	}
	return nil
}

func (p *ContainParams) revokeSessions() bool {
	if p.RevokeSessions != nil {
		return *p.RevokeSessions
	}
	return p.Role != ""
}

// containment is one aws-iam-contain task under way.
type containment struct {
	Clients
	creds   *pluginv1.AWSCredentials
	now     func() time.Time
	emit    sdk.Emitter
	journal *awsresponse.Journal
	p       ContainParams
	res     *ContainResult
	rec     *containRecord
	changed bool
}

// finish completes the result with the rollback record and the API calls,
// whether or not the containment got all the way.
func (c *containment) finish(err error) (any, error) {
	switch {
	case c.res.Outcome == OutcomeNotFound:
	case c.changed:
		c.res.Outcome = OutcomeContained
	case err == nil:
		c.res.Outcome = OutcomeAlreadyContained
	}
	rec, rerr := awsresponse.EncodeRecord(ContainName, c.res.Account, c.rec)
	if rerr != nil {
		return nil, sdk.Errorf(codes.Internal, "%v", rerr)
	}
	c.res.RollbackRecord = rec
	c.res.APICalls = c.journal.Calls()
	if err != nil {
		if !c.changed {
			return nil, err
		}
		return c.res, err
	}
	return c.res, nil
}

func (c *containment) notFound(detail string) error {
	c.res.Outcome, c.res.Detail = OutcomeNotFound, detail
	_ = c.emit.Log("info", detail)
	return nil
}

func (c *containment) note(s string) { c.res.Notes = append(c.res.Notes, s) }

// containKey finds the access key's owner in this account and deactivates
// the key, then applies the options to its user.
func (c *containment) containKey(ctx context.Context) error {
	id := c.p.AccessKeyID
	ownerAccount, err := c.keyAccount(ctx, id)
	if err != nil {
		return err
	}
	if ownerAccount != "" && ownerAccount != c.res.Account {
		return c.notFound(fmt.Sprintf("access key %s belongs to account %s, not %s", id, ownerAccount, c.res.Account))
	}
	if strings.HasPrefix(id, "ASIA") {
		if ownerAccount == c.res.Account {
			return sdk.Errorf(codes.FailedPrecondition, "access key %s is a temporary key of a role session in this account: temporary keys cannot be deactivated. "+
				"Find the role with aws-cloudtrail-lookup access_key_id=%s, then run %s role=ROLE revoke_sessions=true", id, id, ContainName)
		}
		return c.notFound(fmt.Sprintf("access key %s is a temporary key, and IAM in account %s does not know it", id, c.res.Account))
	}
	user, lastUsed, err := c.keyOwner(ctx, id)
	if err != nil {
		return err
	}
	if user == "" {
		if ownerAccount == c.res.Account {
			return sdk.Errorf(codes.FailedPrecondition, "access key %s belongs to account %s but to none of its IAM users: it is the root user's key "+
				"(deactivate it signed in as root), or it was deleted", id, c.res.Account)
		}
		return c.notFound(fmt.Sprintf("no IAM user of account %s owns access key %s", c.res.Account, id))
	}
	if c.p.User != "" {
		hint, err := parsePrincipal("user", c.p.User)
		if err != nil {
			return err
		}
		if hint.name != user {
			return sdk.Errorf(codes.FailedPrecondition, "access key %s belongs to user %s, not %s as the task says: check the finding, then run again with the right user or none", id, user, hint.name)
		}
	}
	c.res.User, c.rec.User = user, user
	keys, err := c.listKeys(ctx, user)
	if errors.Is(err, errNoSuchUser) {
		return sdk.Errorf(codes.Aborted, "user %s, owner of access key %s, disappeared while it was being contained (deleted meanwhile?): run the task again", user, id)
	}
	if err != nil {
		return err
	}
	var key *iamtypes.AccessKeyMetadata
	for i := range keys {
		if aws.ToString(keys[i].AccessKeyId) == id {
			key = &keys[i]
		}
	}
	if key == nil {
		return sdk.Errorf(codes.Aborted, "access key %s of user %s disappeared while it was being contained (deleted meanwhile?): run the task again", id, user)
	}
	change := KeyChange{AccessKeyID: id, User: user, StatusBefore: string(key.Status), StatusAfter: string(key.Status), LastUsed: lastUsed}
	if err := c.deactivate(ctx, &change); err != nil {
		return err
	}
	return c.userOptions(ctx, user)
}

// keyAccount asks STS which account owns the key. An error is not fatal:
// IAM is asked next.
func (c *containment) keyAccount(ctx context.Context, id string) (string, error) {
	out, err := c.STS.GetAccessKeyInfo(ctx, &sts.GetAccessKeyInfoInput{AccessKeyId: aws.String(id)})
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		c.note(fmt.Sprintf("sts:GetAccessKeyInfo failed (%v); the key was looked up in IAM instead", awsclient.APIError("sts:GetAccessKeyInfo", err)))
		return "", nil
	}
	c.res.OwnerAccount = aws.ToString(out.Account)
	return c.res.OwnerAccount, nil
}

// keyOwner returns the IAM user owning the key in this account, or "".
// GetAccessKeyLastUsed answers for the owning account only; when it is
// refused, the account's users are searched.
func (c *containment) keyOwner(ctx context.Context, id string) (string, *KeyLastUsed, error) {
	out, err := c.IAM.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: aws.String(id)})
	switch {
	case err == nil:
		var last *KeyLastUsed
		// IAM reports a key never used with no date and "N/A" elsewhere.
		if u := out.AccessKeyLastUsed; u != nil && u.LastUsedDate != nil {
			last = &KeyLastUsed{Time: u.LastUsedDate, Service: aws.ToString(u.ServiceName), Region: aws.ToString(u.Region)}
		}
		return aws.ToString(out.UserName), last, nil
	case awsclient.ErrorCode(err) == "NoSuchEntity":
		return "", nil, nil
	case ctx.Err() != nil:
		return "", nil, ctx.Err()
	}
	c.note(fmt.Sprintf("iam:GetAccessKeyLastUsed failed (%v); the account's users were searched instead", awsclient.APIError("iam:GetAccessKeyLastUsed", err)))
	pages := iam.NewListUsersPaginator(c.IAM, &iam.ListUsersInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", nil, awsclient.APIError("iam:ListUsers", err)
		}
		for _, u := range page.Users {
			keys, err := c.listKeys(ctx, aws.ToString(u.UserName))
			if errors.Is(err, errNoSuchUser) {
				continue // deleted since the listing
			}
			if err != nil {
				return "", nil, err
			}
			for _, k := range keys {
				if aws.ToString(k.AccessKeyId) == id {
					return aws.ToString(u.UserName), nil, nil
				}
			}
		}
	}
	return "", nil, nil
}

// errNoSuchUser is listKeys' answer for a user that does not exist.
var errNoSuchUser = errors.New("no such user")

func (c *containment) listKeys(ctx context.Context, user string) ([]iamtypes.AccessKeyMetadata, error) {
	var keys []iamtypes.AccessKeyMetadata
	pages := iam.NewListAccessKeysPaginator(c.IAM, &iam.ListAccessKeysInput{UserName: aws.String(user)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if awsclient.ErrorCode(err) == "NoSuchEntity" {
			return nil, errNoSuchUser
		}
		if err != nil {
			return nil, awsclient.APIError("iam:ListAccessKeys for user "+user, err)
		}
		keys = append(keys, page.AccessKeyMetadata...)
	}
	return keys, nil
}

// deactivate sets an active key Inactive and records it.
func (c *containment) deactivate(ctx context.Context, k *KeyChange) error {
	if k.StatusBefore == string(iamtypes.StatusTypeActive) {
		_, err := c.IAM.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(k.User), AccessKeyId: aws.String(k.AccessKeyID), Status: iamtypes.StatusTypeInactive})
		if err != nil {
			c.res.Keys = append(c.res.Keys, *k)
			return awsclient.APIError("iam:UpdateAccessKey "+k.AccessKeyID, err)
		}
		k.StatusAfter = string(iamtypes.StatusTypeInactive)
		c.changed = true
		c.rec.Keys = append(c.rec.Keys, recordedKey{ID: k.AccessKeyID, PreviousStatus: k.StatusBefore})
		_ = c.emit.Log("info", fmt.Sprintf("deactivated access key %s of user %s", k.AccessKeyID, k.User))
	}
	c.res.Keys = append(c.res.Keys, *k)
	return nil
}

// containUser deactivates the user's active keys and applies the options.
func (c *containment) containUser(ctx context.Context) error {
	ref, err := parsePrincipal("user", c.p.User)
	if err != nil {
		return err
	}
	if ref.account != "" && ref.account != c.res.Account {
		return c.notFound(fmt.Sprintf("user %s is in account %s, not %s", ref.arn, ref.account, c.res.Account))
	}
	keys, err := c.listKeys(ctx, ref.name)
	if errors.Is(err, errNoSuchUser) {
		return c.notFound(fmt.Sprintf("account %s has no IAM user %s", c.res.Account, ref.name))
	}
	if err != nil {
		return err
	}
	c.res.User, c.rec.User = ref.name, ref.name
	if c.p.DeactivateKeys == nil || *c.p.DeactivateKeys {
		for _, k := range keys {
			change := KeyChange{AccessKeyID: aws.ToString(k.AccessKeyId), User: ref.name, StatusBefore: string(k.Status), StatusAfter: string(k.Status)}
			if err := c.deactivate(ctx, &change); err != nil {
				return err
			}
		}
		if len(keys) == 0 {
			c.note("user " + ref.name + " has no access keys")
		}
	}
	return c.userOptions(ctx, ref.name)
}

// userOptions deletes the console password, denies everything and revokes
// sessions, as asked, in that order.
func (c *containment) userOptions(ctx context.Context, user string) error {
	if c.p.DeleteLoginProfile {
		if err := c.deleteLoginProfile(ctx, user); err != nil {
			return err
		}
	}
	if c.p.DenyAll {
		if err := c.attachDenyAll(ctx, "user", user); err != nil {
			return err
		}
	}
	if c.p.revokeSessions() {
		if err := c.revoke(ctx, "user", user); err != nil {
			return err
		}
		c.note("sessions the user made with sts:GetSessionToken or sts:GetFederationToken before the cut-off are denied; the user's long-term keys are not affected by that policy")
	}
	return nil
}

func (c *containment) deleteLoginProfile(ctx context.Context, user string) error {
	out, err := c.IAM.GetLoginProfile(ctx, &iam.GetLoginProfileInput{UserName: aws.String(user)})
	if awsclient.ErrorCode(err) == "NoSuchEntity" {
		c.res.LoginProfile = &LoginProfileChange{}
		return nil
	}
	if err != nil {
		return awsclient.APIError("iam:GetLoginProfile for user "+user, err)
	}
	lp := &LoginProfileChange{Existed: true}
	if out.LoginProfile != nil {
		lp.Created, lp.PasswordResetRequired = out.LoginProfile.CreateDate, out.LoginProfile.PasswordResetRequired
	}
	c.res.LoginProfile = lp
	if _, err := c.IAM.DeleteLoginProfile(ctx, &iam.DeleteLoginProfileInput{UserName: aws.String(user)}); err != nil {
		return awsclient.APIError("iam:DeleteLoginProfile for user "+user, err)
	}
	lp.Deleted, c.changed, c.rec.LoginProfileDeleted = true, true, true
	c.note("the console password of user " + user + " was deleted: rollback cannot restore it; give the user a new one (aws iam create-login-profile) once the incident is closed")
	return nil
}

// revoke puts AWSRevokeOlderSessions with a cut-off of now.
func (c *containment) revoke(ctx context.Context, kind, name string) error {
	cutoff := revocationCutoff(c.now())
	if err := c.putInline(ctx, kind, name, RevokeSessionsPolicy, revokeDocument(cutoff)); err != nil {
		return err
	}
	c.res.SessionsRevokedBefore = &cutoff
	return nil
}

// putInline puts an inline policy on a user or role, keeping the document
// it replaces for rollback. An identical document already there is left
// alone and not recorded, so rollback leaves it too.
func (c *containment) putInline(ctx context.Context, kind, principal, name, doc string) error {
	var previous *string
	var getErr error
	if kind == "user" {
		out, err := c.IAM.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(name)})
		if err == nil {
			previous = out.PolicyDocument
		}
		getErr = err
	} else {
		out, err := c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(name)})
		if err == nil {
			previous = out.PolicyDocument
		}
		getErr = err
	}
	if getErr != nil && awsclient.ErrorCode(getErr) != "NoSuchEntity" {
		return awsclient.APIError(fmt.Sprintf("iam:Get%sPolicy %s of %s %s", titleKind(kind), name, kind, principal), getErr)
	}
	change := PolicyChange{PrincipalType: kind, Principal: principal, PolicyName: name, Change: "added"}
	if previous != nil {
		prev, err := decodePolicyDocument(*previous)
		if err != nil {
			return err
		}
		if samePolicy(prev, doc) {
			change.Change = "unchanged"
			c.res.Policies = append(c.res.Policies, change)
			return nil
		}
		previous, change.Change = &prev, "replaced"
	}
	var err error
	if kind == "user" {
		_, err = c.IAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
	} else {
		_, err = c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
	}
	if err != nil {
		return awsclient.APIError(fmt.Sprintf("iam:Put%sPolicy %s on %s %s", titleKind(kind), name, kind, principal), err)
	}
	c.changed = true
	c.rec.Policies = append(c.rec.Policies, recordedPolicy{Name: name, Document: doc, Previous: previous})
	c.res.Policies = append(c.res.Policies, change)
	_ = c.emit.Log("info", fmt.Sprintf("put inline policy %s on %s %s (%s)", name, kind, principal, change.Change))
	return nil
}

// attachDenyAll attaches AWSDenyAll to a user or role. A policy already
// attached is left alone and not recorded, so rollback leaves it too.
func (c *containment) attachDenyAll(ctx context.Context, kind, principal string) error {
	arn := denyAllARN(c.creds.GetRoleArn())
	attached, err := c.attachedPolicies(ctx, kind, principal)
	if err != nil {
		return err
	}
	change := AttachmentChange{PrincipalType: kind, Principal: principal, PolicyARN: arn, Change: "attached"}
	if attached[arn] {
		change.Change = "unchanged"
		c.res.AttachedPolicies = append(c.res.AttachedPolicies, change)
		return nil
	}
	if kind == "user" {
		_, err = c.IAM.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(principal), PolicyArn: aws.String(arn)})
	} else {
		_, err = c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(principal), PolicyArn: aws.String(arn)})
	}
	if err != nil {
		return awsclient.APIError(fmt.Sprintf("iam:Attach%sPolicy %s to %s %s", titleKind(kind), DenyAllPolicy, kind, principal), err)
	}
	c.changed = true
	c.rec.Attached = append(c.rec.Attached, arn)
	c.res.AttachedPolicies = append(c.res.AttachedPolicies, change)
	_ = c.emit.Log("info", fmt.Sprintf("attached %s to %s %s", DenyAllPolicy, kind, principal))
	return nil
}

// attachedPolicies lists the ARNs of the managed policies attached to a
// user or role.
func (c *containment) attachedPolicies(ctx context.Context, kind, principal string) (map[string]bool, error) {
	arns := map[string]bool{}
	if kind == "user" {
		pages := iam.NewListAttachedUserPoliciesPaginator(c.IAM, &iam.ListAttachedUserPoliciesInput{UserName: aws.String(principal)})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, awsclient.APIError("iam:ListAttachedUserPolicies for user "+principal, err)
			}
			for _, p := range page.AttachedPolicies {
				arns[aws.ToString(p.PolicyArn)] = true
			}
		}
		return arns, nil
	}
	pages := iam.NewListAttachedRolePoliciesPaginator(c.IAM, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(principal)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, awsclient.APIError("iam:ListAttachedRolePolicies for role "+principal, err)
		}
		for _, p := range page.AttachedPolicies {
			arns[aws.ToString(p.PolicyArn)] = true
		}
	}
	return arns, nil
}

func titleKind(kind string) string {
	if kind == "user" {
		return "User"
	}
	return "Role"
}

// containRole revokes a role's sessions and optionally denies it
// everything.
func (c *containment) containRole(ctx context.Context) error {
	ref, err := parsePrincipal("role", c.p.Role)
	if err != nil {
		return err
	}
	if ref.account != "" && ref.account != c.res.Account {
		return c.notFound(fmt.Sprintf("role %s is in account %s, not %s", ref.arn, ref.account, c.res.Account))
	}
	// Security-critical: the role this task acts through must stay usable,
	// or the containment would cut off the response (and its rollback).
	if own := principalARNRE.FindStringSubmatch(c.creds.GetRoleArn()); own != nil && own[1] == c.res.Account && own[4] == ref.name {
		return sdk.Errorf(codes.PermissionDenied, "refusing to contain role %s: it is the role Firebreak acts through in account %s, and revoking it would cut off the response", ref.name, c.res.Account)
	}
	out, err := c.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(ref.name)})
	if awsclient.ErrorCode(err) == "NoSuchEntity" {
		return c.notFound(fmt.Sprintf("account %s has no IAM role %s", c.res.Account, ref.name))
	}
	if err != nil {
		return awsclient.APIError("iam:GetRole "+ref.name, err)
	}
	role := out.Role
	if ref.arn != "" && aws.ToString(role.Arn) != ref.arn {
		return c.notFound(fmt.Sprintf("role %s of account %s has ARN %s, not %s", ref.name, c.res.Account, aws.ToString(role.Arn), ref.arn))
	}
	// Security-critical: only AWS may change a service-linked role, and a
	// deny on it would break the service that owns it.
	if strings.HasPrefix(aws.ToString(role.Path), "/aws-service-role/") {
		return sdk.Errorf(codes.FailedPrecondition, "refusing to contain role %s: it is a service-linked role (path %s), which only AWS can change. "+
			"Contain what uses the service instead (the instance, function or key behind the activity)", ref.name, aws.ToString(role.Path))
	}
	c.res.Role, c.res.RoleARN, c.rec.Role = ref.name, aws.ToString(role.Arn), ref.name
	if c.p.DenyAll {
		if err := c.attachDenyAll(ctx, "role", ref.name); err != nil {
			return err
		}
	}
	if c.p.revokeSessions() {
		if err := c.revoke(ctx, "role", ref.name); err != nil {
			return err
		}
		c.note("sessions of role " + ref.name + " issued before the cut-off are denied; new sessions (instances and services renewing their credentials) work")
	}
	return nil
}
