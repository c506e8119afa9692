package deploy_test

import (
	"fmt"
	"go/ast"
	"go/types"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// sdkServicePrefix is where the AWS SDK's service clients live; an
// operation's input type is <package>.<Operation>Input.
const sdkServicePrefix = "github.com/aws/aws-sdk-go-v2/service/"

// pluginPackages are the packages whose AWS calls the member role must
// allow: every package under plugins/ named aws*, except test helpers.
const pluginPackages = "github.com/firebreak-ir/firebreak/plugins/..."

// iamPrefix maps an SDK service package to its IAM action prefix where the
// two differ.
var iamPrefix = map[string]string{
	"elasticloadbalancingv2": "elasticloadbalancing",
	"eventbridge":            "events",
}

// iamAction maps an API operation to the IAM action that authorises it
// where the names differ (the Service Authorization Reference lists them);
// "" means the operation needs no permission.
var iamAction = map[string]string{
	"s3:GetPublicAccessBlock":       "s3:GetBucketPublicAccessBlock",
	"s3:PutPublicAccessBlock":       "s3:PutBucketPublicAccessBlock",
	"s3:DeletePublicAccessBlock":    "s3:PutBucketPublicAccessBlock",
	"s3:ListBuckets":                "s3:ListAllMyBuckets",
	"s3:HeadBucket":                 "s3:ListBucket",
	"s3:ListObjectsV2":              "s3:ListBucket",
	"s3:ListObjects":                "s3:ListBucket",
	"s3:HeadObject":                 "s3:GetObject",
	"s3:GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
	"s3:GetBucketEncryption":        "s3:GetEncryptionConfiguration",
	"sts:GetCallerIdentity":         "",
}

// dependentActions are further actions AWS checks when an operation runs,
// beyond the operation's own (the Service Authorization Reference's
// "dependent actions").
var dependentActions = map[string][]string{
	// Associating an instance profile passes its role to EC2.
	"ec2:AssociateIamInstanceProfile": {"iam:PassRole"},
	// Copying a snapshot into a customer managed key (aws-ebs-snapshot
	// kms_key_id) has EBS use both keys on the caller's behalf.
	"ec2:CopySnapshot": {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"},
}

// call is one AWS operation call in the plugins' source.
type call struct {
	action string // IAM action
	op     string // service:Operation as the API names it
	pos    string // file:line
	pkg    string
}

// pluginCalls type-checks the AWS plugins and returns every call whose
// callee takes an SDK operation input (*<service>.<Operation>Input): a
// client method, an interface method made of client methods, a paginator
// or waiter constructor.
func pluginCalls(t *testing.T) []call {
	t.Helper()
	cfg := &packages.Config{Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo, Dir: "../.."}
	pkgs, err := packages.Load(cfg, pluginPackages)
	if err != nil {
		t.Fatalf("loading the plugins: %v", err)
	}
	var out []call
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.PkgPath, "github.com/firebreak-ir/firebreak/plugins/")
		if !strings.HasPrefix(rel, "aws") || strings.HasSuffix(p.Name, "test") {
			continue
		}
		if len(p.Errors) > 0 {
			t.Fatalf("package %s does not type-check: %v", p.PkgPath, p.Errors)
		}
		for _, f := range p.Syntax {
			ast.Inspect(f, func(n ast.Node) bool {
				ce, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sig, ok := p.TypesInfo.TypeOf(ce.Fun).(*types.Signature)
				if !ok {
					return true
				}
				for i := range sig.Params().Len() {
					svc, op, ok := operationInput(sig.Params().At(i).Type())
					if !ok {
						continue
					}
					api := svc + ":" + op
					prefix := svc
					if p, ok := iamPrefix[svc]; ok {
						prefix = p
					}
					action := prefix + ":" + op
					if a, ok := iamAction[api]; ok {
						action = a
					}
					pos := p.Fset.Position(ce.Pos())
					out = append(out, call{action: action, op: api, pos: fmt.Sprintf("%s:%d", path.Base(pos.Filename), pos.Line), pkg: rel})
				}
				return true
			})
		}
	}
	return out
}

// operationInput reports whether t is *<service>.<Operation>Input of an
// SDK service package.
func operationInput(t types.Type) (svc, op string, ok bool) {
	ptr, isPtr := t.(*types.Pointer)
	if !isPtr {
		return "", "", false
	}
	named, isNamed := ptr.Elem().(*types.Named)
	if !isNamed || named.Obj().Pkg() == nil {
		return "", "", false
	}
	pkg := named.Obj().Pkg().Path()
	svc, inSDK := strings.CutPrefix(pkg, sdkServicePrefix)
	if !inSDK || strings.Contains(svc, "/") {
		return "", "", false
	}
	op, isInput := strings.CutSuffix(named.Obj().Name(), "Input")
	return svc, op, isInput && op != ""
}

// requiredActions is every IAM action the plugins need, with where each is
// needed.
func requiredActions(t *testing.T) map[string][]string {
	t.Helper()
	need := map[string][]string{}
	for _, c := range pluginCalls(t) {
		if c.action == "" {
			continue
		}
		need[c.action] = append(need[c.action], c.pkg+"/"+c.pos)
		for _, d := range dependentActions[c.action] {
			need[d] = append(need[d], c.pkg+"/"+c.pos+" ("+c.action+" depends on it)")
		}
	}
	for a := range need {
		slices.Sort(need[a])
		need[a] = slices.Compact(need[a])
	}
	return need
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
