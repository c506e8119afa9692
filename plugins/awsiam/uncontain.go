package awsiam

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Outcomes of the uncontain actions.
const (
	// OutcomeRestored means everything the containment changed is undone.
	OutcomeRestored = "restored"
	// OutcomeNothingToUndo means the containment changed nothing here, or
	// what it changed is already undone.
	OutcomeNothingToUndo = "nothing_to_undo"
	// OutcomeOtherAccount means the record is another account's; nothing
	// was done (an organisation-wide rollback hands it to every account).
	OutcomeOtherAccount = "record_for_other_account"
	// OutcomePartial means some changes were undone and the task failed
	// on others; the error says which.
	OutcomePartial = "partially_restored"
)

// UncontainParams are aws-iam-uncontain's parameters.
type UncontainParams struct {
	awsresponse.Target
	// RollbackRecord is the rollback_record output of aws-iam-contain.
	RollbackRecord string `json:"rollback_record"`
}

// UncontainResult is aws-iam-uncontain's result.
type UncontainResult struct {
	// Account is the account the task acted in.
	Account string `json:"account"`
	// Outcome is restored, nothing_to_undo, record_for_other_account or
	// partially_restored.
	Outcome string `json:"outcome"`
	// RecordAccount is the account the rollback record is for.
	RecordAccount string `json:"record_account"`
	// User and Role are the principal the record contained; they are
	// aws-iam-contain's parameters to contain it again.
	User string `json:"user,omitempty"`
	Role string `json:"role,omitempty"`
	// Keys are the keys the containment deactivated and what happened to
	// them now: reactivated, already_active or missing.
	Keys []KeyRestore `json:"keys"`
	// Policies are the inline policies the containment put and what
	// happened to them now: removed, restored_previous, already_gone or
	// changed_since (left alone).
	Policies []PolicyRestore `json:"policies"`
	// AttachedPolicies are the managed policies the containment attached
	// and what happened to them now: detached or already_gone.
	AttachedPolicies []AttachmentRestore `json:"attached_policies"`
	// Notes are things a responder should know, such as a console
	// password that cannot come back.
	Notes []string `json:"notes,omitempty"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// KeyRestore is what rollback did with one access key.
type KeyRestore struct {
	AccessKeyID string `json:"access_key_id"`
	User        string `json:"user"`
	Result      string `json:"result"`
}

// PolicyRestore is what rollback did with one inline policy.
type PolicyRestore struct {
	PrincipalType string `json:"principal_type"`
	Principal     string `json:"principal"`
	PolicyName    string `json:"policy_name"`
	Result        string `json:"result"`
}

// AttachmentRestore is what rollback did with one attached managed policy.
type AttachmentRestore struct {
	PrincipalType string `json:"principal_type"`
	Principal     string `json:"principal"`
	PolicyARN     string `json:"policy_arn"`
	Result        string `json:"result"`
}

// Uncontain is the aws-iam-uncontain action.
type Uncontain struct{ cfg Config }

// NewUncontain returns aws-iam-uncontain.
func NewUncontain(cfg Config) (*Uncontain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Uncontain{cfg: cfg}, nil
}

// Describe implements sdk.Action. Undoing a containment re-enables what an
// attacker may still hold, so it is as destructive as the containment and
// needs the same approval.
func (a *Uncontain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    UncontainName,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Undoes an aws-iam-contain: reactivates the keys it deactivated, detaches the AWSDenyAll it attached and removes (or puts back) exactly the inline policies it added; " +
			"a deleted console password cannot come back",
		Destructive:    true,
		RollbackAction: ContainName,
		Roles:          awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "rollback_record", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true,
				Description: "the rollback_record output of the aws-iam-contain task to undo; a record of another account does nothing"},
		}, awsresponse.TargetParams()...),
	}, nil
}

// Execute implements sdk.Action.
func (a *Uncontain) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p UncontainParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, _, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	var rec containRecord
	mine, err := awsresponse.DecodeRecord(p.RollbackRecord, ContainName, account, &rec)
	if err != nil {
		return nil, err
	}
	res := &UncontainResult{Account: account, RecordAccount: rec.Account, User: rec.User, Role: rec.Role, Keys: []KeyRestore{}, Policies: []PolicyRestore{}, AttachedPolicies: []AttachmentRestore{}}
	if !mine {
		res.Outcome, res.APICalls = OutcomeOtherAccount, []awsresponse.Call{}
		return res, nil
	}
	if err := rec.check(); err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	u := &uncontainment{Clients: a.cfg.NewClients(cfg, req.AWS), emit: emit, rec: &rec, res: res}
	err = u.run(ctx)
	res.APICalls = journal.Calls()
	switch {
	case err != nil && !u.changed:
		return nil, err
	case err != nil:
		res.Outcome = OutcomePartial
		return res, err
	case u.changed:
		res.Outcome = OutcomeRestored
	default:
		res.Outcome = OutcomeNothingToUndo
	}
	return res, nil
}

// check refuses a record whose principal names are not IAM names: the
// record arrives as a parameter and is not trusted further than that.
func (r *containRecord) check() error {
	if r.User != "" && r.Role != "" {
		return sdk.Errorf(codes.InvalidArgument, "rollback_record names both a user and a role; aws-iam-contain never writes that")
	}
	for _, n := range []string{r.User, r.Role} {
		if n != "" && !nameRE.MatchString(n) {
			return sdk.Errorf(codes.InvalidArgument, "rollback_record names %q, which is not an IAM name", n)
		}
	}
	if r.User == "" && r.Role == "" && (len(r.Keys) > 0 || len(r.Policies) > 0 || len(r.Attached) > 0) {
		return sdk.Errorf(codes.InvalidArgument, "rollback_record lists changes but no user or role")
	}
	if r.Role != "" && len(r.Keys) > 0 {
		return sdk.Errorf(codes.InvalidArgument, "rollback_record lists access keys of a role")
	}
	for _, p := range r.Policies {
		if p.Name != LegacyDenyAllPolicy && p.Name != RevokeSessionsPolicy {
			return sdk.Errorf(codes.InvalidArgument, "rollback_record lists inline policy %q, which aws-iam-contain never puts", p.Name)
		}
	}
	// Security-critical: the record is a parameter; rollback detaches
	// AWSDenyAll and nothing else, whatever the record says.
	for _, arn := range r.Attached {
		if !denyAllARNRE.MatchString(arn) {
			return sdk.Errorf(codes.InvalidArgument, "rollback_record lists attached policy %q; aws-iam-contain attaches only %s", arn, DenyAllPolicy)
		}
	}
	return nil
}

// uncontainment is one aws-iam-uncontain task under way.
type uncontainment struct {
	Clients
	emit     sdk.Emitter
	rec      *containRecord
	res      *UncontainResult
	changed  bool
	problems []string
}

func (u *uncontainment) run(ctx context.Context) error {
	if err := u.reactivateKeys(ctx); err != nil {
		return err
	}
	kind, principal := "user", u.rec.User
	if u.rec.Role != "" {
		kind, principal = "role", u.rec.Role
	}
	for _, p := range u.rec.Policies {
		if err := u.undoPolicy(ctx, kind, principal, p); err != nil {
			return err
		}
	}
	for _, arn := range u.rec.Attached {
		if err := u.detach(ctx, kind, principal, arn); err != nil {
			return err
		}
	}
	if u.rec.LoginProfileDeleted {
		u.res.Notes = append(u.res.Notes, "the containment deleted the console password of user "+u.rec.User+
			"; it cannot be restored: create a new one (aws iam create-login-profile) if the user needs the console")
	}
	if len(u.problems) > 0 {
		return sdk.Errorf(codes.FailedPrecondition, "not everything was undone: %s", strings.Join(u.problems, "; "))
	}
	return nil
}

func (u *uncontainment) reactivateKeys(ctx context.Context) error {
	if len(u.rec.Keys) == 0 {
		return nil
	}
	current := map[string]iamtypes.StatusType{}
	pages := iam.NewListAccessKeysPaginator(u.IAM, &iam.ListAccessKeysInput{UserName: aws.String(u.rec.User)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if awsclient.ErrorCode(err) == "NoSuchEntity" {
			break
		}
		if err != nil {
			return awsclient.APIError("iam:ListAccessKeys for user "+u.rec.User, err)
		}
		for _, k := range page.AccessKeyMetadata {
			current[aws.ToString(k.AccessKeyId)] = k.Status
		}
	}
	for _, k := range u.rec.Keys {
		r := KeyRestore{AccessKeyID: k.ID, User: u.rec.User}
		status, ok := current[k.ID]
		switch {
		case !ok:
			r.Result = "missing"
			u.problems = append(u.problems, fmt.Sprintf("access key %s of user %s no longer exists", k.ID, u.rec.User))
		case k.PreviousStatus != string(iamtypes.StatusTypeActive), status == iamtypes.StatusTypeActive:
			r.Result = "already_active"
		default:
			_, err := u.IAM.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(u.rec.User), AccessKeyId: aws.String(k.ID), Status: iamtypes.StatusTypeActive})
			if err != nil {
				return awsclient.APIError("iam:UpdateAccessKey "+k.ID, err)
			}
			r.Result, u.changed = "reactivated", true
			_ = u.emit.Log("info", fmt.Sprintf("reactivated access key %s of user %s", k.ID, u.rec.User))
		}
		u.res.Keys = append(u.res.Keys, r)
	}
	return nil
}

// undoPolicy removes an inline policy the containment added, or puts back
// the one it replaced, unless someone changed it since.
func (u *uncontainment) undoPolicy(ctx context.Context, kind, principal string, p recordedPolicy) error {
	r := PolicyRestore{PrincipalType: kind, Principal: principal, PolicyName: p.Name}
	var doc *string
	var err error
	if kind == "user" {
		var out *iam.GetUserPolicyOutput
		if out, err = u.IAM.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(p.Name)}); err == nil {
			doc = out.PolicyDocument
		}
	} else {
		var out *iam.GetRolePolicyOutput
		if out, err = u.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(p.Name)}); err == nil {
			doc = out.PolicyDocument
		}
	}
	switch {
	case awsclient.ErrorCode(err) == "NoSuchEntity":
		r.Result = "already_gone"
		u.res.Policies = append(u.res.Policies, r)
		return nil
	case err != nil:
		return awsclient.APIError(fmt.Sprintf("iam:Get%sPolicy %s of %s %s", titleKind(kind), p.Name, kind, principal), err)
	}
	current, err := decodePolicyDocument(aws.ToString(doc))
	if err != nil {
		return err
	}
	if !samePolicy(current, p.Document) {
		// Someone put a different document since: it is theirs now.
		r.Result = "changed_since"
		u.res.Policies = append(u.res.Policies, r)
		u.problems = append(u.problems, fmt.Sprintf("inline policy %s of %s %s changed after the containment and was left alone: remove it by hand if it should go", p.Name, kind, principal))
		return nil
	}
	switch {
	case p.Previous != nil && kind == "user":
		_, err = u.IAM.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(p.Name), PolicyDocument: p.Previous})
		r.Result = "restored_previous"
	case p.Previous != nil:
		_, err = u.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(p.Name), PolicyDocument: p.Previous})
		r.Result = "restored_previous"
	case kind == "user":
		_, err = u.IAM.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(principal), PolicyName: aws.String(p.Name)})
		r.Result = "removed"
	default:
		_, err = u.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(principal), PolicyName: aws.String(p.Name)})
		r.Result = "removed"
	}
	if awsclient.ErrorCode(err) == "NoSuchEntity" {
		r.Result = "already_gone"
		err = nil
	}
	if err != nil {
		return awsclient.APIError(fmt.Sprintf("undoing inline policy %s of %s %s", p.Name, kind, principal), err)
	}
	if r.Result != "already_gone" {
		u.changed = true
		_ = u.emit.Log("info", fmt.Sprintf("inline policy %s of %s %s: %s", p.Name, kind, principal, r.Result))
	}
	u.res.Policies = append(u.res.Policies, r)
	return nil
}

// detach removes a managed policy the containment attached. One detached
// since (or a principal deleted since) is reported as already gone.
func (u *uncontainment) detach(ctx context.Context, kind, principal, arn string) error {
	r := AttachmentRestore{PrincipalType: kind, Principal: principal, PolicyARN: arn, Result: "detached"}
	var err error
	if kind == "user" {
		_, err = u.IAM.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: aws.String(principal), PolicyArn: aws.String(arn)})
	} else {
		_, err = u.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(principal), PolicyArn: aws.String(arn)})
	}
	switch {
	case awsclient.ErrorCode(err) == "NoSuchEntity":
		r.Result = "already_gone"
	case err != nil:
		return awsclient.APIError(fmt.Sprintf("iam:Detach%sPolicy %s from %s %s", titleKind(kind), DenyAllPolicy, kind, principal), err)
	default:
		u.changed = true
		_ = u.emit.Log("info", fmt.Sprintf("detached %s from %s %s", DenyAllPolicy, kind, principal))
	}
	u.res.AttachedPolicies = append(u.res.AttachedPolicies, r)
	return nil
}
