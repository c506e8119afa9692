package awss3

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// ContainSid is the Sid of the deny statement aws-s3-contain merges into
// the bucket policy.
const ContainSid = "FirebreakContain"

// PublicAccessBlock is a bucket's S3 Block Public Access configuration.
type PublicAccessBlock struct {
	BlockPublicAcls       bool `json:"block_public_acls"`
	IgnorePublicAcls      bool `json:"ignore_public_acls"`
	BlockPublicPolicy     bool `json:"block_public_policy"`
	RestrictPublicBuckets bool `json:"restrict_public_buckets"`
}

// blockAll is the configuration containment puts: all four on.
var blockAll = PublicAccessBlock{true, true, true, true}

func (p PublicAccessBlock) sdk() *s3types.PublicAccessBlockConfiguration {
	return &s3types.PublicAccessBlockConfiguration{BlockPublicAcls: aws.Bool(p.BlockPublicAcls), IgnorePublicAcls: aws.Bool(p.IgnorePublicAcls),
		BlockPublicPolicy: aws.Bool(p.BlockPublicPolicy), RestrictPublicBuckets: aws.Bool(p.RestrictPublicBuckets)}
}

// ACL is a bucket's access control list.
type ACL struct {
	// Owner is the owner's canonical user id.
	Owner  string  `json:"owner"`
	Grants []Grant `json:"grants"`
}

// Grant is one grant of an ACL.
type Grant struct {
	// GranteeType is CanonicalUser, AmazonCustomerByEmail or Group.
	GranteeType string `json:"grantee_type"`
	// Grantee is the canonical user id, e-mail address or group URI.
	Grantee    string `json:"grantee"`
	Permission string `json:"permission"`
}

