package awss3

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// The actions' names.
const (
	ContainName   = "aws-s3-contain"
	UncontainName = "aws-s3-uncontain"
)

// Outcomes of aws-s3-contain.
const (
	OutcomeContained        = "contained"
	OutcomeAlreadyContained = "already_contained"
)

// ContainParams are aws-s3-contain's parameters.
type ContainParams struct {
	awsresponse.Target
	// Bucket is the bucket to contain.
	Bucket string `json:"bucket"`
	// AllowedPrincipals keep access to the bucket: IAM principal ARNs
	// (wildcards allowed) or 12-digit accounts. When given, a deny for
	// everyone else is merged into the bucket policy.
	AllowedPrincipals []string `json:"allowed_principals,omitempty"`
}

// ContainResult is aws-s3-contain's result.
type ContainResult struct {
	Account string `json:"account"`
	Bucket  string `json:"bucket"`
	// Region is the bucket's region.
	Region string `json:"region"`
	// Outcome is contained or already_contained.
	Outcome string `json:"outcome"`
	// Before is the bucket's access configuration before containment.
	Before BucketAccess `json:"before"`
	// PublicAccessBlock is the configuration in place after.
	PublicAccessBlock PublicAccessBlock `json:"public_access_block"`
	// PolicyChanged is true when the deny statement was merged into the
	// bucket policy.
	PolicyChanged bool `json:"policy_changed"`
	// AllowedPrincipals are the ARNs and accounts the deny spares: those
	// asked for and the responder role, which must keep access for the
	// rollback.
	AllowedPrincipals []string `json:"allowed_principals"`
	// Notes are things a responder should know about the result.
	Notes []string `json:"notes,omitempty"`
	// RollbackRecord is aws-s3-uncontain's rollback_record parameter.
	RollbackRecord string `json:"rollback_record"`
	// APICalls lists every AWS API call the task made.
	APICalls []awsresponse.Call `json:"api_calls"`
}

// Contain is the aws-s3-contain action.
type Contain struct{ cfg Config }

// NewContain returns aws-s3-contain.
func NewContain(cfg Config) (*Contain, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Contain{cfg: cfg}, nil
}

