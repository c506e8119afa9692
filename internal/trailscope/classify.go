package trailscope

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// Class is what an event means for the responder.
type Class string

// The classes. Every event has exactly one.
const (
	// Persistence: a way back in (users, keys, login profiles, policies,
	// roles and trust, functions, instances, key pairs, event rules).
	Persistence Class = "persistence"
	// DefenceEvasion: logging or detection turned off or narrowed.
	DefenceEvasion Class = "defence-evasion"
	// Exposure: something opened to the internet or another account.
	Exposure Class = "exposure"
	// DataAccess: object-level reads and writes (S3 data events).
	DataAccess Class = "data-access"
	// Reconnaissance: List, Describe and Get calls.
	Reconnaissance Class = "reconnaissance"
	// Session: a credential minted (GetSessionToken, AssumeRole,
	// GetFederationToken); the session chain follows it.
	Session Class = "session"
	// OtherWrite: a write in none of the classes above.
	OtherWrite Class = "other-write"
)

// Classes lists the classes in report order.
var Classes = []Class{Persistence, DefenceEvasion, Exposure, DataAccess, Session, OtherWrite, Reconnaissance}

// Artifact kinds: what an eradication step removes or restores.
const (
	KindUser             = "iam-user"
	KindAccessKey        = "iam-access-key"
	KindLoginProfile     = "iam-login-profile"
	KindUserPolicy       = "iam-user-policy"        // attached managed policy; ID user, Detail policyArn
	KindUserInlinePolicy = "iam-user-inline-policy" // ID user, Detail policyName
	KindRole             = "iam-role"
	KindRolePolicy       = "iam-role-policy"
	KindRoleInlinePolicy = "iam-role-inline-policy"
	KindRoleTrust        = "iam-role-trust"
	KindManagedPolicy    = "iam-managed-policy"
	KindGroupMembership  = "iam-group-membership"
	KindFunction         = "lambda-function"
	KindFunctionCode     = "lambda-function-code"
	KindFunctionAccess   = "lambda-permission"
	KindInstance         = "ec2-instance"
	KindKeyPair          = "ec2-key-pair"
	KindEventRule        = "eventbridge-rule"
	KindTrailLogging     = "cloudtrail-logging"
	KindTrail            = "cloudtrail-trail"
	KindTrailSelectors   = "cloudtrail-event-selectors"
	KindDetector         = "guardduty-detector"
	KindSecurityHub      = "securityhub"
	KindConfigRecorder   = "config-recorder"
	KindIngressRule      = "ec2-ingress-rule"
	KindBucketPolicy     = "s3-bucket-policy"
	KindBucketACL        = "s3-bucket-acl"
	KindPublicAccess     = "s3-public-access-block"
	KindSnapshotShare    = "ec2-snapshot-share"
	KindImageShare       = "ec2-image-share"
)

// Artifact is what a successful write left behind, in the words an
// eradication step needs.
type Artifact struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Account and Region locate it; IAM is global and logs in us-east-1.
	Account string `json:"account"`
	Region  string `json:"region"`
	// ID names it: a user name, key id, role name, function name,
	// instance id, group id, bucket, snapshot id…
	ID string `json:"id"`
	// Detail completes ID where one name is not enough: the policy ARN or
	// name, the CIDR and ports of an ingress rule, the account a snapshot
	// was shared with, the trust policy before the change.
	Detail map[string]string `json:"detail,omitempty"`
	// Public is set when the change opens it to everyone (0.0.0.0/0, a
	// public bucket policy or ACL, a snapshot shared with "all").
	Public bool `json:"public,omitempty"`
	// Outside is set when the change trusts or shares with an account
	// outside the organisation.
	Outside bool `json:"outside,omitempty"`
	// EventID is the event that created it.
	EventID string `json:"event_id"`
}

// Classification is one event's class and, for a successful write, the
// artifacts it left.
type Classification struct {
	Class     Class      `json:"class"`
	Artifacts []Artifact `json:"artifacts,omitempty"`
}

