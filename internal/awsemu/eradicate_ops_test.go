package awsemu

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// intruderSeed is the lab with an administrator key ("intruder") in member
// 2, a trail of the member's own and a GuardDuty detector.
func intruderSeed() (*Seed, AccessKeySeed) {
	seed := LabSeed(3)
	key := labKey("intruder/" + LabAccountID(2))
	for i := range seed.Accounts {
		a := &seed.Accounts[i]
		if a.ID != LabAccountID(2) {
			continue
		}
		a.Users = append(a.Users, UserSeed{Name: "intruder", AccessKeys: []AccessKeySeed{key},
			AttachedPolicies: []string{"arn:aws:iam::aws:policy/AdministratorAccess"}})
		a.Resources[0].Trails = append(a.Resources[0].Trails, TrailSeed{Name: "member-trail", Bucket: "member-trail-logs"})
		a.Resources[0].GuardDuty = &GuardDutySeed{}
	}
	return seed, key
}

// lastRecord is the newest CloudTrail record of an event in an account and
// region, decoded.
func lastRecord(t *testing.T, l *lab, account, region, name string) map[string]any {
	t.Helper()
	log := l.emu.trail.log(trailKey{account, region})
	log.mu.Lock()
	defer log.mu.Unlock()
	for i := len(log.events) - 1; i >= 0; i-- {
		if ev := log.events[i]; ev.name == name {
			var out map[string]any
			ok(t, json.Unmarshal([]byte(ev.record), &out))
			return out
		}
	}
	t.Fatalf("no %s event in %s/%s", name, account, region)
	return nil
}

// at reads a path of keys out of a decoded record.
func at(v any, path ...string) any {
	for _, k := range path {
		m, isMap := v.(map[string]any)
		if !isMap {
			return nil
		}
		v = m[k]
	}
	return v
}

