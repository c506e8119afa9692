package awsemu

import (
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// This file holds the security posture a readiness review reads: GuardDuty
// detectors, Security Hub, CloudTrail trails, the evidence-relevant bucket
// settings (Object Lock, versioning, default encryption) and IAM's policy
// simulator.

// GuardDutySeed is a region's GuardDuty detector.
type GuardDutySeed struct {
	// Status is ENABLED (the default) or DISABLED: a suspended detector.
	Status string `yaml:"status,omitempty" json:"status,omitempty"`
	// FindingPublishingFrequency is FIFTEEN_MINUTES, ONE_HOUR or SIX_HOURS
	// (the default).
	FindingPublishingFrequency string `yaml:"findingPublishingFrequency,omitempty" json:"findingPublishingFrequency,omitempty"`
	// Administrator is the GuardDuty administrator account this detector's
	// findings are aggregated in (a member of an organisation's GuardDuty);
	// empty for none.
	Administrator string `yaml:"administrator,omitempty" json:"administrator,omitempty"`
}

// SecurityHubSeed is a region's Security Hub subscription.
type SecurityHubSeed struct {
	// AutoEnableControls mirrors the hub's setting.
	AutoEnableControls bool `yaml:"autoEnableControls,omitempty" json:"autoEnableControls,omitempty"`
}

// TrailSeed is a CloudTrail trail whose home is the region it is seeded in.
type TrailSeed struct {
	Name string `yaml:"name" json:"name"`
	// Bucket is the trail's S3 bucket name.
	Bucket string `yaml:"bucket,omitempty" json:"bucket,omitempty"`
	// MultiRegion trails log every region.
	MultiRegion bool `yaml:"multiRegion,omitempty" json:"multiRegion,omitempty"`
	// Organization trails, created in the management account, log every
	// member account too, and members see them.
	Organization bool `yaml:"organization,omitempty" json:"organization,omitempty"`
	// Stopped trails exist but do not log.
	Stopped bool `yaml:"stopped,omitempty" json:"stopped,omitempty"`
}

// ObjectLockSeed is a bucket's Object Lock configuration.
type ObjectLockSeed struct {
	// Mode is the default retention's mode, GOVERNANCE or COMPLIANCE;
	// empty means Object Lock is enabled with no default retention.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Days is the default retention.
	Days int `yaml:"days,omitempty" json:"days,omitempty"`
}

// EncryptionSeed is a bucket's default encryption.
type EncryptionSeed struct {
	// Algorithm is AES256 (SSE-S3, what a bucket without a seed reports,
	// as AWS does since 2023), aws:kms or aws:kms:dsse.
	Algorithm string `yaml:"algorithm" json:"algorithm"`
	// KMSKeyID is the KMS key for aws:kms.
	KMSKeyID string `yaml:"kmsKeyId,omitempty" json:"kmsKeyId,omitempty"`
}

// gdDetector is a region's GuardDuty detector.
type gdDetector struct {
	id, status, frequency string
	administrator         string
	created, updated      time.Time
}

// securityHub is a region's Security Hub subscription.
type securityHub struct {
	subscribed  time.Time
	autoEnable  bool
	hubARN      string
	controlMode string
}

// trail is a CloudTrail trail.
type trail struct {
	name, bucket, homeRegion, arn string
	multiRegion, organization     bool
	logging                       bool
	started                       time.Time
}

// objectLock is a bucket's Object Lock configuration.
type objectLock struct {
	mode string
	days int
}

// bucketEncryption is a bucket's default encryption.
type bucketEncryption struct {
	algorithm, kmsKeyID string
}

// seedPosture applies a region's posture seeds. The caller holds no lock;
// a is not yet shared.
func (e *Emulator) seedPosture(a *account, rg *region, rs *RegionSeed, now time.Time) error {
	if g := rs.GuardDuty; g != nil {
		status := orDefault(g.Status, "ENABLED")
		if status != "ENABLED" && status != "DISABLED" {
			return fmt.Errorf("guardDuty status %q: want ENABLED or DISABLED", status)
		}
		freq := orDefault(g.FindingPublishingFrequency, "SIX_HOURS")
		if g.Administrator != "" && !accountIDRe.MatchString(g.Administrator) {
			return fmt.Errorf("guardDuty administrator %q: want a 12-digit account id", g.Administrator)
		}
		rg.detector = &gdDetector{id: labHex("detector/"+a.id+"/"+rg.name, 32), status: status, frequency: freq, created: now, updated: now,
			administrator: g.Administrator}
	}
	if h := rs.SecurityHub; h != nil {
		rg.hub = &securityHub{subscribed: now, autoEnable: h.AutoEnableControls, hubARN: "arn:aws:securityhub:" + rg.name + ":" + a.id + ":hub/default",
			controlMode: "SECURITY_CONTROL"}
	}
	for _, ts := range rs.Trails {
		if ts.Name == "" {
			return errors.New("a trail needs a name")
		}
		if a.trails == nil {
			a.trails = map[string]*trail{}
		}
		a.trails[ts.Name] = &trail{name: ts.Name, bucket: ts.Bucket, homeRegion: rg.name, multiRegion: ts.MultiRegion || ts.Organization,
			organization: ts.Organization, logging: !ts.Stopped, started: now,
			arn: "arn:aws:cloudtrail:" + rg.name + ":" + a.id + ":trail/" + ts.Name}
	}
	return nil
}

// labHex is a stable lower-case hex identifier of n characters.
func labHex(label string, n int) string {
	d := labDigest(label)
	const digits = "0123456789abcdef"
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		b := d[i%len(d)]
		out = append(out, digits[b>>4], digits[b&0xf])
	}
	return string(out[:n])
}

