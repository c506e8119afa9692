// Package deploy_test holds the tests of deploy/: every CloudFormation
// template parses, with its intrinsic functions, and refers only to what it
// declares; the member account's responder role grants exactly the AWS
// operations the plugins' code calls; the SSM document and the systemd unit
// say what deploy/README.md promises.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
)

const templateDir = "../../deploy/cloudformation"

// template is a template as written: intrinsic functions in their long
// form, unresolved.
type template struct {
	path       string
	Transform  any                       `json:"Transform"`
	Parameters map[string]map[string]any `json:"Parameters"`
	Conditions map[string]any            `json:"Conditions"`
	Resources  map[string]map[string]any `json:"Resources"`
	Outputs    map[string]map[string]any `json:"Outputs"`
	Mappings   map[string]any            `json:"Mappings"`
}

func readTemplate(t *testing.T, path string) *template {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var tpl template
	if err := json.Unmarshal(raw, &tpl); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tpl.path = path
	return &tpl
}

func templates(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(templateDir, "*.yaml"))
	if err != nil || len(paths) < 2 {
		t.Fatalf("templates in %s: %v %v", templateDir, paths, err)
	}
	return paths
}

// TestTemplatesParse parses every template with goformation, intrinsic
// functions resolved and every resource decoded into its typed form (which
// refuses unknown resource types and property names), then checks that
// every Ref, GetAtt, Sub variable, condition and DependsOn names something
// the template declares.
func TestTemplatesParse(t *testing.T) {
	for _, path := range templates(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := goformation.ParseYAML(data)
			if err != nil {
				t.Fatalf("goformation: %v", err)
			}
			if len(parsed.Resources) == 0 || parsed.AWSTemplateFormatVersion != "2010-09-09" {
				t.Fatalf("%d resources, format version %q", len(parsed.Resources), parsed.AWSTemplateFormatVersion)
			}
			tpl := readTemplate(t, path)
			for _, problem := range tpl.references() {
				t.Error(problem)
			}
		})
	}
}

var pseudoParameters = map[string]bool{
	"AWS::AccountId": true, "AWS::Partition": true, "AWS::Region": true, "AWS::StackName": true, "AWS::StackId": true,
	"AWS::URLSuffix": true, "AWS::NoValue": true, "AWS::NotificationARNs": true,
}

var knownFunctions = map[string]bool{
	"Ref": true, "Fn::GetAtt": true, "Fn::Sub": true, "Fn::Join": true, "Fn::Split": true, "Fn::Select": true, "Fn::If": true,
	"Fn::Equals": true, "Fn::And": true, "Fn::Or": true, "Fn::Not": true, "Fn::Base64": true, "Fn::FindInMap": true, "Fn::GetAZs": true,
	"Fn::ImportValue": true, "Fn::Cidr": true, "Fn::Length": true, "Fn::ToJsonString": true, "Condition": true,
}

var subVariable = regexp.MustCompile(`\$\{([^}]*)\}`)

