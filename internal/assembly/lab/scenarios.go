package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/controller/apiview/storeview"
	"github.com/firebreak-ir/firebreak/controller/dispatch"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/netns"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

func init() {
	register(&Scenario{Name: "ec2-compromise", Playbook: "ec2-instance-compromise",
		Description: "an attacker brute-forces SSH into web-1 (in an Auto Scaling group behind two target groups); GuardDuty reports it",
		setup:       ec2Compromise})
	register(&Scenario{Name: "leaked-key-orgwide", Playbook: "iam-credential-compromise",
		Description: "a CI deployer's access key leaks and is used from outside AWS; nobody knows which account holds it",
		setup:       leakedKey})
	register(&Scenario{Name: "public-bucket", Playbook: "s3-public-exposure",
		Description: "a bucket is opened to anonymous readers; GuardDuty reports the policy change",
		setup:       publicBucket})
}

const region = "us-east-1"

// guardDutyEvent renders an EventBridge "GuardDuty Finding" event in the
// public finding format.
func guardDutyEvent(account, findingType string, severity float64, resource map[string]any, action map[string]any, firstSeen time.Time) []byte {
	now := time.Now().UTC()
	sum := sha256.Sum256([]byte(fmt.Sprint(findingType, account, resource, now.UnixNano())))
	id := hex.EncodeToString(sum[:16])
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	detail := map[string]any{
		"schemaVersion": "2.0", "accountId": account, "region": region, "partition": "aws", "id": id,
		"arn":      fmt.Sprintf("arn:aws:guardduty:%s:%s:detector/lab0000000000000000000000000000/finding/%s", region, account, id),
		"type":     findingType,
		"resource": resource,
		"service": map[string]any{
			"serviceName": "guardduty", "detectorId": "lab0000000000000000000000000000", "archived": false, "count": 42,
			"eventFirstSeen": ts(firstSeen), "eventLastSeen": ts(now), "resourceRole": "TARGET", "action": action,
		},
		"severity": severity, "createdAt": ts(firstSeen), "updatedAt": ts(now),
		"title":       fmt.Sprintf("%s (firebreak lab drill)", findingType),
		"description": "Emulated finding sent by `firebreak lab`; it describes activity in the emulated organisation only.",
	}
	ev := map[string]any{
		"version": "0", "id": id[:8] + "-lab0-" + id[8:12] + "-" + id[12:16] + "-" + id[16:28], "detail-type": "GuardDuty Finding",
		"source": "aws.guardduty", "account": account, "time": ts(now), "region": region, "resources": []any{}, "detail": detail,
	}
	b, _ := json.Marshal(ev)
	return b
}

// ec2Compromise: SSH brute force against web-1.
func ec2Compromise(ctx context.Context, e *Env) (*attack, error) {
	h := e.Hosts[0]
	var session net.Conn
	var echo *netns.EchoServer
	if e.Net != nil {
		var err error
		if echo, err = e.Net.ListenEcho(h.Name, 2222); err != nil {
			return nil, err
		}
		session, err = e.Net.DialTCP("attacker", netip.AddrPortFrom(e.Net.Addr(h.Name), echo.Port()), 3*time.Second)
		if err != nil {
			return nil, fmt.Errorf("the attacker cannot reach %s before the drill: %w", h.Name, err)
		}
		if err := netns.RoundTrip(session, []byte("id\n"), 3*time.Second); err != nil {
			return nil, fmt.Errorf("the attacker's session does not work before the drill: %w", err)
		}
		e.say("attacker: holds a shell-like TCP session to %s (%s) port %d", h.Name, e.Net.Addr(h.Name), echo.Port())
	}
	resource := map[string]any{
		"resourceType": "Instance",
		"instanceDetails": map[string]any{
			"instanceId": h.InstanceID, "instanceType": "t3.medium", "availabilityZone": region + "a",
			"tags": []map[string]string{{"key": "Name", "value": h.Name}},
		},
	}
	action := map[string]any{
		"actionType": "NETWORK_CONNECTION",
		"networkConnectionAction": map[string]any{
			"connectionDirection": "INBOUND", "protocol": "TCP", "blocked": false,
			"localPortDetails":  map[string]any{"port": 22, "portName": "SSH"},
			"remoteIpDetails":   map[string]any{"ipAddressV4": "198.51.100.23", "country": map[string]any{"countryName": "Example"}},
			"remotePortDetails": map[string]any{"port": 45872},
		},
	}
	event := guardDutyEvent(e.Member, "UnauthorizedAccess:EC2/SSHBruteForce", 8.0, resource, action, time.Now().Add(-90*time.Second))
	return &attack{event: event, verify: func(ctx context.Context, e *Env, run *playbookrun.Run) []Check {
		checks := e.instanceChecks(h.InstanceID, h.Name)
		if e.Net == nil {
			checks = append(checks, Check{Name: "in-guest isolation", OK: true,
				Detail: "not exercised: simulated hosts cannot change a real firewall (run the lab as root for nftables in namespaces)"})
		} else {
			checks = append(checks, e.trafficChecks(ctx, h, session, echo)...)
		}
		return append(checks, evidenceCheck(run, "collect"))
	}}, nil
}

