// Package attest verifies the proofs agents enrol with instead of a join
// token: an EC2 instance identity document (host agents) and a signed
// sts:GetCallerIdentity request (API workers), against the attestation
// policy. It decides who an agent is; the fleet issues the certificate.
package attest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Instance is what AWS says about an instance now.
type Instance struct {
	State string
	Tags  map[string]string
}

// ErrNoInstance means AWS does not know the instance.
var ErrNoInstance = errors.New("the instance does not exist")

// InstanceReader reads an instance's state and tags in its account.
type InstanceReader interface {
	Instance(ctx context.Context, account, region, instanceID string) (*Instance, error)
}

// AccountLister is the accounts table.
type AccountLister interface {
	ListAccounts(ctx context.Context) ([]*store.Account, error)
}

// Config holds the verifier's dependencies.
type Config struct {
	// Accounts is the organisation's accounts table.
	Accounts AccountLister
	// Certs are the certificates identity documents are checked against.
	Certs *iid.Certificates
	// Policy says who may enrol; nil refuses every attested enrollment.
	Policy *Policy
	// Instances reads instance state and tags; required with an iid policy.
	Instances InstanceReader
	// ServerID is the value workers sign in X-Firebreak-Server-Id.
	ServerID string
	// STSEndpoint, when set, is the one STS endpoint signed requests may
	// name (an emulator, a VPC endpoint); else Partition's endpoints.
	STSEndpoint string
	// Partition is the AWS partition of allowed STS endpoints (default aws).
	Partition string
	// HTTPClient sends signed requests to STS (default: one that follows
	// no redirect, with a 10s timeout).
	HTTPClient *http.Client
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Accounts == nil {
		missing = append(missing, "Accounts")
	}
	if c.Certs == nil {
		missing = append(missing, "Certs")
	}
	if c.ServerID == "" {
		missing = append(missing, "ServerID")
	}
	if c.Policy != nil && c.Policy.IID != nil && c.Instances == nil {
		missing = append(missing, "Instances (the policy allows iid)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("attest: missing %s", strings.Join(missing, ", "))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return nil
}

// Verifier checks attestation proofs.
type Verifier struct {
	cfg   Config
	state atomic.Pointer[policyState]
}

// policyState is the policy in force and its stored version.
type policyState struct {
	policy  *Policy
	version int64
}

// New returns a verifier.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg}
	v.state.Store(&policyState{policy: cfg.Policy})
	return v, nil
}

// SetPolicy replaces the policy enrollments are checked against from now
// on with stored version version; nil refuses every attested enrollment.
func (v *Verifier) SetPolicy(version int64, p *Policy) error {
	if p != nil && p.IID != nil && v.cfg.Instances == nil {
		return errors.New("attest: the policy allows iid but this verifier has no instance reader")
	}
	v.state.Store(&policyState{policy: p, version: version})
	return nil
}

// Policy returns the policy in force (nil: none) and its stored version
// (0: not from the store).
func (v *Verifier) Policy() (*Policy, int64) {
	st := v.state.Load()
	return st.policy, st.version
}

// Identity is who an attested agent is.
type Identity struct {
	// Method is store.AttestAWSIID or store.AttestAWSSTS.
	Method string
	// Subject is the instance id or the caller's ARN.
	Subject    string
	InstanceID string
	Account    string
	Region     string
	// Role is host for aws-iid and worker for aws-sts.
	Role string
	// Labels are the policy's labels; they override what the agent says.
	Labels map[string]string
}

// Refusal is a refused proof: Reason is a short fixed phrase for the
// audit log, Err the precise error for the agent, Code its gRPC code.
type Refusal struct {
	Reason string
	Code   codes.Code
	Err    error
	// Detail goes into the audit record.
	Detail map[string]any
}

func (r *Refusal) Error() string { return r.Err.Error() }

func refuse(code codes.Code, reason string, detail map[string]any, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Code: code, Err: fmt.Errorf(format, args...), Detail: detail}
}