// references lists every reference to something the template does not
// declare, and every unknown intrinsic function.
func (tpl *template) references() []string {
	var problems []string
	bad := func(where, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s", where, fmt.Sprintf(format, args...)))
	}
	name := func(n string, extra map[string]bool) bool {
		return tpl.Parameters[n] != nil || tpl.Resources[n] != nil || pseudoParameters[n] || extra[n]
	}
	var walk func(where string, v any, subVars map[string]bool)
	walk = func(where string, v any, subVars map[string]bool) {
		switch x := v.(type) {
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", where, i), e, subVars)
			}
		case map[string]any:
			if len(x) == 1 {
				for fn, arg := range x {
					if !strings.HasPrefix(fn, "Fn::") && fn != "Ref" && fn != "Condition" {
						break
					}
					if !knownFunctions[fn] {
						bad(where, "unknown intrinsic function %s", fn)
					}
					switch fn {
					case "Ref":
						if s, ok := arg.(string); !ok || !name(s, nil) {
							bad(where, "Ref %v names no parameter or resource", arg)
						}
					case "Fn::GetAtt":
						res := ""
						switch a := arg.(type) {
						case string:
							res, _, _ = strings.Cut(a, ".")
						case []any:
							if len(a) == 2 {
								res, _ = a[0].(string)
							}
						}
						if tpl.Resources[res] == nil {
							bad(where, "GetAtt %v names no resource", arg)
						}
					case "Fn::Sub":
						text, vars := "", map[string]bool{}
						switch a := arg.(type) {
						case string:
							text = a
						case []any:
							if len(a) == 2 {
								text, _ = a[0].(string)
								if m, ok := a[1].(map[string]any); ok {
									for k, val := range m {
										vars[k] = true
										walk(where+".Sub."+k, val, nil)
									}
								}
							}
						}
						for _, m := range subVariable.FindAllStringSubmatch(text, -1) {
							v := m[1]
							if strings.HasPrefix(v, "!") {
								continue
							}
							res, _, isAtt := strings.Cut(v, ".")
							if isAtt && !pseudoParameters[v] {
								if tpl.Resources[res] == nil {
									bad(where, "Sub ${%s} names no resource", v)
								}
								continue
							}
							if !name(v, vars) {
								bad(where, "Sub ${%s} names no parameter, resource or variable", v)
							}
						}
						return
					case "Fn::If":
						if a, ok := arg.([]any); !ok || len(a) != 3 || tpl.Conditions[fmt.Sprint(a[0])] == nil {
							bad(where, "Fn::If %v names no condition", arg)
						}
					case "Condition":
						if s, ok := arg.(string); !ok || tpl.Conditions[s] == nil {
							bad(where, "Condition %v is not declared", arg)
						}
					}
					walk(where+"."+fn, arg, subVars)
					return
				}
			}
			for k, e := range x {
				walk(where+"."+k, e, subVars)
			}
		}
	}
	for n, c := range tpl.Conditions {
		walk("Conditions."+n, c, nil)
	}
	for n, r := range tpl.Resources {
		if c, ok := r["Condition"].(string); ok && tpl.Conditions[c] == nil {
			bad("Resources."+n, "condition %s is not declared", c)
		}
		deps := r["DependsOn"]
		if s, ok := deps.(string); ok {
			deps = []any{s}
		}
		if list, ok := deps.([]any); ok {
			for _, d := range list {
				if tpl.Resources[fmt.Sprint(d)] == nil {
					bad("Resources."+n, "DependsOn %v names no resource", d)
				}
			}
		}
		walk("Resources."+n, r["Properties"], nil)
	}
	for n, o := range tpl.Outputs {
		walk("Outputs."+n, o, nil)
	}
	return problems
}

// statement is one IAM policy statement as written.
type statement struct {
	where     string
	condition string // the resource's CloudFormation condition, if any
	raw       map[string]any
}

func (s statement) effect() string { return fmt.Sprint(s.raw["Effect"]) }

// actions returns the statement's actions; an action that is not a plain
// string is returned as its JSON.
func (s statement) actions() []string {
	var out []string
	switch a := s.raw["Action"].(type) {
	case string:
		out = append(out, a)
	case []any:
		for _, e := range a {
			if str, ok := e.(string); ok {
				out = append(out, str)
			} else {
				b, _ := json.Marshal(e)
				out = append(out, string(b))
			}
		}
	}
	return out
}