// Classifier classifies records. OrgAccounts, when set, lets it tell trust
// and shares with accounts outside the organisation.
type Classifier struct {
	// OrgAccounts are the organisation's account ids.
	OrgAccounts map[string]bool
}

type rule struct {
	class Class
	// artifacts derives what the event left; nil for none.
	artifacts func(c *Classifier, r *Record, p, resp map[string]any) []Artifact
}

// lambdaVersion strips the API version Lambda appends to its event names
// (CreateFunction20150331, UpdateFunctionCode20150331v2).
var lambdaVersion = regexp.MustCompile(`\d{8}(v\d+)?$`)

// eventName is the record's source and name with Lambda's version cut.
func eventName(r *Record) string {
	name := r.EventName
	if r.EventSource == "lambda.amazonaws.com" {
		name = lambdaVersion.ReplaceAllString(name, "")
	}
	return strings.TrimSuffix(r.EventSource, ".amazonaws.com") + ":" + name
}

func one(kind string, idFrom func(p, resp map[string]any) string, detail ...string) func(*Classifier, *Record, map[string]any, map[string]any) []Artifact {
	return func(_ *Classifier, r *Record, p, resp map[string]any) []Artifact {
		id := idFrom(p, resp)
		if id == "" {
			return nil
		}
		a := newArtifact(r, kind, id)
		for i := 0; i+1 < len(detail); i += 2 {
			if v := str(p, detail[i+1]); v != "" {
				a.Detail[detail[i]] = v
			}
		}
		return []Artifact{a}
	}
}

func param(key string) func(p, resp map[string]any) string {
	return func(p, _ map[string]any) string { return str(p, key) }
}

func newArtifact(r *Record, kind, id string) Artifact {
	return Artifact{Kind: kind, Account: r.Account(), Region: r.AWSRegion, ID: id, Detail: map[string]string{}, EventID: r.EventID}
}