// Refusal reasons, as the audit log records them.
const (
	ReasonNoPolicy       = "no attestation policy"
	ReasonMalformed      = "malformed identity document"
	ReasonSignature      = "invalid document signature"
	ReasonRegion         = "region not allowed"
	ReasonOutsideOrg     = "account outside the organisation"
	ReasonAccountDenied  = "account not allowed by the policy"
	ReasonTooOld         = "identity document older than max_age"
	ReasonNoInstance     = "instance not found"
	ReasonNotRunning     = "instance not running"
	ReasonMissingTag     = "instance lacks a required tag"
	ReasonStolenDocument = "instance already enrolled: possible stolen document"
	ReasonSTSRequest     = "signed request refused"
	ReasonSTSRejected    = "STS refused the signed request"
	ReasonRoleDenied     = "role not allowed by the policy"
	ReasonLookupFailed   = "instance lookup failed"
)

// VerifyIID checks an instance identity document and the instance it names.
// The caller checks and claims the instance's uniqueness when it stores
// the agent (store.EnrollAttested).
func (v *Verifier) VerifyIID(ctx context.Context, proof *agentv1.AwsIidProof) (*Identity, *Refusal) {
	pol, _ := v.Policy()
	if pol == nil || pol.IID == nil {
		return nil, refuse(codes.FailedPrecondition, ReasonNoPolicy, nil,
			"the attestation policy allows no instance identity enrollment (an admin sets one holding iid: with firebreak attest policy set FILE)")
	}
	// Security-critical: the document is only trusted through a signature
	// made by a trusted certificate for its region.
	doc, err := iid.Verify(v.cfg.Certs, iid.RSA2048, proof.GetDocument(), proof.GetRsa2048())
	if errors.Is(err, iid.ErrSignature) {
		return nil, refuse(codes.Unauthenticated, ReasonSignature, map[string]any{"error": err.Error()}, "%v", err)
	}
	if err != nil {
		return nil, refuse(codes.InvalidArgument, ReasonMalformed, map[string]any{"error": err.Error()}, "the identity document or its signature is malformed: %v", err)
	}
	detail := map[string]any{"account": doc.AccountID, "region": doc.Region, "instance_id": doc.InstanceID, "pending_time": doc.PendingTime}
	if len(pol.IID.Regions) > 0 && !slices.Contains(pol.IID.Regions, doc.Region) {
		return nil, refuse(codes.PermissionDenied, ReasonRegion, detail, "region %s is not allowed by the attestation policy (%s)", doc.Region, strings.Join(pol.IID.Regions, ", "))
	}
	known, err := v.cfg.Accounts.ListAccounts(ctx)
	if err != nil {
		return nil, refuse(codes.Unavailable, ReasonLookupFailed, detail, "reading the accounts table: %v", err)
	}
	// Security-critical: a document of any AWS account verifies; only the
	// organisation's accounts that the policy names may enrol.
	if err := allowedAccount(known, pol.IID.Accounts, doc.AccountID); err != nil {
		reason := ReasonOutsideOrg
		if errors.Is(err, errNotAllowed) {
			reason = ReasonAccountDenied
		}
		return nil, refuse(codes.PermissionDenied, reason, detail, "%v", err)
	}
	// Security-critical: an old document is more likely a copied one; it
	// only enrols an instance that is new.
	if age := v.cfg.Clock().Sub(doc.PendingTime); age > pol.IID.MaxAge {
		detail["age"] = age.Round(time.Second).String()
		return nil, refuse(codes.PermissionDenied, ReasonTooOld, detail,
			"the identity document's pendingTime %s is %s old; the policy's max_age for first enrollment is %s (stop and start the instance for a fresh one, or enrol it with a join token)",
			doc.PendingTime.Format(time.RFC3339), age.Round(time.Second), pol.IID.MaxAge)
	}
	// Security-critical: the instance must exist and run now, with the
	// tags the policy requires, as AWS reports it, not as the agent does.
	in, err := v.cfg.Instances.Instance(ctx, doc.AccountID, doc.Region, doc.InstanceID)
	if errors.Is(err, ErrNoInstance) {
		return nil, refuse(codes.PermissionDenied, ReasonNoInstance, detail, "instance %s does not exist in account %s (%s)", doc.InstanceID, doc.AccountID, doc.Region)
	}
	if err != nil {
		detail["error"] = err.Error()
		return nil, refuse(codes.Unavailable, ReasonLookupFailed, detail, "reading instance %s in account %s failed: %v", doc.InstanceID, doc.AccountID, err)
	}
	if in.State != "running" {
		detail["state"] = in.State
		return nil, refuse(codes.PermissionDenied, ReasonNotRunning, detail, "instance %s is %s, not running", doc.InstanceID, in.State)
	}
	for _, k := range sortedKeys(pol.IID.RequiredTags) {
		if got, ok := in.Tags[k]; !ok || got != pol.IID.RequiredTags[k] {
			detail["tag"] = k
			return nil, refuse(codes.PermissionDenied, ReasonMissingTag, detail, "instance %s lacks the tag %s=%s that the attestation policy requires", doc.InstanceID, k, pol.IID.RequiredTags[k])
		}
	}
	labels := map[string]string{"account": doc.AccountID, "region": doc.Region, "instance_id": doc.InstanceID, "az": doc.AvailabilityZone}
	for _, k := range pol.IID.LabelTags {
		if val, ok := in.Tags[k]; ok && labelValueRE.MatchString(val) {
			labels["tag."+k] = val
		}
	}
	return &Identity{Method: store.AttestAWSIID, Subject: doc.InstanceID, InstanceID: doc.InstanceID, Account: doc.AccountID,
		Region: doc.Region, Role: "host", Labels: labels}, nil
}