// public reports whether the ACL grants anything to everyone or to every
// AWS account.
func (a ACL) public() bool {
	return slices.ContainsFunc(a.Grants, func(g Grant) bool {
		return g.GranteeType == string(s3types.TypeGroup) &&
			(g.Grantee == "http://acs.amazonaws.com/groups/global/AllUsers" || g.Grantee == "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
	})
}

// BucketAccess is what decides who may reach a bucket.
type BucketAccess struct {
	// Policy is the bucket policy, null when there is none.
	Policy *string `json:"policy"`
	ACL    ACL     `json:"acl"`
	// PublicACL is true when the ACL grants to everyone or to every AWS
	// account.
	PublicACL bool `json:"public_acl"`
	// PublicAccessBlock is null when the bucket has none.
	PublicAccessBlock *PublicAccessBlock `json:"public_access_block"`
}

// bucketRegion asks S3 where the bucket is.
func bucketRegion(ctx context.Context, c S3, bucket, account string) (string, error) {
	out, err := c.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	switch code := awsclient.ErrorCode(err); {
	case err == nil:
	case code == "NoSuchBucket", code == "AccessDenied":
		return "", sdk.Errorf(codes.NotFound, "bucket %s does not exist or is not account %s's (S3 answered %s): check the bucket name and the run's account", bucket, account, code)
	default:
		return "", awsclient.APIError("s3:GetBucketLocation "+bucket, err)
	}
	switch loc := string(out.LocationConstraint); loc {
	case "":
		return "us-east-1", nil
	case "EU":
		return "eu-west-1", nil
	default:
		return loc, nil
	}
}

func getPolicy(ctx context.Context, c S3, bucket string) (*string, error) {
	out, err := c.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	if awsclient.ErrorCode(err) == "NoSuchBucketPolicy" {
		return nil, nil
	}
	if err != nil {
		return nil, awsclient.APIError("s3:GetBucketPolicy "+bucket, err)
	}
	return out.Policy, nil
}

func getPublicAccessBlock(ctx context.Context, c S3, bucket string) (*PublicAccessBlock, error) {
	out, err := c.GetPublicAccessBlock(ctx, &s3.GetPublicAccessBlockInput{Bucket: aws.String(bucket)})
	if awsclient.ErrorCode(err) == "NoSuchPublicAccessBlockConfiguration" {
		return nil, nil
	}
	if err != nil {
		return nil, awsclient.APIError("s3:GetPublicAccessBlock "+bucket, err)
	}
	p := out.PublicAccessBlockConfiguration
	if p == nil {
		return nil, nil
	}
	return &PublicAccessBlock{aws.ToBool(p.BlockPublicAcls), aws.ToBool(p.IgnorePublicAcls), aws.ToBool(p.BlockPublicPolicy), aws.ToBool(p.RestrictPublicBuckets)}, nil
}

func getACL(ctx context.Context, c S3, bucket string) (ACL, error) {
	out, err := c.GetBucketAcl(ctx, &s3.GetBucketAclInput{Bucket: aws.String(bucket)})
	if err != nil {
		return ACL{}, awsclient.APIError("s3:GetBucketAcl "+bucket, err)
	}
	acl := ACL{Grants: []Grant{}}
	if out.Owner != nil {
		acl.Owner = aws.ToString(out.Owner.ID)
	}
	for _, g := range out.Grants {
		gr := Grant{Permission: string(g.Permission)}
		if e := g.Grantee; e != nil {
			gr.GranteeType = string(e.Type)
			switch e.Type {
			case s3types.TypeGroup:
				gr.Grantee = aws.ToString(e.URI)
			case s3types.TypeAmazonCustomerByEmail:
				gr.Grantee = aws.ToString(e.EmailAddress)
			default:
				gr.Grantee = aws.ToString(e.ID)
			}
		}
		acl.Grants = append(acl.Grants, gr)
	}
	return acl, nil
}

var (
	principalARNRE = regexp.MustCompile(`^arn:aws[\w-]*:iam::\d{12}:(root|user/\S+|role/\S+)$`)
	accountIDRE    = regexp.MustCompile(`^\d{12}$`)
)

// denyStatement is the FirebreakContain statement: deny every S3 action on
// the bucket and its objects to every principal but the listed ARNs (IAM
// wildcards allowed) and accounts.
func denyStatement(bucket string, arns, accounts []string) map[string]any {
	cond := map[string]any{"StringNotLike": map[string]any{"aws:PrincipalArn": arns}}
	if len(accounts) > 0 {
		cond["StringNotEquals"] = map[string]any{"aws:PrincipalAccount": accounts}
	}
	return map[string]any{
		"Sid":       ContainSid,
		"Effect":    "Deny",
		"Principal": "*",
		"Action":    "s3:*",
		"Resource":  []string{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"},
		"Condition": cond,
	}
}

// mergePolicy adds the statement to the bucket policy, replacing an earlier
// statement with the same Sid and keeping everything else.
func mergePolicy(existing *string, statement map[string]any) (string, error) {
	doc := map[string]any{"Version": "2012-10-17"}
	var statements []any
	if existing != nil {
		if err := json.Unmarshal([]byte(*existing), &doc); err != nil {
			return "", fmt.Errorf("the bucket policy is not JSON: %w", err)
		}
		switch s := doc["Statement"].(type) {
		case []any:
			statements = s
		case map[string]any:
			statements = []any{s}
		case nil:
		default:
			return "", fmt.Errorf("the bucket policy's Statement is neither an object nor a list")
		}
	}
	statements = slices.DeleteFunc(statements, func(s any) bool {
		m, ok := s.(map[string]any)
		return ok && m["Sid"] == ContainSid
	})
	doc["Statement"] = append(statements, statement)
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// samePolicy reports whether two policy documents are the same JSON value.
func samePolicy(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	var va, vb any
	if json.Unmarshal([]byte(*a), &va) != nil || json.Unmarshal([]byte(*b), &vb) != nil {
		return *a == *b
	}
	return reflect.DeepEqual(va, vb)
}

// containRecord is aws-s3-contain's rollback record.
type containRecord struct {
	awsresponse.RecordHeader
	Bucket string `json:"bucket"`
	Region string `json:"region"`
	// PolicyBefore is the bucket policy before, nil when there was none.
	PolicyBefore *string `json:"policy_before"`
	// PolicyPut is the policy containment put, nil when it left the policy
	// alone.
	PolicyPut *string `json:"policy_put,omitempty"`
	// PublicAccessBlockBefore is the configuration before, nil when there
	// was none.
	PublicAccessBlockBefore *PublicAccessBlock `json:"public_access_block_before"`
	// PublicAccessBlockPut says containment put the all-on configuration.
	PublicAccessBlockPut bool `json:"public_access_block_put"`
	// ACLBefore is the ACL at containment, which containment does not
	// change (IgnorePublicAcls neutralises public grants).
	ACLBefore ACL `json:"acl_before"`
}