var rules = map[string]rule{
	// Persistence.
	"iam:CreateUser": {Persistence, one(KindUser, param("userName"))},
	"iam:CreateAccessKey": {Persistence, func(_ *Classifier, r *Record, p, resp map[string]any) []Artifact {
		id := str(resp, "accessKey", "accessKeyId")
		if id == "" {
			return nil
		}
		a := newArtifact(r, KindAccessKey, id)
		// Without userName, the key is the caller's own.
		user := str(resp, "accessKey", "userName")
		if user == "" {
			user = str(p, "userName")
		}
		a.Detail["userName"] = user
		return []Artifact{a}
	}},
	"iam:CreateLoginProfile":      {Persistence, one(KindLoginProfile, param("userName"))},
	"iam:UpdateLoginProfile":      {Persistence, one(KindLoginProfile, param("userName"))},
	"iam:AttachUserPolicy":        {Persistence, one(KindUserPolicy, param("userName"), "policyArn", "policyArn")},
	"iam:PutUserPolicy":           {Persistence, one(KindUserInlinePolicy, param("userName"), "policyName", "policyName")},
	"iam:AttachRolePolicy":        {Persistence, one(KindRolePolicy, param("roleName"), "policyArn", "policyArn")},
	"iam:PutRolePolicy":           {Persistence, one(KindRoleInlinePolicy, param("roleName"), "policyName", "policyName")},
	"iam:AttachGroupPolicy":       {Persistence, nil},
	"iam:PutGroupPolicy":          {Persistence, nil},
	"iam:AddUserToGroup":          {Persistence, one(KindGroupMembership, param("userName"), "groupName", "groupName")},
	"iam:CreatePolicy":            {Persistence, one(KindManagedPolicy, func(_, resp map[string]any) string { return str(resp, "policy", "arn") })},
	"iam:CreatePolicyVersion":     {Persistence, one(KindManagedPolicy, param("policyArn"))},
	"iam:SetDefaultPolicyVersion": {Persistence, one(KindManagedPolicy, param("policyArn"), "versionId", "versionId")},
	"iam:CreateRole": {Persistence, func(c *Classifier, r *Record, p, resp map[string]any) []Artifact {
		name := str(p, "roleName")
		if name == "" {
			return nil
		}
		a := newArtifact(r, KindRole, name)
		a.Outside = c.trustsOutside(str(p, "assumeRolePolicyDocument"), r.Account())
		return []Artifact{a}
	}},
	"iam:UpdateAssumeRolePolicy": {Persistence, func(c *Classifier, r *Record, p, resp map[string]any) []Artifact {
		name := str(p, "roleName")
		if name == "" {
			return nil
		}
		a := newArtifact(r, KindRoleTrust, name)
		a.Detail["policyDocument"] = str(p, "policyDocument")
		a.Outside = c.trustsOutside(a.Detail["policyDocument"], r.Account())
		return []Artifact{a}
	}},
	"iam:CreateServiceSpecificCredential": {Persistence, nil},
	"iam:UploadSSHPublicKey":              {Persistence, nil},
	"lambda:CreateFunction": {Persistence, one(KindFunction, func(p, resp map[string]any) string {
		return firstOf(str(p, "functionName"), str(resp, "functionName"))
	})},
	"lambda:UpdateFunctionCode":          {Persistence, one(KindFunctionCode, param("functionName"))},
	"lambda:UpdateFunctionConfiguration": {Persistence, nil},
	"lambda:AddPermission":               {Persistence, one(KindFunctionAccess, param("functionName"), "statementId", "statementId", "principal", "principal")},
	"lambda:CreateFunctionUrlConfig":     {Exposure, nil},
	"ec2:RunInstances": {Persistence, func(_ *Classifier, r *Record, p, resp map[string]any) []Artifact {
		var out []Artifact
		for _, it := range items(resp["instancesSet"]) {
			if id := str(it, "instanceId"); id != "" {
				out = append(out, newArtifact(r, KindInstance, id))
			}
		}
		return out
	}},
	"ec2:ImportKeyPair": {Persistence, one(KindKeyPair, param("keyName"))},
	"ec2:CreateKeyPair": {Persistence, one(KindKeyPair, param("keyName"))},
	"events:PutRule":    {Persistence, one(KindEventRule, param("name"), "eventBusName", "eventBusName")},
	"events:PutTargets": {Persistence, nil},

	// Defence evasion.
	"cloudtrail:StopLogging":                         {DefenceEvasion, one(KindTrailLogging, param("name"))},
	"cloudtrail:DeleteTrail":                         {DefenceEvasion, one(KindTrail, param("name"))},
	"cloudtrail:UpdateTrail":                         {DefenceEvasion, nil},
	"cloudtrail:PutEventSelectors":                   {DefenceEvasion, one(KindTrailSelectors, param("trailName"))},
	"cloudtrail:PutInsightSelectors":                 {DefenceEvasion, nil},
	"guardduty:DeleteDetector":                       {DefenceEvasion, one(KindDetector, param("detectorId"))},
	"guardduty:UpdateDetector":                       {DefenceEvasion, detectorDisabled},
	"guardduty:DisassociateFromMasterAccount":        {DefenceEvasion, nil},
	"guardduty:DisassociateFromAdministratorAccount": {DefenceEvasion, nil},
	"guardduty:CreateFilter":                         {DefenceEvasion, nil},
	"guardduty:CreateIPSet":                          {DefenceEvasion, nil},
	"securityhub:DisableSecurityHub":                 {DefenceEvasion, one(KindSecurityHub, func(map[string]any, map[string]any) string { return "hub" })},
	"securityhub:BatchDisableStandards":              {DefenceEvasion, nil},
	"config:StopConfigurationRecorder":               {DefenceEvasion, one(KindConfigRecorder, param("configurationRecorderName"))},
	"config:DeleteConfigurationRecorder":             {DefenceEvasion, one(KindConfigRecorder, param("configurationRecorderName"))},
	"config:DeleteDeliveryChannel":                   {DefenceEvasion, nil},
	"ec2:DeleteFlowLogs":                             {DefenceEvasion, nil},
	"logs:DeleteLogGroup":                            {DefenceEvasion, nil},

	// Exposure.
	"ec2:AuthorizeSecurityGroupIngress": {Exposure, ingressRules},
	"s3:PutBucketPolicy": {Exposure, func(_ *Classifier, r *Record, p, resp map[string]any) []Artifact {
		b := str(p, "bucketName")
		if b == "" {
			return nil
		}
		a := newArtifact(r, KindBucketPolicy, b)
		doc, _ := json.Marshal(p["bucketPolicy"])
		a.Public = policyPublic(string(doc))
		return []Artifact{a}
	}},
	"s3:PutBucketAcl": {Exposure, func(_ *Classifier, r *Record, p, resp map[string]any) []Artifact {
		b := str(p, "bucketName")
		if b == "" {
			return nil
		}
		a := newArtifact(r, KindBucketACL, b)
		canned := str(p, "x-amz-acl")
		body, _ := json.Marshal(p["AccessControlPolicy"])
		a.Public = strings.HasPrefix(canned, "public-") || canned == "authenticated-read" ||
			strings.Contains(string(body), "/global/AllUsers") || strings.Contains(string(body), "/global/AuthenticatedUsers")
		if canned != "" {
			a.Detail["cannedAcl"] = canned
		}
		return []Artifact{a}
	}},
	"s3:DeleteBucketPublicAccessBlock": {Exposure, one(KindPublicAccess, param("bucketName"))},
	"s3:PutBucketPublicAccessBlock":    {Exposure, nil},
	"ec2:ModifySnapshotAttribute": {Exposure, func(c *Classifier, r *Record, p, resp map[string]any) []Artifact {
		return shares(c, r, KindSnapshotShare, str(p, "snapshotId"), p["createVolumePermission"])
	}},
	"ec2:ModifyImageAttribute": {Exposure, func(c *Classifier, r *Record, p, resp map[string]any) []Artifact {
		return shares(c, r, KindImageShare, str(p, "imageId"), p["launchPermission"])
	}},
	"rds:ModifyDBSnapshotAttribute": {Exposure, nil},

	// Sessions.
	"sts:AssumeRole":         {Session, nil},
	"sts:GetSessionToken":    {Session, nil},
	"sts:GetFederationToken": {Session, nil},
}