// instanceChecks reads the emulator's state for the contained instance.
func (e *Env) instanceChecks(instanceID, name string) []Check {
	st := e.AWS.Emu.Dump()
	var rs *awsemu.RegionState
	for _, a := range st.Accounts {
		if a.ID != e.Member {
			continue
		}
		for i := range a.Resources {
			if a.Resources[i].Region == region {
				rs = &a.Resources[i]
			}
		}
	}
	if rs == nil {
		return []Check{{Name: "AWS state", OK: false, Detail: "the member account has no resources in " + region}}
	}
	groups := map[string]awsemu.SecurityGroupState{}
	for _, g := range rs.SecurityGroups {
		groups[g.ID] = g
	}
	var inst *awsemu.InstanceState
	for i := range rs.Instances {
		if rs.Instances[i].ID == instanceID {
			inst = &rs.Instances[i]
		}
	}
	if inst == nil {
		return []Check{{Name: "AWS state", OK: false, Detail: "instance " + instanceID + " is gone"}}
	}
	var checks []Check
	isolated, detail := true, ""
	for _, eni := range rs.NetworkInterfaces {
		if eni.Instance != instanceID {
			continue
		}
		for _, gid := range eni.Groups {
			g := groups[gid]
			if !strings.HasPrefix(g.Name, "firebreak-isolation") || len(g.Ingress) > 0 {
				isolated = false
			}
			detail += fmt.Sprintf("%s in %s (%s, %d ingress, %d egress rules); ", eni.ID, g.Name, gid, len(g.Ingress), len(g.Egress))
		}
	}
	checks = append(checks, Check{Name: "AWS: network interfaces in the isolation group", OK: isolated && detail != "", Detail: strings.TrimSuffix(detail, "; ")})
	_, tagged := inst.Tags["firebreak:isolated-at"]
	checks = append(checks, Check{Name: "AWS: termination protection and isolation tags", OK: inst.DisableAPITermination && tagged,
		Detail: fmt.Sprintf("disableApiTermination=%v, firebreak:isolated-at tagged=%v, shutdown=%s", inst.DisableAPITermination, tagged, inst.ShutdownBehavior)})
	inTG := []string{}
	for _, tg := range rs.TargetGroups {
		for _, t := range tg.Targets {
			// A deregistered target drains for a while, as in AWS; it takes
			// no new connections.
			if t.ID == instanceID && t.State != "draining" {
				inTG = append(inTG, tg.Name+" ("+t.State+")")
			}
		}
	}
	checks = append(checks, Check{Name: "AWS: out of every load-balancer target group", OK: len(inTG) == 0,
		Detail: fmt.Sprintf("still registered in: %v", inTG)})
	asgOK, asgDetail := true, "not in an Auto Scaling group"
	for _, g := range rs.AutoScalingGroups {
		for id, state := range g.Instances {
			if id == instanceID {
				asgOK = state == "Standby"
				asgDetail = fmt.Sprintf("%s: %s", g.Name, state)
			}
		}
		if asgDetail == "not in an Auto Scaling group" && slices.Contains(g.SuspendedProcesses, "Terminate") {
			asgDetail = g.Name + ": instance detached, Terminate suspended"
		}
	}
	checks = append(checks, Check{Name: "AWS: kept from the Auto Scaling group's replacement and termination", OK: asgOK, Detail: asgDetail})
	_ = name
	return checks
}