// Describe implements sdk.Action.
func (a *Contain) Describe(context.Context) (*pluginv1.ActionDescription, error) {
	return &pluginv1.ActionDescription{
		Name:    ContainName,
		Version: awsresponse.Version,
		Domain:  pluginv1.Domain_DOMAIN_SERVICE,
		Description: "Blocks public access to an S3 bucket (all four Block Public Access settings), keeping its prior policy, ACL and settings " +
			"as the rollback record; optionally denies everyone but listed principals in the bucket policy",
		Destructive:    true,
		RollbackAction: UncontainName,
		Roles:          awsresponse.Roles,
		Params: append([]*pluginv1.ParamSpec{
			{Name: "bucket", Type: pluginv1.ParamType_PARAM_TYPE_STRING, Required: true, Description: "the bucket to contain"},
			{Name: "allowed_principals", Type: pluginv1.ParamType_PARAM_TYPE_STRING_LIST, DefaultJson: "[]",
				Description: "IAM principal ARNs (wildcards allowed) or 12-digit accounts that keep access; when given, a deny for everyone else " +
					"(statement " + ContainSid + ", AWS service principals included) is merged into the bucket policy; the responder role always keeps access"},
		}, awsresponse.TargetParams()...),
	}, nil
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Execute implements sdk.Action.
func (a *Contain) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p ContainParams
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, region, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	if !bucketRE.MatchString(p.Bucket) {
		return nil, sdk.Errorf(codes.InvalidArgument, "bucket %q is not an S3 bucket name", p.Bucket)
	}
	arns, accounts, err := splitPrincipals(p.AllowedPrincipals)
	if err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	res := &ContainResult{Account: account, Bucket: p.Bucket, AllowedPrincipals: []string{}}
	rec := &containRecord{Bucket: p.Bucket}
	changed := false
	err = func() error {
		bucketAt, err := bucketRegion(ctx, a.cfg.NewClient(cfg, req.AWS, region), p.Bucket, account)
		if err != nil {
			return err
		}
		res.Region, rec.Region = bucketAt, bucketAt
		c := a.cfg.NewClient(cfg, req.AWS, bucketAt)
		// The prior state is read in full before anything changes: it is
		// the rollback record.
		if res.Before.Policy, err = getPolicy(ctx, c, p.Bucket); err != nil {
			return err
		}
		if res.Before.ACL, err = getACL(ctx, c, p.Bucket); err != nil {
			return err
		}
		if res.Before.PublicAccessBlock, err = getPublicAccessBlock(ctx, c, p.Bucket); err != nil {
			return err
		}
		res.Before.PublicACL = res.Before.ACL.public()
		rec.PolicyBefore, rec.ACLBefore, rec.PublicAccessBlockBefore = res.Before.Policy, res.Before.ACL, res.Before.PublicAccessBlock

		// The deny goes in first: it only narrows access, and S3 refuses a
		// policy with a public statement once BlockPublicPolicy is on.
		var policyErr error
		if len(arns)+len(accounts) > 0 {
			// Security-critical for the rollback: the responder role keeps
			// access, or nothing but the account root could undo this.
			if own := req.AWS.GetRoleArn(); own != "" && !slices.Contains(arns, own) {
				arns = append(arns, own)
			}
			res.AllowedPrincipals = append(slices.Clone(arns), accounts...)
			merged, err := mergePolicy(res.Before.Policy, denyStatement(p.Bucket, arns, accounts))
			if err != nil {
				return err
			}
			if samePolicy(&merged, res.Before.Policy) {
				res.Notes = append(res.Notes, "the bucket policy already held the same "+ContainSid+" statement")
			} else if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(p.Bucket), Policy: aws.String(merged)}); err != nil {
				// Blocking public access still goes ahead; the failure is
				// reported with the result.
				policyErr = awsclient.APIError("s3:PutBucketPolicy "+p.Bucket, err)
			} else {
				res.PolicyChanged, rec.PolicyPut, changed = true, &merged, true
				_ = emit.Log("info", fmt.Sprintf("merged statement %s into the policy of bucket %s", ContainSid, p.Bucket))
			}
		}
		if before := res.Before.PublicAccessBlock; before == nil || *before != blockAll {
			if _, err := c.PutPublicAccessBlock(ctx, &s3.PutPublicAccessBlockInput{Bucket: aws.String(p.Bucket), PublicAccessBlockConfiguration: blockAll.sdk()}); err != nil {
				return awsclient.APIError("s3:PutPublicAccessBlock "+p.Bucket, err)
			}
			rec.PublicAccessBlockPut, changed = true, true
			_ = emit.Log("info", "blocked public access to bucket "+p.Bucket)
		}
		res.PublicAccessBlock = blockAll
		if res.Before.PublicACL {
			res.Notes = append(res.Notes, "the bucket's ACL grants public access; IgnorePublicAcls now makes those grants void, and the ACL itself is unchanged")
		}
		return policyErr
	}()
	res.Outcome = OutcomeAlreadyContained
	if changed {
		res.Outcome = OutcomeContained
	}
	record, rerr := awsresponse.EncodeRecord(ContainName, account, rec)
	if rerr != nil {
		return nil, sdk.Errorf(codes.Internal, "%v", rerr)
	}
	res.RollbackRecord = record
	res.APICalls = journal.Calls()
	if err != nil && !changed {
		return nil, err
	}
	return res, err
}

// splitPrincipals checks allowed_principals and splits them into ARNs and
// accounts.
func splitPrincipals(list []string) (arns, accounts []string, err error) {
	for _, s := range list {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case accountIDRE.MatchString(s):
			accounts = append(accounts, s)
		case principalARNRE.MatchString(s):
			arns = append(arns, s)
		default:
			return nil, nil, sdk.Errorf(codes.InvalidArgument, "allowed principal %q is neither an IAM principal ARN (arn:aws:iam::ACCOUNT:role/NAME, user/NAME or root) nor a 12-digit account", s)
		}
	}
	slices.Sort(arns)
	slices.Sort(accounts)
	return slices.Compact(arns), slices.Compact(accounts), nil
}

// MarshalJSON keeps nil lists out of the rollback record's ACL.
func (a ACL) MarshalJSON() ([]byte, error) {
	type plain ACL
	if a.Grants == nil {
		a.Grants = []Grant{}
	}
	return json.Marshal(plain(a))
}