// s3DataEvents are the S3 object-level operations, logged as data events
// when the trail's selectors ask for them.
var s3DataEvents = []string{"GetObject", "PutObject", "DeleteObject", "DeleteObjects", "CopyObject", "HeadObject",
	"GetObjectAcl", "PutObjectAcl", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "SelectObjectContent", "RestoreObject"}

// Classify gives the record's class and the artifacts of a successful
// write. A refused call keeps its class (the attempt matters) but leaves
// no artifact.
func (c *Classifier) Classify(r *Record) Classification {
	if r.EventSource == "s3.amazonaws.com" && (r.EventCategory == "Data" || slices.Contains(s3DataEvents, r.EventName)) {
		return Classification{Class: DataAccess}
	}
	ru, known := rules[eventName(r)]
	if !known {
		if r.IsReadOnly() {
			return Classification{Class: Reconnaissance}
		}
		return Classification{Class: OtherWrite}
	}
	out := Classification{Class: ru.class}
	if ru.artifacts != nil && !r.Failed() {
		out.Artifacts = ru.artifacts(c, r, r.params(), r.response())
	}
	return out
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// ingressRules names each permission an AuthorizeSecurityGroupIngress
// added, in EC2's record shape: ipPermissions.items[].ipRanges.items[].cidrIp.
func ingressRules(_ *Classifier, r *Record, p, _ map[string]any) []Artifact {
	group := str(p, "groupId")
	if group == "" {
		group = str(p, "groupName")
	}
	if group == "" {
		return nil
	}
	var out []Artifact
	for _, perm := range items(p["ipPermissions"]) {
		proto, from, to := str(perm, "ipProtocol"), str(perm, "fromPort"), str(perm, "toPort")
		add := func(cidr, family string) {
			a := newArtifact(r, KindIngressRule, group)
			a.Detail["ipProtocol"], a.Detail["fromPort"], a.Detail["toPort"] = proto, from, to
			a.Detail[family] = cidr
			a.Public = cidr == "0.0.0.0/0" || cidr == "::/0"
			out = append(out, a)
		}
		for _, rg := range items(perm["ipRanges"]) {
			add(str(rg, "cidrIp"), "cidrIp")
		}
		for _, rg := range items(perm["ipv6Ranges"]) {
			add(str(rg, "cidrIpv6"), "cidrIpv6")
		}
		for _, g := range items(perm["groups"]) {
			add(str(g, "groupId"), "sourceGroupId")
		}
	}
	// The flat form (--cidr/--port) some callers use.
	if len(out) == 0 {
		if cidr := str(p, "cidrIp"); cidr != "" {
			a := newArtifact(r, KindIngressRule, group)
			a.Detail["ipProtocol"], a.Detail["fromPort"], a.Detail["toPort"], a.Detail["cidrIp"] = str(p, "ipProtocol"), str(p, "fromPort"), str(p, "toPort"), cidr
			a.Public = cidr == "0.0.0.0/0"
			out = append(out, a)
		}
	}
	return out
}

// detectorDisabled is an UpdateDetector that turned the detector off
// ({"detectorId":…,"enable":false}); one that only changes the publishing
// frequency or turns it on leaves nothing.
func detectorDisabled(_ *Classifier, r *Record, p, _ map[string]any) []Artifact {
	id := str(p, "detectorId")
	if on, set := p["enable"].(bool); !set || on || id == "" {
		return nil
	}
	a := newArtifact(r, KindDetector, id)
	a.Detail["disabled"] = "true"
	return []Artifact{a}
}

// shares names each account a snapshot or image was shared with:
// {"add":{"items":[{"userId":"…"}|{"group":"all"}]}}.
func shares(c *Classifier, r *Record, kind, id string, perm any) []Artifact {
	obj, _ := perm.(map[string]any)
	if id == "" || obj == nil {
		return nil
	}
	var out []Artifact
	for _, it := range items(obj["add"]) {
		a := newArtifact(r, kind, id)
		if g := str(it, "group"); g == "all" {
			a.Detail["group"] = "all"
			a.Public = true
		} else if u := str(it, "userId"); u != "" {
			a.Detail["userId"] = u
			a.Outside = c.OrgAccounts != nil && !c.OrgAccounts[u]
		} else {
			continue
		}
		out = append(out, a)
	}
	return out
}

var accountInARN = regexp.MustCompile(`^arn:aws[\w-]*:iam::(\d{12}):`)

// trustsOutside reports whether a trust policy lets in a principal of an
// account outside the organisation, or anyone ("*").
func (c *Classifier) trustsOutside(doc, own string) bool {
	var pol struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if json.Unmarshal([]byte(doc), &pol) != nil {
		return false
	}
	var stmts []map[string]any
	if json.Unmarshal(pol.Statement, &stmts) != nil {
		var s map[string]any
		if json.Unmarshal(pol.Statement, &s) != nil {
			return false
		}
		stmts = []map[string]any{s}
	}
	for _, s := range stmts {
		if str(s, "Effect") != "Allow" {
			continue
		}
		for _, p := range principals(s["Principal"]) {
			acct := p
			if m := accountInARN.FindStringSubmatch(p); m != nil {
				acct = m[1]
			}
			switch {
			case p == "*":
				return true
			case len(acct) == 12 && acct != own && (c.OrgAccounts == nil || !c.OrgAccounts[acct]):
				return true
			}
		}
	}
	return false
}

// principals lists the AWS principals of a statement.
func principals(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case map[string]any:
		var out []string
		switch aws := x["AWS"].(type) {
		case string:
			out = append(out, aws)
		case []any:
			for _, a := range aws {
				if s, ok := a.(string); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	return nil
}

// policyPublic reports whether a bucket policy allows Principal "*"
// (or {"AWS":"*"}) without a condition.
func policyPublic(doc string) bool {
	var pol struct {
		Statement []map[string]any `json:"Statement"`
	}
	if json.Unmarshal([]byte(doc), &pol) != nil {
		return false
	}
	for _, s := range pol.Statement {
		if str(s, "Effect") != "Allow" || s["Condition"] != nil {
			continue
		}
		if slices.Contains(principals(s["Principal"]), "*") {
			return true
		}
	}
	return false
}