// trafficChecks proves in-guest isolation with real TCP: the attacker's
// session is cut, new connections fail, and the responder's channel works.
func (e *Env) trafficChecks(ctx context.Context, h *Host, session net.Conn, echo *netns.EchoServer) []Check {
	var checks []Check
	err := netns.RoundTrip(session, []byte("whoami\n"), 3*time.Second)
	checks = append(checks, Check{Name: "traffic: the attacker's open session is cut", OK: err != nil, Detail: fmt.Sprintf("next exchange: %v", err)})
	c, err := e.Net.DialTCP("attacker", netip.AddrPortFrom(e.Net.Addr(h.Name), echo.Port()), 2*time.Second)
	if c != nil {
		c.Close()
	}
	checks = append(checks, Check{Name: "traffic: new attacker connections fail", OK: err != nil, Detail: fmt.Sprintf("dial: %v", err)})
	created, err := e.Controller.Operator.CreateRun(e.admin, &operatorv1.CreateRunRequest{Action: "sysinfo",
		Selector: "label.instance_id=" + h.InstanceID, Deadline: durationpb.New(time.Minute), Reason: "lab: check the responder channel"})
	ok, detail := false, ""
	if err == nil {
		run, werr := e.waitRun(ctx, created.GetRun().GetId())
		if werr == nil && run.GetCounts().GetSucceeded() == 1 {
			ok, detail = true, "sysinfo through the controller succeeded on the isolated host"
		} else {
			detail = fmt.Sprintf("sysinfo run: %v %v", werr, run.GetTasks())
		}
	} else {
		detail = err.Error()
	}
	checks = append(checks, Check{Name: "traffic: the responder's channel stays up", OK: ok, Detail: detail})
	return checks
}

func (e *Env) waitRun(ctx context.Context, id string) (*operatorv1.Run, error) {
	_, sub, err := e.Controller.Dispatcher.Watch(ctx, id)
	if err != nil {
		return nil, err
	}
	if sub != nil {
		defer e.Controller.Dispatcher.Unwatch(sub)
		for m := range sub.C {
			if m.Kind == dispatch.EventDone {
				v := m.Run
				return storeview.RunWithCounts(v.Run, v.Tasks, v.Approvals, v.Counts), nil
			}
		}
	}
	r, err := e.Controller.Operator.GetRun(e.admin, &operatorv1.GetRunRequest{RunId: id})
	if err != nil {
		return nil, err
	}
	return r.GetRun(), nil
}

// evidenceCheck requires a step to have stored evidence.
func evidenceCheck(run *playbookrun.Run, stepID string) Check {
	st := run.Step(stepID)
	if st == nil {
		return Check{Name: "evidence collected", OK: false, Detail: "no step " + stepID}
	}
	ids := st.EvidenceIDs()
	return Check{Name: "evidence collected (" + stepID + ")", OK: st.Status == playbookrun.StepSucceeded && len(ids) > 0,
		Detail: fmt.Sprintf("step %s %s with %d evidence items", stepID, st.Status, len(ids))}
}

// staticClient signs with an access key, as an attacker holding it would.
func (e *Env) stsAs(id, secret, token string) *sts.Client {
	return sts.New(sts.Options{Region: region, BaseEndpoint: aws.String(e.AWS.LocalEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, token)})
}

