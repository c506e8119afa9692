package trailscope

import (
	"testing"
)

func TestClassify(t *testing.T) {
	attacker := iamUserIdentity(exampleAccount, "JaneDoe", exampleKey)
	session := roleIdentity(exampleAccount, "ops", "maintenance", "ASIAQRSTUVWXYZEXAMPLE")
	org := &Classifier{OrgAccounts: map[string]bool{exampleAccount: true, otherAccount: true}}
	type want struct {
		kind, id string
		detail   map[string]string
		public   bool
		outside  bool
	}
	tests := []struct {
		name  string
		ev    event
		class Class
		arts  []want
	}{
		{"CreateUser", event{identity: attacker, source: "iam", name: "CreateUser",
			params:   `{"userName":"Bob","path":"/"}`,
			response: `{"user":{"path":"/","userName":"Bob","userId":"AIDAJ2UKMKIQVBEXAMPLE","arn":"arn:aws:iam::444455556666:user/Bob","createDate":"Jul 15, 2014 9:40:00 PM"}}`},
			Persistence, []want{{kind: KindUser, id: "Bob"}}},
		{"CreateAccessKey for another user", event{identity: attacker, source: "iam", name: "CreateAccessKey",
			params:   `{"userName":"Bob"}`,
			response: `{"accessKey":{"accessKeyId":"AKIAIOSFODNN7EXAMPLE","status":"Active","userName":"Bob","createDate":"Jul 15, 2014 9:41:02 PM"}}`},
			Persistence, []want{{kind: KindAccessKey, id: "AKIAIOSFODNN7EXAMPLE", detail: map[string]string{"userName": "Bob"}}}},
		{"CreateLoginProfile", event{identity: attacker, source: "iam", name: "CreateLoginProfile",
			params:   `{"userName":"Bob","passwordResetRequired":false}`,
			response: `{"loginProfile":{"userName":"Bob","createDate":"Jul 15, 2014 9:42:00 PM","passwordResetRequired":false}}`},
			Persistence, []want{{kind: KindLoginProfile, id: "Bob"}}},
		{"AttachUserPolicy AdministratorAccess", event{identity: attacker, source: "iam", name: "AttachUserPolicy",
			params: `{"userName":"Bob","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"}`},
			Persistence, []want{{kind: KindUserPolicy, id: "Bob", detail: map[string]string{"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}}}},
		{"PutRolePolicy", event{identity: attacker, source: "iam", name: "PutRolePolicy",
			params: `{"roleName":"ops","policyName":"inline-admin","policyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}"}`},
			Persistence, []want{{kind: KindRoleInlinePolicy, id: "ops", detail: map[string]string{"policyName": "inline-admin"}}}},
		{"CreateRole trusting an outside account", event{identity: attacker, source: "iam", name: "CreateRole",
			params:   `{"roleName":"backup-sync","assumeRolePolicyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::999988887777:root\"},\"Action\":\"sts:AssumeRole\"}]}"}`,
			response: `{"role":{"path":"/","roleName":"backup-sync","roleId":"AROAJ2UKMKIQVBEXAMPLE","arn":"arn:aws:iam::444455556666:role/backup-sync","createDate":"May 1, 2024 10:15:00 AM"}}`},
			Persistence, []want{{kind: KindRole, id: "backup-sync", outside: true}}},
		{"UpdateAssumeRolePolicy within the organisation", event{identity: attacker, source: "iam", name: "UpdateAssumeRolePolicy",
			params: `{"roleName":"ops","policyDocument":"{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"111122223333\"},\"Action\":\"sts:AssumeRole\"}}"}`},
			Persistence, []want{{kind: KindRoleTrust, id: "ops"}}},
		{"CreateFunction20150331", event{identity: session, source: "lambda", name: "CreateFunction20150331", region: "eu-west-1",
			params:   `{"functionName":"sync-helper","runtime":"python3.12","role":"arn:aws:iam::444455556666:role/lambda-exec","handler":"index.handler","code":{},"publish":false}`,
			response: `{"functionName":"sync-helper","functionArn":"arn:aws:lambda:eu-west-1:444455556666:function:sync-helper","runtime":"python3.12","state":"Pending"}`},
			Persistence, []want{{kind: KindFunction, id: "sync-helper"}}},
		{"UpdateFunctionCode20150331v2", event{identity: session, source: "lambda", name: "UpdateFunctionCode20150331v2",
			params: `{"functionName":"order-processor","publish":false,"dryRun":false}`},
			Persistence, []want{{kind: KindFunctionCode, id: "order-processor"}}},
		{"RunInstances", event{identity: session, source: "ec2", name: "RunInstances", region: "us-west-2",
			params:   `{"instancesSet":{"items":[{"imageId":"ami-0abcdef1234567890","minCount":1,"maxCount":1}]},"instanceType":"c5.4xlarge"}`,
			response: `{"requestId":"e3f0c5c8-EXAMPLE","reservationId":"r-0123456789abcdef0","ownerId":"444455556666","instancesSet":{"items":[{"instanceId":"i-0123456789abcdef0","imageId":"ami-0abcdef1234567890"},{"instanceId":"i-0fedcba9876543210","imageId":"ami-0abcdef1234567890"}]}}`},
			Persistence, []want{{kind: KindInstance, id: "i-0123456789abcdef0"}, {kind: KindInstance, id: "i-0fedcba9876543210"}}},
		{"ImportKeyPair", event{identity: session, source: "ec2", name: "ImportKeyPair",
			params:   `{"keyName":"ops-backup","publicKeyMaterial":"<sensitiveDataRemoved>"}`,
			response: `{"requestId":"b6e1b3c4-EXAMPLE","keyName":"ops-backup","keyFingerprint":"1f:51:ae:28:bf:89:e9:d8:1f:25:5d:37:2d:7d:b8:ca","keyPairId":"key-0123456789abcdef0"}`},
			Persistence, []want{{kind: KindKeyPair, id: "ops-backup"}}},
		{"EventBridge PutRule", event{identity: session, source: "events", name: "PutRule",
			params:   `{"name":"nightly-sync","scheduleExpression":"rate(5 minutes)","state":"ENABLED"}`,
			response: `{"ruleArn":"arn:aws:events:us-east-1:444455556666:rule/nightly-sync"}`},
			Persistence, []want{{kind: KindEventRule, id: "nightly-sync"}}},
		{"StopLogging", event{identity: session, source: "cloudtrail", name: "StopLogging",
			params: `{"name":"arn:aws:cloudtrail:us-east-1:444455556666:trail/management-events"}`},
			DefenceEvasion, []want{{kind: KindTrailLogging, id: "arn:aws:cloudtrail:us-east-1:444455556666:trail/management-events"}}},
		{"DeleteTrail", event{identity: session, source: "cloudtrail", name: "DeleteTrail", params: `{"name":"management-events"}`},
			DefenceEvasion, []want{{kind: KindTrail, id: "management-events"}}},
		{"PutEventSelectors", event{identity: session, source: "cloudtrail", name: "PutEventSelectors",
			params: `{"trailName":"management-events","eventSelectors":[{"readWriteType":"ReadOnly","includeManagementEvents":true,"dataResources":[]}]}`},
			DefenceEvasion, []want{{kind: KindTrailSelectors, id: "management-events"}}},
		{"GuardDuty DeleteDetector", event{identity: session, source: "guardduty", name: "DeleteDetector",
			params: `{"detectorId":"12abc34d567e8fa901bc2d34eexample"}`},
			DefenceEvasion, []want{{kind: KindDetector, id: "12abc34d567e8fa901bc2d34eexample"}}},
		{"GuardDuty UpdateDetector disable", event{identity: session, source: "guardduty", name: "UpdateDetector",
			params: `{"detectorId":"12abc34d567e8fa901bc2d34eexample","enable":false}`},
			DefenceEvasion, []want{{kind: KindDetector, id: "12abc34d567e8fa901bc2d34eexample"}}},
		{"GuardDuty UpdateDetector frequency only", event{identity: session, source: "guardduty", name: "UpdateDetector",
			params: `{"detectorId":"12abc34d567e8fa901bc2d34eexample","findingPublishingFrequency":"SIX_HOURS"}`},
			DefenceEvasion, nil},
		{"DisableSecurityHub", event{identity: session, source: "securityhub", name: "DisableSecurityHub"},
			DefenceEvasion, []want{{kind: KindSecurityHub, id: "hub"}}},
		{"StopConfigurationRecorder", event{identity: session, source: "config", name: "StopConfigurationRecorder",
			params: `{"configurationRecorderName":"default"}`},
			DefenceEvasion, []want{{kind: KindConfigRecorder, id: "default"}}},
		{"AuthorizeSecurityGroupIngress port 22 from anywhere", event{identity: session, source: "ec2", name: "AuthorizeSecurityGroupIngress",
			params:   `{"groupId":"sg-0123456789abcdef0","ipPermissions":{"items":[{"ipProtocol":"tcp","fromPort":22,"toPort":22,"groups":{},"ipRanges":{"items":[{"cidrIp":"0.0.0.0/0"}]},"ipv6Ranges":{},"prefixListIds":{}}]}}`,
			response: `{"requestId":"e3f0c5c8-EXAMPLE","_return":true,"securityGroupRuleSet":{"items":[{"groupOwnerId":"444455556666","groupId":"sg-0123456789abcdef0","securityGroupRuleId":"sgr-0123456789abcdef0","isEgress":false,"ipProtocol":"tcp","fromPort":22,"toPort":22,"cidrIpv4":"0.0.0.0/0"}]}}`},
			Exposure, []want{{kind: KindIngressRule, id: "sg-0123456789abcdef0", public: true,
				detail: map[string]string{"ipProtocol": "tcp", "fromPort": "22", "toPort": "22", "cidrIp": "0.0.0.0/0"}}}},
		{"PutBucketPolicy public", event{identity: session, source: "s3", name: "PutBucketPolicy",
			params: `{"bucketPolicy":{"Version":"2012-10-17","Statement":[{"Sid":"Public","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::example-bucket/*"}]},"bucketName":"example-bucket","Host":"example-bucket.s3.us-east-1.amazonaws.com","policy":""}`},
			Exposure, []want{{kind: KindBucketPolicy, id: "example-bucket", public: true}}},
		{"PutBucketAcl public-read", event{identity: session, source: "s3", name: "PutBucketAcl",
			params: `{"bucketName":"example-bucket","Host":"example-bucket.s3.us-east-1.amazonaws.com","acl":[""],"x-amz-acl":["public-read"]}`},
			Exposure, []want{{kind: KindBucketACL, id: "example-bucket", public: true, detail: map[string]string{"cannedAcl": "public-read"}}}},
		{"ModifySnapshotAttribute shared outside", event{identity: session, source: "ec2", name: "ModifySnapshotAttribute",
			params: `{"snapshotId":"snap-0123456789abcdef0","createVolumePermission":{"add":{"items":[{"userId":"999988887777"}]}},"attributeType":"CREATE_VOLUME_PERMISSION"}`},
			Exposure, []want{{kind: KindSnapshotShare, id: "snap-0123456789abcdef0", outside: true, detail: map[string]string{"userId": outsideAccount}}}},
		{"ModifyImageAttribute made public", event{identity: session, source: "ec2", name: "ModifyImageAttribute",
			params: `{"imageId":"ami-0abcdef1234567890","launchPermission":{"add":{"items":[{"group":"all"}]}},"attributeType":"launchPermission"}`},
			Exposure, []want{{kind: KindImageShare, id: "ami-0abcdef1234567890", public: true, detail: map[string]string{"group": "all"}}}},
		{"S3 GetObject data event", event{identity: session, source: "s3", name: "GetObject", category: "Data", readOnly: true,
			params: `{"bucketName":"example-bucket","Host":"example-bucket.s3.us-east-1.amazonaws.com","key":"payroll/2024.csv"}`},
			DataAccess, nil},
		{"DescribeInstances", event{identity: session, source: "ec2", name: "DescribeInstances", readOnly: true,
			params: `{"instancesSet":{},"filterSet":{}}`},
			Reconnaissance, nil},
		{"ListBuckets", event{identity: attacker, source: "s3", name: "ListBuckets", readOnly: true,
			params: `{"Host":"s3.amazonaws.com"}`},
			Reconnaissance, nil},
		{"AssumeRole", event{identity: attacker, source: "sts", name: "AssumeRole",
			params: `{"roleArn":"arn:aws:iam::111122223333:role/ops","roleSessionName":"maintenance","durationSeconds":3600}`},
			Session, nil},
		{"CreateUser refused leaves nothing", event{identity: attacker, source: "iam", name: "CreateUser", errorCode: "AccessDenied",
			params: `{"userName":"Mallory"}`},
			Persistence, nil},
		{"an unlisted write", event{identity: session, source: "ec2", name: "CreateTags",
			params: `{"resourcesSet":{"items":[{"resourceId":"i-0123456789abcdef0"}]},"tagSet":{"items":[{"key":"Name","value":"x"}]}}`},
			OtherWrite, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := org.Classify(tt.ev.record(t))
			if got.Class != tt.class {
				t.Fatalf("class %q, want %q", got.Class, tt.class)
			}
			if len(got.Artifacts) != len(tt.arts) {
				t.Fatalf("artifacts %+v, want %d", got.Artifacts, len(tt.arts))
			}
			for i, w := range tt.arts {
				a := got.Artifacts[i]
				if a.Kind != w.kind || a.ID != w.id || a.Public != w.public || a.Outside != w.outside {
					t.Fatalf("artifact %d: %+v, want %+v", i, a, w)
				}
				if a.Account != tt.ev.record(t).Account() || a.Region == "" || a.EventID == "" {
					t.Fatalf("artifact %d is not located: %+v", i, a)
				}
				for k, v := range w.detail {
					if a.Detail[k] != v {
						t.Fatalf("artifact %d detail %s = %q, want %q", i, k, a.Detail[k], v)
					}
				}
			}
		})
	}
}

func TestTrustOutsideNeedsTheOrganisation(t *testing.T) {
	ev := event{identity: iamUserIdentity(exampleAccount, "JaneDoe", exampleKey), source: "iam", name: "UpdateAssumeRolePolicy",
		params: `{"roleName":"ops","policyDocument":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"arn:aws:iam::111122223333:root\",\"*\"]},\"Action\":\"sts:AssumeRole\"}]}"}`}
	// Principal "*" is outside whatever the organisation is.
	for _, c := range []*Classifier{{}, {OrgAccounts: map[string]bool{exampleAccount: true, otherAccount: true}}} {
		got := c.Classify(ev.record(t))
		if len(got.Artifacts) != 1 || !got.Artifacts[0].Outside {
			t.Fatalf("trust in \"*\" is not outside: %+v", got.Artifacts)
		}
	}
}