func (e *Emulator) guardDutyService() *service {
	s := &service{
		name:        "guardduty",
		eventSource: "guardduty.amazonaws.com",
		protocol:    protoRestJSON,
		errs:        jsonErrors("TooManyRequestsException", http.StatusTooManyRequests, http.StatusForbidden),
		routes: []restRoute{
			route(http.MethodGet, "/detector", "ListDetectors"),
			route(http.MethodGet, "/detector/{detectorId}", "GetDetector"),
			route(http.MethodPost, "/detector/{detectorId}", "UpdateDetector"),
			route(http.MethodGet, "/detector/{detectorId}/administrator", "GetAdministratorAccount"),
		},
	}
	s.errs.unknownOperation = errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation")
	detectorARN := func(e *Emulator, c *call) []string {
		return []string{"arn:aws:guardduty:" + c.region + ":" + c.who.account + ":detector/" + c.path["detectorId"]}
	}
	ops := []*operation{
		{name: "ListDetectors", readOnly: true, handle: (*Emulator).gdListDetectors},
		{name: "GetDetector", readOnly: true, handle: (*Emulator).gdGetDetector, resources: detectorARN},
		{name: "UpdateDetector", handle: (*Emulator).gdUpdateDetector, resources: detectorARN},
		{name: "GetAdministratorAccount", readOnly: true, handle: (*Emulator).gdGetAdministratorAccount, resources: detectorARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "guardduty:" + op.name
		s.ops[op.name] = op
	}
	return s
}

func (e *Emulator) gdListDetectors(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	ids := []string{}
	if d := c.acct.region(c.region).detector; d != nil {
		ids = append(ids, d.id)
	}
	return map[string]any{"detectorIds": ids}, nil
}

func (e *Emulator) gdGetDetector(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	d := c.acct.region(c.region).detector
	if d == nil || d.id != c.path["detectorId"] {
		return nil, &apiError{Code: "BadRequestException", Status: http.StatusBadRequest,
			Message: "The request is rejected because the input detectorId is not owned by the current account."}
	}
	return map[string]any{
		"createdAt": d.created.UTC().Format(time.RFC3339Nano), "updatedAt": d.updated.UTC().Format(time.RFC3339Nano),
		"findingPublishingFrequency": d.frequency, "status": d.status,
		"serviceRole": "arn:aws:iam::" + c.acct.id + ":role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty",
		"tags":        map[string]string{},
	}, nil
}

func (e *Emulator) gdGetAdministratorAccount(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	d := c.acct.region(c.region).detector
	if d == nil || d.id != c.path["detectorId"] {
		return nil, &apiError{Code: "BadRequestException", Status: http.StatusBadRequest,
			Message: "The request is rejected because the input detectorId is not owned by the current account."}
	}
	if d.administrator == "" {
		return map[string]any{}, nil
	}
	return map[string]any{"administrator": map[string]any{"accountId": d.administrator, "invitationId": labHex("invite/"+d.id, 32),
		"relationshipStatus": "Enabled", "invitedAt": d.created.UTC().Format(time.RFC3339Nano)}}, nil
}

func (e *Emulator) securityHubService() *service {
	s := &service{
		name:        "securityhub",
		eventSource: "securityhub.amazonaws.com",
		protocol:    protoRestJSON,
		errs:        jsonErrors("TooManyRequestsException", http.StatusTooManyRequests, http.StatusForbidden),
		routes: []restRoute{
			route(http.MethodGet, "/accounts", "DescribeHub"),
		},
	}
	s.errs.unknownOperation = errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation")
	hubARN := func(e *Emulator, c *call) []string {
		return []string{"arn:aws:securityhub:" + c.region + ":" + c.who.account + ":hub/default"}
	}
	s.ops = map[string]*operation{
		"DescribeHub": {name: "DescribeHub", action: "securityhub:DescribeHub", readOnly: true, handle: (*Emulator).shDescribeHub, resources: hubARN},
	}
	return s
}

func (e *Emulator) shDescribeHub(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	h := c.acct.region(c.region).hub
	if want := c.r.URL.Query().Get("HubArn"); h == nil || (want != "" && want != h.hubARN) {
		return nil, &apiError{Code: "InvalidAccessException", Status: http.StatusUnauthorized,
			Message: "Account " + c.acct.id + " is not subscribed to AWS Security Hub"}
	}
	return map[string]any{"HubArn": h.hubARN, "SubscribedAt": h.subscribed.UTC().Format(time.RFC3339Nano), "AutoEnableControls": h.autoEnable,
		"ControlFindingGenerator": h.controlMode}, nil
}

// trailOut is a trail as DescribeTrails renders it.
type trailOut struct {
	Name                       string `json:"Name"`
	S3BucketName               string `json:"S3BucketName,omitempty"`
	IncludeGlobalServiceEvents bool   `json:"IncludeGlobalServiceEvents"`
	IsMultiRegionTrail         bool   `json:"IsMultiRegionTrail"`
	HomeRegion                 string `json:"HomeRegion"`
	TrailARN                   string `json:"TrailARN"`
	LogFileValidationEnabled   bool   `json:"LogFileValidationEnabled"`
	HasCustomEventSelectors    bool   `json:"HasCustomEventSelectors"`
	HasInsightSelectors        bool   `json:"HasInsightSelectors"`
	IsOrganizationTrail        bool   `json:"IsOrganizationTrail"`
}

// visibleTrails are the trails a call sees in its region: the account's own
// trails homed there, its multi-region trails (as shadow trails, when
// asked), and the organisation trails of the management account when the
// account is a member. Sorted by ARN.
func (e *Emulator) visibleTrails(c *call, shadows bool) []*trail {
	var out []*trail
	see := func(a *account, orgOnly bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, t := range a.trails {
			if orgOnly && !t.organization {
				continue
			}
			if t.homeRegion == c.region || (t.multiRegion && shadows) {
				cp := *t
				out = append(out, &cp)
			}
		}
	}
	see(c.acct, false)
	e.mu.RLock()
	o := e.org
	e.mu.RUnlock()
	if o != nil && o.management != c.acct.id && slices.Contains(o.members, c.acct.id) {
		if m := e.account(o.management); m != nil {
			see(m, true)
		}
	}
	slices.SortFunc(out, func(x, y *trail) int { return strings.Compare(x.arn, y.arn) })
	return out
}

func (e *Emulator) ctDescribeTrails(c *call) (any, error) {
	var in struct {
		TrailNameList       []string `json:"trailNameList"`
		IncludeShadowTrails *bool    `json:"includeShadowTrails"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	shadows := in.IncludeShadowTrails == nil || *in.IncludeShadowTrails
	list := []trailOut{}
	for _, t := range e.visibleTrails(c, shadows) {
		if len(in.TrailNameList) > 0 && !slices.Contains(in.TrailNameList, t.name) && !slices.Contains(in.TrailNameList, t.arn) {
			continue
		}
		list = append(list, trailOut{Name: t.name, S3BucketName: t.bucket, IncludeGlobalServiceEvents: true, IsMultiRegionTrail: t.multiRegion,
			HomeRegion: t.homeRegion, TrailARN: t.arn, LogFileValidationEnabled: true, IsOrganizationTrail: t.organization})
	}
	return map[string]any{"trailList": list}, nil
}

func (e *Emulator) ctGetTrailStatus(c *call) (any, error) {
	var in struct {
		Name string `json:"Name"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	for _, t := range e.visibleTrails(c, true) {
		if t.name == in.Name || t.arn == in.Name {
			out := map[string]any{"IsLogging": t.logging}
			if t.logging {
				out["StartLoggingTime"] = epochTime(t.started)
				out["LatestDeliveryTime"] = epochTime(c.now)
			}
			return out, nil
		}
	}
	return nil, ctError("TrailNotFoundException", "Unknown trail: "+in.Name+" for the user: "+c.acct.id)
}

// s3ObjectLockConfiguration is GetObjectLockConfiguration's answer.
type s3ObjectLockConfiguration struct {
	XMLName           xml.Name `xml:"ObjectLockConfiguration"`
	Xmlns             string   `xml:"xmlns,attr"`
	ObjectLockEnabled string   `xml:"ObjectLockEnabled"`
	Rule              *struct {
		Mode string `xml:"DefaultRetention>Mode"`
		Days int    `xml:"DefaultRetention>Days"`
	} `xml:"Rule,omitempty"`
}

func (e *Emulator) s3GetObjectLockConfiguration(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	if b.objectLock == nil {
		return nil, errorf(http.StatusNotFound, "ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this bucket")
	}
	out := &s3ObjectLockConfiguration{Xmlns: s3Namespace, ObjectLockEnabled: "Enabled"}
	if b.objectLock.mode != "" {
		out.Rule = &struct {
			Mode string `xml:"DefaultRetention>Mode"`
			Days int    `xml:"DefaultRetention>Days"`
		}{b.objectLock.mode, b.objectLock.days}
	}
	return out, nil
}

// s3Versioning is GetBucketVersioning's answer.
type s3Versioning struct {
	XMLName xml.Name `xml:"VersioningConfiguration"`
	Xmlns   string   `xml:"xmlns,attr"`
	Status  string   `xml:"Status,omitempty"`
}

func (e *Emulator) s3GetBucketVersioning(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	return &s3Versioning{Xmlns: s3Namespace, Status: b.versioning}, nil
}

// s3Encryption is GetBucketEncryption's answer.
type s3Encryption struct {
	XMLName xml.Name `xml:"ServerSideEncryptionConfiguration"`
	Xmlns   string   `xml:"xmlns,attr"`
	Rule    struct {
		Algorithm        string `xml:"ApplyServerSideEncryptionByDefault>SSEAlgorithm"`
		KMSMasterKeyID   string `xml:"ApplyServerSideEncryptionByDefault>KMSMasterKeyID,omitempty"`
		BucketKeyEnabled bool   `xml:"BucketKeyEnabled"`
	} `xml:"Rule"`
}

func (e *Emulator) s3GetBucketEncryption(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	out := &s3Encryption{Xmlns: s3Namespace}
	// Every bucket has at least SSE-S3, as in AWS since January 2023.
	out.Rule.Algorithm = "AES256"
	if enc := b.encryption; enc != nil {
		out.Rule.Algorithm, out.Rule.KMSMasterKeyID, out.Rule.BucketKeyEnabled = enc.algorithm, enc.kmsKeyID, enc.algorithm != "AES256"
	}
	return out, nil
}

// simulationResult is one of SimulatePrincipalPolicy's evaluation results.
type simulationResult struct {
	EvalActionName   string `xml:"EvalActionName"`
	EvalResourceName string `xml:"EvalResourceName"`
	EvalDecision     string `xml:"EvalDecision"`
}

// iamSimulatePrincipalPolicy evaluates the identity policies of a user or
// role of the caller's account against actions and resources, with the
// evaluation the emulator applies to real calls (no session policies, no
// condition keys but those given).
func (e *Emulator) iamSimulatePrincipalPolicy(c *call) (any, error) {
	source := c.form.str("PolicySourceArn")
	actions := c.form.strings("ActionNames")
	if source == "" || len(actions) == 0 {
		return nil, errorf(http.StatusBadRequest, "ValidationError", "PolicySourceArn and ActionNames are required")
	}
	resources := c.form.strings("ResourceArns")
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	keys := map[string][]string{}
	for _, ce := range c.form.list("ContextEntries") {
		if k := strings.ToLower(ce.str("ContextKeyName")); k != "" {
			keys[k] = append(keys[k], ce.strings("ContextKeyValues")...)
		}
	}
	prefix := "arn:aws:iam::" + c.acct.id + ":"
	rest, ok := strings.CutPrefix(source, prefix)
	if !ok {
		return nil, errorf(http.StatusBadRequest, "InvalidInput", "Invalid ARN %s: the policy source must be a user, group or role of this account.", source)
	}
	c.acct.mu.Lock()
	var inline map[string]*storedPolicy
	var attached []string
	kind, path, _ := strings.Cut(rest, "/")
	name := path[strings.LastIndex(path, "/")+1:]
	switch kind {
	case "user":
		if u := c.acct.users[name]; u != nil {
			inline, attached = u.inline, u.attached
		}
	case "role":
		if r := c.acct.roles[name]; r != nil {
			inline, attached = r.inline, r.attached
		}
	}
	if inline == nil && attached == nil {
		found := (kind == "user" && c.acct.users[name] != nil) || (kind == "role" && c.acct.roles[name] != nil)
		if !found {
			c.acct.mu.Unlock()
			return nil, noSuchEntity("The %s with name %s cannot be found.", kind, name)
		}
	}
	var docs []*policyDocument
	for _, n := range slices.Sorted(maps.Keys(inline)) {
		docs = append(docs, inline[n].doc)
	}
	for _, arn := range attached {
		if mp := c.acct.managedPolicy(arn); mp != nil {
			docs = append(docs, mp.doc.doc)
		}
	}
	c.acct.mu.Unlock()
	out := &struct {
		EvaluationResults []simulationResult `xml:"EvaluationResults>member"`
		IsTruncated       bool               `xml:"IsTruncated"`
	}{EvaluationResults: []simulationResult{}}
	for _, action := range actions {
		for _, res := range resources {
			decision := "implicitDeny"
			switch evaluateIdentity(docs, nil, &requestContext{Action: action, Resource: res, Keys: keys}) {
			case allowed:
				decision = "allowed"
			case explicitDeny:
				decision = "explicitDeny"
			}
			out.EvaluationResults = append(out.EvaluationResults, simulationResult{action, res, decision})
		}
	}
	return out, nil
}
