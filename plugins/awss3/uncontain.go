package awss3

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Outcomes of aws-s3-uncontain.
const (
	OutcomeRestored      = "restored"
	OutcomeNothingToUndo = "nothing_to_undo"
	OutcomeOtherAccount  = "record_for_other_account"
	OutcomePartial       = "partially_restored"
)

// What rollback did with the public access block and the policy.
const (
	// Restored means the prior configuration or policy is back.
	Restored = "restored"
	// Deleted means there was none before, and the one containment put is
	// gone.
	Deleted = "deleted"
	// ChangedSince means someone changed it after containment; it was left
	// alone.
	ChangedSince = "changed_since"
	// Untouched means containment did not change it.
	Untouched = "not_changed_by_containment"
)

// UncontainParams are aws-s3-uncontain's parameters.
type UncontainParams struct {
	awsresponse.Target
	// Bucket is the contained bucket; it must be the record's.
	Bucket string `json:"bucket"`
	// RollbackRecord is the rollback_record output of aws-s3-contain.
	RollbackRecord string `json:"rollback_record"`
}

// UncontainResult is aws-s3-uncontain's result.
type UncontainResult struct {
	Account string `json:"account"`
	Bucket  string `json:"bucket"`
	Region  string `json:"region,omitempty"`
	// Outcome is restored, nothing_to_undo, record_for_other_account or
	// partially_restored.
	Outcome string `json:"outcome"`
	// PublicAccessBlock and Policy say what happened to each: restored,
	// deleted, changed_since or not_changed_by_containment.
	PublicAccessBlock string `json:"public_access_block"`
	Policy            string `json:"policy"`
	// ACLChangedSince is true when the ACL differs from the one recorded
	// at containment (which did not change it); it is left as it is.
	ACLChangedSince bool `json:"acl_changed_since"`
	// Notes are things a responder should know about the result.
	Notes []string `json:"notes,omitempty"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// Uncontain is the aws-s3-uncontain action.
type Uncontain struct{ cfg Config }

// NewUncontain returns aws-s3-uncontain.
func NewUncontain(cfg Config) (*Uncontain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Uncontain{cfg: cfg}, nil
}

// Describe implements sdk.Action. Reopening a bucket is as sensitive as
// closing it, so it is destructive too.
func (a *Uncontain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    UncontainName,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Undoes an aws-s3-contain: puts back the bucket's prior Block Public Access settings and bucket policy exactly, " +
			"leaving alone anything changed since",
		Destructive:    true,
		RollbackAction: ContainName,
		Roles:          awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "bucket", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the contained bucket (must match the record)"},
			{Name: "rollback_record", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the rollback_record output of the aws-s3-contain task to undo"},
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
	res := &UncontainResult{Account: account, Bucket: p.Bucket, Region: rec.Region, PublicAccessBlock: Untouched, Policy: Untouched, APICalls: []awsresponse.Call{}}
	if !mine {
		res.Outcome = OutcomeOtherAccount
		return res, nil
	}
	if rec.Bucket != p.Bucket {
		return nil, sdk.Errorf(codes.InvalidArgument, "the rollback record is for bucket %s, not %s", rec.Bucket, p.Bucket)
	}
	if !awsresponse.ValidRegion(rec.Region) {
		return nil, sdk.Errorf(codes.InvalidArgument, "the rollback record names no valid region (%q)", rec.Region)
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	c := a.cfg.NewClient(cfg, req.AWS, rec.Region)
	var problems []string
	changed := false
	err = func() error {
		// Block Public Access goes first: a prior public policy cannot be
		// put back while BlockPublicPolicy is on.
		if rec.PublicAccessBlockPut {
			current, err := getPublicAccessBlock(ctx, c, p.Bucket)
			if err != nil {
				return err
			}
			switch {
			case current == nil || *current != blockAll:
				res.PublicAccessBlock = ChangedSince
				problems = append(problems, "the Block Public Access settings changed after containment and were left as they are")
			case rec.PublicAccessBlockBefore == nil:
				if _, err := c.DeletePublicAccessBlock(ctx, &s3.DeletePublicAccessBlockInput{Bucket: aws.String(p.Bucket)}); err != nil {
					return awsclient.APIError("s3:DeletePublicAccessBlock "+p.Bucket, err)
				}
				res.PublicAccessBlock, changed = Deleted, true
			default:
				if _, err := c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(p.Bucket),
					PublicAccessBlockConfiguration: rec.PublicAccessBlockBefore.sdk()}); err != nil {
					return awsclient.APIError("s3:PutPublicAccessBlock "+p.Bucket, err)
				}
				res.PublicAccessBlock, changed = Restored, true
			}
		}
		if rec.PolicyPut != nil {
			current, err := getPolicy(ctx, c, p.Bucket)
			if err != nil {
				return err
			}
			switch {
			case !samePolicy(current, rec.PolicyPut):
				res.Policy = ChangedSince
				problems = append(problems, "the bucket policy changed after containment and was left as it is; the prior policy is in the rollback record")
			case rec.PolicyBefore == nil:
				if _, err := c.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(p.Bucket)}); err != nil {
					return awsclient.APIError("s3:DeleteBucketPolicy "+p.Bucket, err)
				}
				res.Policy, changed = Deleted, true
			default:
				if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(p.Bucket), Policy: rec.PolicyBefore}); err != nil {
					return awsclient.APIError("s3:PutBucketPolicy "+p.Bucket+" (the prior policy)", err)
				}
				res.Policy, changed = Restored, true
			}
		}
		if changed {
			acl, err := getACL(ctx, c, p.Bucket)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(acl, rec.ACLBefore) {
				res.ACLChangedSince = true
				res.Notes = append(res.Notes, "the bucket's ACL differs from the one recorded at containment, which did not change it; it was left as it is")
			}
			_ = emit.Log("info", fmt.Sprintf("bucket %s: public access block %s, policy %s", p.Bucket, res.PublicAccessBlock, res.Policy))
		}
		if len(problems) > 0 {
			return sdk.Errorf(codes.FailedPrecondition, "not everything was undone: %s", strings.Join(problems, "; "))
		}
		return nil
	}()
	res.APICalls = journal.Calls()
	switch {
	case err != nil && !changed:
		return nil, err
	case err != nil:
		res.Outcome = OutcomePartial
		return res, err
	case changed:
		res.Outcome = OutcomeRestored
	default:
		res.Outcome = OutcomeNothingToUndo
	}
	return res, nil
}