// leakedKey: the member account's ci-deployer key is used by an attacker,
// who also mints a session token from it.
func leakedKey(ctx context.Context, e *Env) (*attack, error) {
	key, err := e.AWS.userKey(e.Member, awsemu.LabCompromisedUser)
	if err != nil {
		return nil, err
	}
	attacker := e.stsAs(key.ID, key.Secret, "")
	if _, err := attacker.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		return nil, fmt.Errorf("the attacker's key does not work before the drill: %w", err)
	}
	minted, err := attacker.GetSessionToken(ctx, &sts.GetSessionTokenInput{DurationSeconds: aws.Int32(3600)})
	if err != nil {
		return nil, fmt.Errorf("the attacker cannot mint a session: %w", err)
	}
	s3c := s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(e.AWS.LocalEndpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")})
	_, _ = s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	e.say("attacker: used key %s (GetCallerIdentity, ListBuckets) and minted a session token from it", key.ID)
	event := leakedKeyFinding(key.ID, "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "s3.amazonaws.com", "ListBuckets")
	mc := minted.Credentials
	return &attack{event: event, verify: func(ctx context.Context, e *Env, run *playbookrun.Run) []Check {
		var checks []Check
		_, err := attacker.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		checks = append(checks, Check{Name: "the leaked key no longer works", OK: err != nil, Detail: fmt.Sprintf("attacker call: %v", errText(err))})
		_, err = e.stsAs(aws.ToString(mc.AccessKeyId), aws.ToString(mc.SecretAccessKey), aws.ToString(mc.SessionToken)).
			GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		_, err2 := s3.New(s3.Options{Region: region, BaseEndpoint: aws.String(e.AWS.LocalEndpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(mc.AccessKeyId), aws.ToString(mc.SecretAccessKey), aws.ToString(mc.SessionToken))}).
			ListBuckets(ctx, &s3.ListBucketsInput{})
		checks = append(checks, Check{Name: "the session minted from it no longer works", OK: err2 != nil,
			Detail: fmt.Sprintf("ListBuckets with the minted session: %v (GetCallerIdentity is never denied by AWS: %v)", errText(err2), errText(err))})
		found := 0
		for _, st := range run.Steps {
			if st.Action != "aws-iam-contain" {
				continue
			}
			for _, t := range st.Targets {
				if t.Status == "succeeded" && jsonHas(t.Output, "status_after", "Inactive") {
					found++
				}
			}
		}
		checks = append(checks, Check{Name: "found and disabled in the account that holds it", OK: found > 0,
			Detail: fmt.Sprintf("%d accounts reported the key deactivated", found)})
		checks = append(checks, evidenceOrResult(run, "aws-cloudtrail-lookup"))
		return checks
	}}, nil
}

// leakedKeyFinding is the GuardDuty finding on the lab CI user's key used
// from outside AWS. It names the key only, in the security account's view:
// the playbook must find which account holds it.
func leakedKeyFinding(keyID, findingType, service, api string) []byte {
	resource := map[string]any{
		"resourceType": "AccessKey",
		"accessKeyDetails": map[string]any{"accessKeyId": keyID, "principalId": "AIDALAB" + strings.ToUpper(keyID[4:12]),
			"userName": awsemu.LabCompromisedUser, "userType": "IAMUser"},
	}
	action := map[string]any{"actionType": "AWS_API_CALL", "awsApiCallAction": map[string]any{
		"api": api, "serviceName": service, "callerType": "Remote IP",
		"remoteIpDetails": map[string]any{"ipAddressV4": "203.0.113.77"}}}
	return guardDutyEvent(awsemu.LabAccountID(1), findingType, 8.0, resource, action, time.Now().Add(-2*time.Minute))
}

// jsonHas reports whether a JSON document holds key: value anywhere.
func jsonHas(b []byte, key, value string) bool {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if s, ok := c.(string); ok && k == key && s == value {
					return true
				}
				if walk(c) {
					return true
				}
			}
		case []any:
			for _, c := range x {
				if walk(c) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

func errText(err error) string {
	if err == nil {
		return "succeeded"
	}
	return clip(err.Error(), 140)
}

// evidenceOrResult requires the steps running an action to have succeeded
// somewhere.
func evidenceOrResult(run *playbookrun.Run, action string) Check {
	n, ev := 0, 0
	for _, st := range run.Steps {
		if st.Action == action && st.Status == playbookrun.StepSucceeded {
			n++
			ev += len(st.EvidenceIDs())
		}
	}
	return Check{Name: action + " ran", OK: n > 0, Detail: fmt.Sprintf("%d steps succeeded, %d evidence items", n, ev)}
}

// publicBucket: a bucket made public.
func publicBucket(ctx context.Context, e *Env) (*attack, error) {
	bucket := ""
	for _, a := range e.AWS.Seed.Accounts {
		if a.ID == e.Member && len(a.Buckets) > 0 {
			bucket = a.Buckets[0].Name
		}
	}
	if bucket == "" {
		return nil, errors.New("the lab seed has no bucket in the member account")
	}
	resource := map[string]any{
		"resourceType": "S3Bucket",
		"s3BucketDetails": []map[string]any{{"name": bucket, "type": "Destination", "arn": "arn:aws:s3:::" + bucket,
			"publicAccess": map[string]any{"effectivePermission": "PUBLIC"}}},
	}
	action := map[string]any{"actionType": "AWS_API_CALL", "awsApiCallAction": map[string]any{"api": "PutBucketAcl", "serviceName": "s3.amazonaws.com"}}
	event := guardDutyEvent(e.Member, "Policy:S3/BucketAnonymousAccessGranted", 7.0, resource, action, time.Now().Add(-time.Minute))
	return &attack{event: event, verify: func(ctx context.Context, e *Env, run *playbookrun.Run) []Check {
		st := e.AWS.Emu.Dump()
		for _, a := range st.Accounts {
			for _, b := range a.Buckets {
				if b.Name != bucket {
					continue
				}
				p := b.PublicAccessBlock
				ok := p != nil && p.BlockPublicAcls && p.IgnorePublicAcls && p.BlockPublicPolicy && p.RestrictPublicBuckets
				return []Check{{Name: "S3: public access blocked on " + bucket, OK: ok, Detail: fmt.Sprintf("public access block %+v", p)}}
			}
		}
		return []Check{{Name: "S3: public access blocked", OK: false, Detail: "bucket " + bucket + " not found"}}
	}}, nil
}