// TestEradicationOperations drives each operation an attacker's persistence
// and its eradication use through the real SDK, and checks the state it
// leaves and the CloudTrail record AWS would write (requestParameters and
// responseElements in CloudTrail's lower-camel shape).
func TestEradicationOperations(t *testing.T) {
	seed, key := intruderSeed()
	l := newLabFrom(t, seed, false)
	member := LabAccountID(2)
	cfg := l.keyCfg(key)
	im, lm, eb := iam.NewFromConfig(cfg), lambda.NewFromConfig(cfg), eventbridge.NewFromConfig(cfg)
	ec, ct, gd := ec2.NewFromConfig(cfg), cloudtrail.NewFromConfig(cfg), guardduty.NewFromConfig(cfg)
	outsideTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999988887777:root"},"Action":"sts:AssumeRole"}]}`
	ownTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	web1 := labEC2ID("i", member+"/web-1")
	web1Root := labEC2ID("vol", member+"/web-1/root")

	steps := []struct {
		name   string
		run    func() error
		code   string
		event  string         // the event recorded, when the step checks it
		region string         // "" is us-east-1
		want   map[string]any // dotted paths of the record and their values
	}{
		{name: "CreateUser", run: func() error {
			_, err := im.CreateUser(ctx(t), &iam.CreateUserInput{UserName: aws.String("backdoor")})
			return err
		}, event: "CreateUser", want: map[string]any{"requestParameters.userName": "backdoor",
			"responseElements.user.userName": "backdoor", "responseElements.user.arn": "arn:aws:iam::" + member + ":user/backdoor"}},
		{name: "CreateUser twice", run: func() error {
			_, err := im.CreateUser(ctx(t), &iam.CreateUserInput{UserName: aws.String("Backdoor")})
			return err
		}, code: "EntityAlreadyExists"},
		{name: "CreateAccessKey for the backdoor", run: func() error {
			_, err := im.CreateAccessKey(ctx(t), &iam.CreateAccessKeyInput{UserName: aws.String("backdoor")})
			return err
		}},
		{name: "AttachUserPolicy", run: func() error {
			_, err := im.AttachUserPolicy(ctx(t), &iam.AttachUserPolicyInput{UserName: aws.String("backdoor"), PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")})
			return err
		}},
		{name: "DeleteUser with a key left", run: func() error {
			_, err := im.DeleteUser(ctx(t), &iam.DeleteUserInput{UserName: aws.String("backdoor")})
			return err
		}, code: "DeleteConflict"},
		{name: "DeleteUser after its key and policy", run: func() error {
			keys, err := im.ListAccessKeys(ctx(t), &iam.ListAccessKeysInput{UserName: aws.String("backdoor")})
			if err != nil {
				return err
			}
			for _, k := range keys.AccessKeyMetadata {
				if _, err := im.DeleteAccessKey(ctx(t), &iam.DeleteAccessKeyInput{UserName: aws.String("backdoor"), AccessKeyId: k.AccessKeyId}); err != nil {
					return err
				}
			}
			if _, err := im.DetachUserPolicy(ctx(t), &iam.DetachUserPolicyInput{UserName: aws.String("backdoor"), PolicyArn: aws.String("arn:aws:iam::aws:policy/AdministratorAccess")}); err != nil {
				return err
			}
			_, err = im.DeleteUser(ctx(t), &iam.DeleteUserInput{UserName: aws.String("backdoor")})
			return err
		}, event: "DeleteUser", want: map[string]any{"requestParameters.userName": "backdoor"}},
		{name: "DeleteUser gone", run: func() error {
			_, err := im.DeleteUser(ctx(t), &iam.DeleteUserInput{UserName: aws.String("backdoor")})
			return err
		}, code: "NoSuchEntity"},
		{name: "CreateRole trusting an outside account", run: func() error {
			_, err := im.CreateRole(ctx(t), &iam.CreateRoleInput{RoleName: aws.String("ext-audit"), AssumeRolePolicyDocument: aws.String(outsideTrust)})
			return err
		}, event: "CreateRole", want: map[string]any{"requestParameters.roleName": "ext-audit", "requestParameters.assumeRolePolicyDocument": outsideTrust,
			"responseElements.role.arn": "arn:aws:iam::" + member + ":role/ext-audit"}},
		{name: "UpdateAssumeRolePolicy", run: func() error {
			if _, err := im.UpdateAssumeRolePolicy(ctx(t), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("ext-audit"), PolicyDocument: aws.String(ownTrust)}); err != nil {
				return err
			}
			out, err := im.GetRole(ctx(t), &iam.GetRoleInput{RoleName: aws.String("ext-audit")})
			if err != nil {
				return err
			}
			if doc, _ := url.QueryUnescape(aws.ToString(out.Role.AssumeRolePolicyDocument)); doc != ownTrust {
				return fmt.Errorf("trust policy after the update: %s", doc)
			}
			return nil
		}, event: "UpdateAssumeRolePolicy", want: map[string]any{"requestParameters.roleName": "ext-audit", "requestParameters.policyDocument": ownTrust}},
		{name: "DeleteRole with a policy attached", run: func() error {
			if _, err := im.AttachRolePolicy(ctx(t), &iam.AttachRolePolicyInput{RoleName: aws.String("ext-audit"), PolicyArn: aws.String("arn:aws:iam::aws:policy/ReadOnlyAccess")}); err != nil {
				return err
			}
			_, err := im.DeleteRole(ctx(t), &iam.DeleteRoleInput{RoleName: aws.String("ext-audit")})
			return err
		}, code: "DeleteConflict"},
		{name: "DeleteRole", run: func() error {
			if _, err := im.DetachRolePolicy(ctx(t), &iam.DetachRolePolicyInput{RoleName: aws.String("ext-audit"), PolicyArn: aws.String("arn:aws:iam::aws:policy/ReadOnlyAccess")}); err != nil {
				return err
			}
			_, err := im.DeleteRole(ctx(t), &iam.DeleteRoleInput{RoleName: aws.String("ext-audit")})
			return err
		}, event: "DeleteRole", want: map[string]any{"requestParameters.roleName": "ext-audit"}},
		{name: "CreateFunction", run: func() error {
			_, err := lm.CreateFunction(ctx(t), &lambda.CreateFunctionInput{FunctionName: aws.String("exfil"), Role: aws.String("arn:aws:iam::" + member + ":role/AppInstanceRole"),
				Runtime: lambdatypes.RuntimePython312, Handler: aws.String("index.handler"), Code: &lambdatypes.FunctionCode{ZipFile: []byte("PK\x03\x04 not really a zip")}})
			return err
		}, event: "CreateFunction20150331", want: map[string]any{"requestParameters.functionName": "exfil", "requestParameters.code.zipFile": nil,
			"responseElements.functionArn": "arn:aws:lambda:us-east-1:" + member + ":function:exfil"}},
		{name: "DeleteFunction", run: func() error {
			if _, err := lm.DeleteFunction(ctx(t), &lambda.DeleteFunctionInput{FunctionName: aws.String("exfil")}); err != nil {
				return err
			}
			_, err := lm.GetFunction(ctx(t), &lambda.GetFunctionInput{FunctionName: aws.String("exfil")})
			return err
		}, code: "ResourceNotFoundException", event: "DeleteFunction20150331", want: map[string]any{"requestParameters.functionName": "exfil"}},
		{name: "PutRule", run: func() error {
			_, err := eb.PutRule(ctx(t), &eventbridge.PutRuleInput{Name: aws.String("beacon"), ScheduleExpression: aws.String("rate(5 minutes)")})
			return err
		}, event: "PutRule", want: map[string]any{"requestParameters.name": "beacon", "requestParameters.scheduleExpression": "rate(5 minutes)",
			"responseElements.ruleArn": "arn:aws:events:us-east-1:" + member + ":rule/beacon"}},
		{name: "ListTargetsByRule", run: func() error {
			out, err := eb.ListTargetsByRule(ctx(t), &eventbridge.ListTargetsByRuleInput{Rule: aws.String("beacon")})
			if err == nil && len(out.Targets) != 0 {
				return fmt.Errorf("targets %+v", out.Targets)
			}
			return err
		}},
		{name: "DisableRule", run: func() error {
			if _, err := eb.DisableRule(ctx(t), &eventbridge.DisableRuleInput{Name: aws.String("beacon")}); err != nil {
				return err
			}
			out, err := eb.DescribeRule(ctx(t), &eventbridge.DescribeRuleInput{Name: aws.String("beacon")})
			if err == nil && out.State != "DISABLED" {
				return fmt.Errorf("rule state %s", out.State)
			}
			return err
		}, event: "DisableRule", want: map[string]any{"requestParameters.name": "beacon"}},
		{name: "DeleteRule", run: func() error {
			if _, err := eb.DeleteRule(ctx(t), &eventbridge.DeleteRuleInput{Name: aws.String("beacon")}); err != nil {
				return err
			}
			_, err := eb.DescribeRule(ctx(t), &eventbridge.DescribeRuleInput{Name: aws.String("beacon")})
			return err
		}, code: "ResourceNotFoundException", event: "DeleteRule", want: map[string]any{"requestParameters.name": "beacon"}},
		{name: "ImportKeyPair", run: func() error {
			_, err := ec.ImportKeyPair(ctx(t), &ec2.ImportKeyPairInput{KeyName: aws.String("ops-backdoor"), PublicKeyMaterial: []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE attacker")})
			return err
		}, event: "ImportKeyPair", want: map[string]any{"requestParameters.keyName": "ops-backdoor", "responseElements.keyName": "ops-backdoor"}},
		{name: "DeleteKeyPair", run: func() error {
			if _, err := ec.DeleteKeyPair(ctx(t), &ec2.DeleteKeyPairInput{KeyName: aws.String("ops-backdoor")}); err != nil {
				return err
			}
			_, err := ec.DescribeKeyPairs(ctx(t), &ec2.DescribeKeyPairsInput{KeyNames: []string{"ops-backdoor"}})
			return err
		}, code: "InvalidKeyPair.NotFound", event: "DeleteKeyPair", want: map[string]any{"requestParameters.keyName": "ops-backdoor"}},
		{name: "CreateSnapshot", run: func() error {
			out, err := ec.CreateSnapshot(ctx(t), &ec2.CreateSnapshotInput{VolumeId: aws.String(web1Root), Description: aws.String("firebreak: before stop")})
			if err == nil && aws.ToString(out.VolumeId) != web1Root {
				return fmt.Errorf("snapshot of %s", aws.ToString(out.VolumeId))
			}
			return err
		}, event: "CreateSnapshot", want: map[string]any{"requestParameters.volumeId": web1Root, "responseElements.volumeId": web1Root}},
		{name: "StopInstances", run: func() error {
			out, err := ec.StopInstances(ctx(t), &ec2.StopInstancesInput{InstanceIds: []string{web1}})
			if err != nil {
				return err
			}
			if len(out.StoppingInstances) != 1 || out.StoppingInstances[0].PreviousState.Name != ec2types.InstanceStateNameRunning {
				return fmt.Errorf("state changes %+v", out.StoppingInstances)
			}
			d, err := ec.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{InstanceIds: []string{web1}})
			if err == nil && d.Reservations[0].Instances[0].State.Name != ec2types.InstanceStateNameStopped {
				return fmt.Errorf("instance is %s", d.Reservations[0].Instances[0].State.Name)
			}
			return err
		}, event: "StopInstances", want: map[string]any{"responseElements.instancesSet.items": []any{map[string]any{"instanceId": web1,
			"currentState": map[string]any{"code": float64(64), "name": "stopping"}, "previousState": map[string]any{"code": float64(16), "name": "running"}}}}},
		{name: "StopLogging", run: func() error {
			if _, err := ct.StopLogging(ctx(t), &cloudtrail.StopLoggingInput{Name: aws.String("member-trail")}); err != nil {
				return err
			}
			st, err := ct.GetTrailStatus(ctx(t), &cloudtrail.GetTrailStatusInput{Name: aws.String("member-trail")})
			if err == nil && aws.ToBool(st.IsLogging) {
				return fmt.Errorf("still logging")
			}
			return err
		}, event: "StopLogging", want: map[string]any{"requestParameters.name": "member-trail"}},
		{name: "StartLogging", run: func() error {
			if _, err := ct.StartLogging(ctx(t), &cloudtrail.StartLoggingInput{Name: aws.String("member-trail")}); err != nil {
				return err
			}
			st, err := ct.GetTrailStatus(ctx(t), &cloudtrail.GetTrailStatusInput{Name: aws.String("member-trail")})
			if err == nil && !aws.ToBool(st.IsLogging) {
				return fmt.Errorf("not logging")
			}
			return err
		}, event: "StartLogging", want: map[string]any{"requestParameters.name": "member-trail"}},
		{name: "StopLogging of an unknown trail", run: func() error {
			_, err := ct.StopLogging(ctx(t), &cloudtrail.StopLoggingInput{Name: aws.String("nope")})
			return err
		}, code: "TrailNotFoundException"},
		{name: "UpdateDetector disable then enable", run: func() error {
			list, err := gd.ListDetectors(ctx(t), &guardduty.ListDetectorsInput{})
			if err != nil {
				return err
			}
			detector := list.DetectorIds[0]
			for _, on := range []bool{false, true} {
				if _, err := gd.UpdateDetector(ctx(t), &guardduty.UpdateDetectorInput{DetectorId: aws.String(detector), Enable: aws.Bool(on)}); err != nil {
					return err
				}
				d, err := gd.GetDetector(ctx(t), &guardduty.GetDetectorInput{DetectorId: aws.String(detector)})
				if err != nil {
					return err
				}
				if want := map[bool]string{false: "DISABLED", true: "ENABLED"}[on]; string(d.Status) != want {
					return fmt.Errorf("detector %s, want %s", d.Status, want)
				}
			}
			return nil
		}, event: "UpdateDetector", want: map[string]any{"requestParameters.enable": true}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.run()
			if st.code == "" {
				ok(t, err)
			} else {
				wantCode(t, err, st.code)
			}
			if st.event == "" {
				return
			}
			rec := lastRecord(t, l, member, "us-east-1", st.event)
			if rec["errorCode"] != nil && st.code == "" {
				t.Fatalf("%s recorded as failed: %v", st.event, rec["errorCode"])
			}
			for path, want := range st.want {
				got := at(rec, splitDots(path)...)
				if mustJSONAny(t, got) != mustJSONAny(t, want) {
					t.Errorf("%s %s = %s, want %s", st.event, path, mustJSONAny(t, got), mustJSONAny(t, want))
				}
			}
		})
	}
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func mustJSONAny(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	ok(t, err)
	return string(b)
}