// labelValueRE is the fleet's rule for label values; a tag value that
// breaks it gives no label.
var labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_.:/@+*=-]{0,256}$`)

// assumedRoleRE reads an STS assumed-role ARN.
var assumedRoleRE = regexp.MustCompile(`^arn:([a-z-]+):sts::([0-9]{12}):assumed-role/([\w+=,.@-]+)/([\w+=,.@-]+)$`)

// VerifySTS checks a signed GetCallerIdentity, sends it to STS and maps the
// caller through the policy.
func (v *Verifier) VerifySTS(ctx context.Context, proof *agentv1.AwsStsProof) (*Identity, *Refusal) {
	pol, _ := v.Policy()
	if pol == nil || len(pol.STS) == 0 {
		return nil, refuse(codes.FailedPrecondition, ReasonNoPolicy, nil,
			"the attestation policy allows no STS enrollment (an admin sets one holding sts: with firebreak attest policy set FILE)")
	}
	req := &stsproof.Request{Method: proof.GetMethod(), URL: proof.GetUrl(), Headers: http.Header{}, Body: proof.GetBody()}
	for _, h := range proof.GetHeaders() {
		req.Headers.Add(h.GetName(), h.GetValue())
	}
	u, err := stsproof.Check(req, stsproof.CheckConfig{ServerID: v.cfg.ServerID, Partition: v.cfg.Partition, Endpoint: v.cfg.STSEndpoint, Now: v.cfg.Clock()})
	if err != nil {
		return nil, refuse(codes.PermissionDenied, ReasonSTSRequest, map[string]any{"error": err.Error(), "url": proof.GetUrl()}, "%v", err)
	}
	who, err := stsproof.Execute(ctx, v.cfg.HTTPClient, u, req)
	if err != nil {
		return nil, refuse(codes.Unauthenticated, ReasonSTSRejected, map[string]any{"error": err.Error()}, "%v", err)
	}
	detail := map[string]any{"arn": who.Arn, "account": who.Account}
	// The policy names roles; a role session's ARN is mapped back to its
	// role (without its path, which the session ARN does not carry).
	candidates := []string{who.Arn}
	if m := assumedRoleRE.FindStringSubmatch(who.Arn); m != nil {
		candidates = append(candidates, fmt.Sprintf("arn:%s:iam::%s:role/%s", m[1], m[2], m[3]))
	}
	for _, rule := range pol.STS {
		for _, c := range candidates {
			if ok, _ := path.Match(rule.RoleARN, c); !ok {
				continue
			}
			labels := map[string]string{"account": who.Account, "serves": strings.Join(rule.Accounts, "+")}
			return &Identity{Method: store.AttestAWSSTS, Subject: who.Arn, Account: who.Account, Role: "worker", Labels: labels}, nil
		}
	}
	// Security-critical: STS says who the caller is; only the roles the
	// policy names become workers.
	return nil, refuse(codes.PermissionDenied, ReasonRoleDenied, detail, "%s is not a role the attestation policy's sts rules allow", who.Arn)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