// roleStatements returns the statements of every policy attached to the
// role with the given logical id: its inline Policies, and RolePolicy,
// Policy and ManagedPolicy resources naming it.
func (tpl *template) roleStatements(t *testing.T, role string) []statement {
	t.Helper()
	var out []statement
	add := func(where, cond string, doc any) {
		d, ok := doc.(map[string]any)
		if !ok {
			t.Fatalf("%s: policy document is not an object", where)
		}
		sts, ok := d["Statement"].([]any)
		if !ok {
			if one, isMap := d["Statement"].(map[string]any); isMap {
				sts = []any{one}
			}
		}
		for i, s := range sts {
			m, _ := s.(map[string]any)
			sid, _ := m["Sid"].(string)
			out = append(out, statement{where: fmt.Sprintf("%s statement %d %s", where, i, sid), condition: cond, raw: m})
		}
	}
	props := tpl.Resources[role]["Properties"].(map[string]any)
	policies, _ := props["Policies"].([]any)
	for _, p := range policies {
		pm := p.(map[string]any)
		add(fmt.Sprintf("%s policy %v", role, pm["PolicyName"]), "", pm["PolicyDocument"])
	}
	refersToRole := func(v any) bool {
		m, ok := v.(map[string]any)
		return ok && m["Ref"] == role
	}
	for n, r := range tpl.Resources {
		p, _ := r["Properties"].(map[string]any)
		cond, _ := r["Condition"].(string)
		switch r["Type"] {
		case "AWS::IAM::RolePolicy":
			if refersToRole(p["RoleName"]) {
				add(n, cond, p["PolicyDocument"])
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			roles, _ := p["Roles"].([]any)
			if slices.ContainsFunc(roles, refersToRole) {
				add(n, cond, p["PolicyDocument"])
			}
		}
	}
	return out
}

func resourcesOfType(tpl *template, typ string) []string {
	var out []string
	for n, r := range tpl.Resources {
		if r["Type"] == typ {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// TestMemberRoleIsLeastPrivilege holds the responder role's permissions
// against the plugins' code: every AWS operation any plugin under plugins/
// calls (found by type-checking their source) must be allowed, nothing else
// may be, and no action may be a wildcard.
func TestMemberRoleIsLeastPrivilege(t *testing.T) {
	tpl := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	roles := resourcesOfType(tpl, "AWS::IAM::Role")
	if len(roles) != 1 {
		t.Fatalf("member-account.yaml has roles %v, want exactly the responder role", roles)
	}
	if p := tpl.Resources[roles[0]]["Properties"].(map[string]any); p["ManagedPolicyArns"] != nil || p["PermissionsBoundary"] != nil {
		t.Errorf("%s: managed policies and boundaries hide what the role may do; write the permissions out", roles[0])
	}
	need := requiredActions(t)
	granted := map[string][]string{}
	for _, s := range tpl.roleStatements(t, roles[0]) {
		if s.raw["NotAction"] != nil || s.raw["NotResource"] != nil {
			t.Errorf("%s: NotAction and NotResource grant or deny more than they name", s.where)
		}
		for _, a := range s.actions() {
			if strings.ContainsAny(a, "*?") || !strings.Contains(a, ":") {
				t.Errorf("%s: action %q is a wildcard or not a service:Operation name", s.where, a)
			}
			if s.effect() != "Allow" {
				continue
			}
			granted[a] = append(granted[a], s.where)
			// Organisation reads are for aws-org-discover in the management
			// account only.
			if (strings.HasPrefix(a, "organizations:") || strings.HasPrefix(a, "account:")) && s.condition != "IsManagementAccount" {
				t.Errorf("%s: %s is granted outside the management account", s.where, a)
			}
		}
	}
	for _, a := range sortedKeys(need) {
		if granted[a] == nil {
			t.Errorf("the responder role lacks %s, which the plugins call (%s)", a, strings.Join(need[a], ", "))
		}
	}
	for _, a := range sortedKeys(granted) {
		if need[a] == nil {
			t.Errorf("the responder role grants %s (%s), which no plugin calls", a, strings.Join(granted[a], ", "))
		}
		if len(granted[a]) > 1 {
			t.Errorf("%s is granted more than once: %v", a, granted[a])
		}
	}
	t.Logf("the plugins need %d actions", len(need))
}

// TestMemberTemplateSuitsStackSets checks what a service-managed StackSet
// and the security model need of the member template.
func TestMemberTemplateSuitsStackSets(t *testing.T) {
	tpl := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	if tpl.Transform != nil {
		t.Error("a transform (macro) in a StackSet template: StackSets cannot process them")
	}
	for n, r := range tpl.Resources {
		if typ := fmt.Sprint(r["Type"]); strings.HasPrefix(typ, "AWS::CloudFormation::") {
			t.Errorf("%s is a %s: no nested stacks or stack sets in the member template", n, typ)
		}
	}
	body, _ := json.Marshal(tpl.Resources)
	if m := regexp.MustCompile(`\b\d{12}\b`).Find(body); m != nil {
		t.Errorf("the resources hard-code account id %s: take it from a parameter", m)
	}
	for _, p := range []string{"SecurityAccountId", "ExternalId", "WorkerRoleName", "ResponderRoleName", "ManagementAccountId"} {
		if tpl.Parameters[p] == nil {
			t.Errorf("parameter %s is missing", p)
		}
	}
	if d := tpl.Parameters["ExternalId"]["Default"]; d != nil {
		t.Errorf("ExternalId has a default (%v): every organisation must choose its own", d)
	}

	// Security-critical: only the security account's worker role may assume
	// the responder role, and AssumeRole needs the ExternalId.
	role := tpl.Resources[resourcesOfType(tpl, "AWS::IAM::Role")[0]]["Properties"].(map[string]any)
	trust := role["AssumeRolePolicyDocument"].(map[string]any)["Statement"].([]any)
	wantPrincipal := `{"AWS":{"Fn::Sub":"arn:${AWS::Partition}:iam::${SecurityAccountId}:role/${WorkerRoleName}"}}`
	assume := false
	for i, s := range trust {
		st := statement{where: fmt.Sprintf("trust statement %d", i), raw: s.(map[string]any)}
		if st.effect() != "Allow" {
			continue
		}
		if p, _ := json.Marshal(st.raw["Principal"]); string(p) != wantPrincipal {
			t.Errorf("%s trusts %s, want only the worker role %s", st.where, p, wantPrincipal)
		}
		if slices.Contains(st.actions(), "sts:AssumeRole") {
			assume = true
			cond, _ := json.Marshal(st.raw["Condition"])
			if string(cond) != `{"StringEquals":{"sts:ExternalId":{"Ref":"ExternalId"}}}` {
				t.Errorf("%s: sts:AssumeRole without the ExternalId condition: %s", st.where, cond)
			}
		}
	}
	if !assume {
		t.Error("the trust policy allows no sts:AssumeRole")
	}
	if d := role["MaxSessionDuration"]; fmt.Sprint(d) != "3600" {
		t.Errorf("MaxSessionDuration %v: chained role sessions last an hour at most, so ask for no more", d)
	}
}

// props returns the properties of resource n of tpl.
func (tpl *template) props(t *testing.T, n string) map[string]any {
	t.Helper()
	r := tpl.Resources[n]
	if r == nil {
		t.Fatalf("%s: no resource %s", filepath.Base(tpl.path), n)
	}
	return r["Properties"].(map[string]any)
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

// checkRetained checks that deleting the stack keeps the resources.
func checkRetained(t *testing.T, tpl *template, names ...string) {
	t.Helper()
	for _, n := range names {
		if p := tpl.Resources[n]["DeletionPolicy"]; p != "Retain" && p != "Snapshot" {
			t.Errorf("%s: %s would be deleted with the stack (DeletionPolicy %v)", filepath.Base(tpl.path), n, p)
		}
	}
}

// checkEvidenceBucket checks the evidence bucket and its key: Object Lock
// with a default retention, versioning, SSE-KMS under the evidence key,
// public access blocked, abandoned uploads aborted, both kept when the
// stack goes.
func checkEvidenceBucket(t *testing.T, tpl *template) {
	t.Helper()
	bucket := tpl.props(t, "EvidenceBucket")
	if bucket["ObjectLockEnabled"] != true || !strings.Contains(js(bucket["ObjectLockConfiguration"]), `"DefaultRetention"`) ||
		js(bucket["VersioningConfiguration"]) != `{"Status":"Enabled"}` {
		t.Errorf("evidence bucket without Object Lock default retention and versioning: %s", js(bucket))
	}
	if !strings.Contains(js(bucket["BucketEncryption"]), `"SSEAlgorithm":"aws:kms"`) || !strings.Contains(js(bucket["BucketEncryption"]), `EvidenceKey.Arn`) {
		t.Errorf("evidence bucket not encrypted with the evidence key: %s", js(bucket["BucketEncryption"]))
	}
	if js(bucket["PublicAccessBlockConfiguration"]) != `{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}` {
		t.Errorf("evidence bucket public access block: %s", js(bucket["PublicAccessBlockConfiguration"]))
	}
	// Abandoned resumable uploads are aborted, and nothing else expires:
	// evidence is governed by its retention alone.
	if lc := js(bucket["LifecycleConfiguration"]); !strings.Contains(lc, `"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":7}`) ||
		strings.Contains(lc, "Expiration") || strings.Contains(lc, "Transition") {
		t.Errorf("evidence bucket lifecycle: want only abandoned multipart uploads aborted after 7 days, got %s", lc)
	}
	checkRetained(t, tpl, "EvidenceBucket", "EvidenceKey")
	if tpl.props(t, "EvidenceKey")["EnableKeyRotation"] != true {
		t.Error("the evidence key does not rotate")
	}
}

// TestSecurityTemplateKeepsEvidence checks the security account's evidence,
// store and worker resources.
func TestSecurityTemplateKeepsEvidence(t *testing.T) {
	sec := readTemplate(t, filepath.Join(templateDir, "security-account.yaml"))
	member := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	props := func(n string) map[string]any { t.Helper(); return sec.props(t, n) }

	checkEvidenceBucket(t, sec)
	checkRetained(t, sec, "DataVolume")
	if props("LoadBalancer")["Type"] != "network" || props("ControllerGroup")["MaxSize"] != "1" {
		t.Error("the controller is not one instance behind a Network Load Balancer")
	}
	if p := props("ControllerTargetGroup"); p["Protocol"] != "TCP" {
		t.Errorf("target group protocol %v: mTLS must pass through to the controller", p["Protocol"])
	}
	for _, lt := range []string{"ControllerLaunchTemplate", "WorkerLaunchTemplate"} {
		data := props(lt)["LaunchTemplateData"].(map[string]any)
		if js(data["MetadataOptions"]) != `{"HttpPutResponseHopLimit":1,"HttpTokens":"required"}` {
			t.Errorf("%s does not require IMDSv2: %s", lt, js(data["MetadataOptions"]))
		}
	}

	// The worker role is the one member-account.yaml trusts, and may only
	// assume responder roles in the organisation.
	if sec.Parameters["WorkerRoleName"]["Default"] != member.Parameters["WorkerRoleName"]["Default"] ||
		sec.Parameters["ResponderRoleName"]["Default"] != member.Parameters["ResponderRoleName"]["Default"] {
		t.Error("the two templates' default role names differ")
	}
	var assume *statement
	for _, s := range sec.roleStatements(t, "WorkerRole") {
		if slices.Contains(s.actions(), "sts:AssumeRole") {
			assume = &s
		}
	}
	if assume == nil || js(assume.raw["Resource"]) != `{"Fn::Sub":"arn:${AWS::Partition}:iam::*:role/${ResponderRoleName}"}` ||
		js(assume.raw["Condition"]) != `{"StringEquals":{"aws:ResourceOrgID":{"Ref":"OrganizationId"}}}` {
		t.Errorf("the worker role's AssumeRole is not limited to the organisation's responder roles: %+v", assume)
	}
	if !strings.Contains(js(props("WorkerLaunchTemplate")), "/deploy/systemd/firebreak-agent.service") {
		t.Error("the workers do not run the hardened agent unit from deploy/systemd")
	}
	if strings.Contains(js(sec.Resources), "FIREBREAK_JOIN_TOKEN=${") {
		t.Error("a join token is written into the template")
	}
}

// TestClusterTemplate checks the security account's cluster template
// (security-account-cluster.yaml): controllers over at least two zones
// behind a TCP-passthrough Network Load Balancer whose health check is the
// controllers' gRPC health status, an encrypted private Aurora PostgreSQL
// store whose credentials live only in Secrets Manager, the evidence bucket,
// and a controller role that reads no secret but the cluster's two.
func TestClusterTemplate(t *testing.T) {
	tpl := readTemplate(t, filepath.Join(templateDir, "security-account-cluster.yaml"))
	sec := readTemplate(t, filepath.Join(templateDir, "security-account.yaml"))
	props := func(n string) map[string]any { t.Helper(); return tpl.props(t, n) }

	// Controllers: an Auto Scaling group of at least two over several zones.
	if p := tpl.Parameters["ControllerSubnetIds"]; p == nil || p["Type"] != "List<AWS::EC2::Subnet::Id>" {
		t.Errorf("ControllerSubnetIds is not a list of subnets: %v", p)
	}
	if p := tpl.Parameters["ControllerCount"]; p == nil || !regexp.MustCompile(fmt.Sprint(p["AllowedPattern"])).MatchString("2") ||
		regexp.MustCompile(fmt.Sprint(p["AllowedPattern"])).MatchString("1") {
		t.Errorf("ControllerCount must allow 2 and refuse 1: %v", p)
	}
	group := props("ControllerGroup")
	if js(group["VPCZoneIdentifier"]) != `{"Ref":"ControllerSubnetIds"}` || js(group["MinSize"]) != `{"Ref":"ControllerCount"}` ||
		group["HealthCheckType"] != "ELB" {
		t.Errorf("controller group: %s", js(group))
	}
	if u := tpl.Resources["ControllerGroup"]["UpdatePolicy"]; !strings.Contains(js(u), `"MinInstancesInService":1`) {
		t.Errorf("a rolling update may stop every controller at once: %s", js(u))
	}

	// The load balancer passes TCP through; its health check is /healthz.
	if props("LoadBalancer")["Type"] != "network" {
		t.Error("the controllers are not behind a Network Load Balancer")
	}
	tg := props("ControllerTargetGroup")
	if tg["Protocol"] != "TCP" || tg["HealthCheckProtocol"] != "HTTP" || tg["HealthCheckPath"] != "/healthz" || tg["HealthCheckPort"] != "9464" {
		t.Errorf("target group: mTLS must pass through and the health check ask /healthz on the metrics port: %s", js(tg))
	}
	if l := props("ControllerListener"); l["Protocol"] != "TCP" {
		t.Errorf("listener protocol %v: TLS would end at the load balancer", l["Protocol"])
	}

	// The store: Aurora PostgreSQL, encrypted, private, kept, TLS only.
	db := props("DatabaseCluster")
	if db["Engine"] != "aurora-postgresql" || db["StorageEncrypted"] != true || db["DeletionProtection"] != true ||
		js(db["KmsKeyId"]) != `{"Fn::GetAtt":"DatabaseKey.Arn"}` {
		t.Errorf("database cluster: %s", js(db))
	}
	checkRetained(t, tpl, "DatabaseCluster", "DatabaseKey")
	if !strings.Contains(js(props("DatabaseParameters")["Parameters"]), `"rds.force_ssl":"1"`) {
		t.Error("the store accepts connections without TLS")
	}
	// Security-critical: the password is generated into Secrets Manager and
	// resolved by CloudFormation; no parameter or text of the template holds it.
	if !strings.Contains(js(db["MasterUserPassword"]), "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}") {
		t.Errorf("the master password does not come from the stack's secret: %s", js(db["MasterUserPassword"]))
	}
	if props("DatabaseSecret")["GenerateSecretString"] == nil {
		t.Error("the store's secret is not generated")
	}
	for n, p := range tpl.Parameters {
		if strings.Contains(strings.ToLower(n), "password") || p["NoEcho"] != nil {
			t.Errorf("parameter %s carries a secret: secrets belong in Secrets Manager", n)
		}
	}
	instances := resourcesOfType(tpl, "AWS::RDS::DBInstance")
	if len(instances) < 2 {
		t.Errorf("database instances %v: a writer and a reader in another zone are needed to fail over", instances)
	}
	for _, n := range instances {
		if props(n)["PubliclyAccessible"] != false {
			t.Errorf("%s is publicly accessible", n)
		}
	}
	// Only the controllers reach the store, on 5432.
	dbsg := js(props("DatabaseSecurityGroup")["SecurityGroupIngress"])
	if dbsg != `[{"Description":"The controllers","FromPort":5432,"IpProtocol":"tcp","SourceSecurityGroupId":{"Ref":"ControllerSecurityGroup"},"ToPort":5432}]` {
		t.Errorf("the store's security group admits more than the controllers: %s", dbsg)
	}
	if !strings.Contains(js(props("DatabaseSubnetGroup")["SubnetIds"]), `"Ref":"DatabaseSubnetIds"`) {
		t.Error("the store is not in the private database subnets")
	}

	checkEvidenceBucket(t, tpl)

	// The controllers run against the shared store and identity, with the
	// store's TLS verified and no password on the command line.
	lt := js(props("ControllerLaunchTemplate"))
	for _, want := range []string{"--store \\\"postgres://firebreak@${DatabaseCluster.Endpoint.Address}", "sslmode=verify-full",
		"--pki-dir /var/lib/firebreak/pki", "PGPASSFILE=/run/firebreak/pgpass", "--metrics-listen $PRIVATE_IP:9464",
		"--listen $PRIVATE_IP:7443", "--lease-ttl ${LeaseTtl}", "--evidence s3://${EvidenceBucket}/evidence"} {
		if !strings.Contains(lt, want) {
			t.Errorf("the controller launch template lacks %q", want)
		}
	}
	if regexp.MustCompile(`postgres://[^@"]*:[^@"]*@`).MatchString(lt) {
		t.Error("a password is written into the store's URL")
	}
	for _, n := range []string{"ControllerLaunchTemplate", "WorkerLaunchTemplate"} {
		data := props(n)["LaunchTemplateData"].(map[string]any)
		if js(data["MetadataOptions"]) != `{"HttpPutResponseHopLimit":1,"HttpTokens":"required"}` {
			t.Errorf("%s does not require IMDSv2: %s", n, js(data["MetadataOptions"]))
		}
	}

	// Least privilege: no wildcard action; secrets only the cluster's two.
	for _, s := range tpl.roleStatements(t, "ControllerRole") {
		for _, a := range s.actions() {
			if strings.ContainsAny(a, "*?") {
				t.Errorf("%s: action %q is a wildcard", s.where, a)
			}
			if strings.HasPrefix(a, "secretsmanager:") && js(s.raw["Resource"]) != `[{"Ref":"DatabaseSecret"},{"Ref":"PkiSecretArn"}]` {
				t.Errorf("%s: %s on %s, want only the store's and the identity's secrets", s.where, a, js(s.raw["Resource"]))
			}
		}
	}

	// The workers and the role names match the single-controller template.
	for _, p := range []string{"WorkerRoleName", "ResponderRoleName"} {
		if tpl.Parameters[p]["Default"] != sec.Parameters[p]["Default"] {
			t.Errorf("the two security templates' default %s differ", p)
		}
	}
	if js(tpl.Resources["WorkerRole"]) != js(sec.Resources["WorkerRole"]) {
		t.Error("the cluster template's worker role differs from security-account.yaml's")
	}
}

// TestReadinessSimulatesWhatTheRoleGrants holds aws-readiness's permission
// check to the member template: it simulates exactly the actions the
// responder role is granted in every account, so `firebreak readiness`
// fails an account whose role lacks one the plugins call.
func TestReadinessSimulatesWhatTheRoleGrants(t *testing.T) {
	tpl := readTemplate(t, filepath.Join(templateDir, "member-account.yaml"))
	roles := resourcesOfType(tpl, "AWS::IAM::Role")
	granted := map[string]bool{}
	for _, s := range tpl.roleStatements(t, roles[0]) {
		// Grants made only in one account (the management account's
		// organisation reads, the log-archive account's trail reads) are
		// not required of every account's role.
		if s.effect() != "Allow" || s.condition == "IsManagementAccount" || s.condition == "IsLogArchiveAccount" {
			continue
		}
		for _, a := range s.actions() {
			granted[a] = true
		}
	}
	want := sortedKeys(granted)
	got := slices.Sorted(slices.Values(awsreadiness.RequiredActions))
	if !slices.Equal(got, want) {
		t.Fatalf("awsreadiness.RequiredActions =\n%q\nwant what member-account.yaml grants:\n%q", got, want)
	}
}
