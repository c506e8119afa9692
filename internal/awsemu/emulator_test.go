package awsemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// scenario runs a fixed sequence of calls that changes state.
func scenario(t *testing.T, l *lab) {
	t.Helper()
	c := l.memberEC2(t, 2)
	sg, err := c.CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{GroupName: aws.String("iso"), Description: aws.String("iso"),
		VpcId: aws.String(labEC2ID("vpc", LabAccountID(2)+"/prod"))})
	ok(t, err)
	_, err = c.ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(instanceID(2, "web-2")), Groups: []string{aws.ToString(sg.GroupId)}})
	ok(t, err)
	_, err = c.CreateSnapshots(ctx(t), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(instanceID(2, "web-2"))}})
	ok(t, err)
}

func TestDumpIsDeterministic(t *testing.T) {
	var dumps []string
	for range 2 {
		l := newLab(t, 3)
		scenario(t, l)
		b, err := json.Marshal(l.emu.Dump())
		ok(t, err)
		again, err := json.Marshal(l.emu.Dump())
		ok(t, err)
		if !bytes.Equal(b, again) {
			t.Fatal("two dumps of the same state differ")
		}
		dumps = append(dumps, string(b))
	}
	if dumps[0] != dumps[1] {
		t.Fatal("the same seed and calls gave different dumps")
	}
	if !strings.Contains(dumps[0], `"name":"iso"`) || !strings.Contains(dumps[0], `"operation":"ModifyInstanceAttribute"`) {
		t.Fatalf("dump lacks the scenario's changes: %.300s", dumps[0])
	}
}

func TestSeedYAMLRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed func(t *testing.T) *Seed
	}{
		{"lab", func(*testing.T) *Seed { return LabSeed(4) }},
		{"testdata", func(t *testing.T) *Seed {
			f, err := os.Open(filepath.Join("testdata", "seed.yaml"))
			ok(t, err)
			defer f.Close()
			s, err := ParseSeedYAML(f)
			ok(t, err)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seed := tc.seed(t)
			text, err := seed.YAML()
			ok(t, err)
			back, err := ParseSeedYAML(bytes.NewReader(text))
			ok(t, err)
			if !reflect.DeepEqual(seed, back) {
				t.Fatalf("seed changed through YAML:\n%s", text)
			}
			a, err := New(Config{Clock: newTestClock().Now, Seed: seed})
			ok(t, err)
			b, err := New(Config{Clock: newTestClock().Now})
			ok(t, err)
			ok(t, b.LoadSeedYAML(bytes.NewReader(text)))
			if !jsonEqual(t, a.Dump(), b.Dump()) {
				t.Fatal("seeding from the YAML gave another state")
			}
		})
	}
}

func TestSeedFromYAMLFile(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "seed.yaml"))
	ok(t, err)
	defer f.Close()
	seed, err := ParseSeedYAML(f)
	ok(t, err)
	l := newLabFrom(t, seed, false)
	st := l.emu.Dump()
	acct := st.Account("123456789012")
	if acct == nil || len(acct.Users) != 1 || len(acct.Region("eu-west-1").Instances) != 1 {
		t.Fatalf("seeded state %+v", acct)
	}
	in := acct.Region("eu-west-1").Instances[0]
	if in.ID != "i-0a1b2c3d4e5f60718" || in.InstanceProfile == "" || len(in.BlockDevices) != 1 || in.AutoScalingGroup != "app-asg" {
		t.Fatalf("instance %+v", in)
	}
	cfg := l.cfg("AKIAEXAMPLEUSER00001", "examplesecretexamplesecretexamplesecret0", "")
	cfg.Region = "eu-west-1"
	out, err := ec2.NewFromConfig(cfg).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	ok(t, err)
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances[0].NetworkInterfaces) != 2 {
		t.Fatalf("reservations %+v", out.Reservations)
	}
	// With two interfaces, groups change per interface, not per instance.
	root := l.cfg("AKIAEXAMPLEROOT00001", "rootsecretrootsecretrootsecretrootsecret", "")
	root.Region = "eu-west-1"
	_, err = ec2.NewFromConfig(root).ModifyInstanceAttribute(ctx(t), &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(in.ID), Groups: []string{in.SecurityGroups[0]}})
	wantCode(t, err, "InvalidInstanceID")
	_, err = ec2.NewFromConfig(cfg).ModifyNetworkInterfaceAttribute(ctx(t), &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: out.Reservations[0].Instances[0].NetworkInterfaces[1].NetworkInterfaceId, Groups: []string{in.SecurityGroups[0]}})
	wantCode(t, err, "UnauthorizedOperation")
	// The attached customer-managed policy denies IAM explicitly.
	_, err = iam.NewFromConfig(cfg).ListUsers(ctx(t), &iam.ListUsersInput{})
	if apiCode(err) != "AccessDenied" || !strings.Contains(err.Error(), "explicit deny") {
		t.Fatalf("ListUsers under NoIAM: %v", err)
	}
	// The account has not enabled us-east-1, so its keys do not work there.
	cfg.Region = "us-east-1"
	_, err = ec2.NewFromConfig(cfg).DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
	wantCode(t, err, "AuthFailure")
}

func TestSeedErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown field", "accounts:\n  - id: \"123456789012\"\n    colour: red\n", "colour"},
		{"bad account id", "accounts:\n  - id: \"12\"\n", "12 digits"},
		{"bad policy", "accounts:\n  - id: \"123456789012\"\n    users:\n      - name: u\n        inlinePolicies:\n          p: '{\"Statement\":[{\"Effect\":\"Maybe\"}]}'\n", "Invalid effect"},
		{"unknown subnet", "accounts:\n  - id: \"123456789012\"\n    resources:\n      - region: us-east-1\n        instances: [{name: a, subnet: nope}]\n", "unknown subnet"},
		{"region not enabled", "accounts:\n  - id: \"123456789012\"\n    resources:\n      - region: eu-west-1\n", "not enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu, err := New(Config{})
			ok(t, err)
			err = emu.LoadSeedYAML(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
			if len(emu.Dump().Accounts) != 0 {
				t.Fatal("a failed seed left accounts behind")
			}
		})
	}
	emu, err := New(Config{Seed: LabSeed(3)})
	ok(t, err)
	if err := emu.Seed(LabSeed(3)); err == nil {
		t.Fatal("seeding the same accounts twice succeeded")
	}
}

func TestAdminAPI(t *testing.T) {
	l := newLab(t, 3)
	get := func(path string) (int, string) {
		resp, err := http.Get(l.srv.URL + path)
		ok(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(method, path, body string) int {
		req, _ := http.NewRequest(method, l.srv.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		ok(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	_, err := sts.NewFromConfig(l.controller()).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	ok(t, err)

	if code, body := get("/_emu/dump"); code != http.StatusOK || !strings.Contains(body, LabAccountID(2)) {
		t.Fatalf("dump: %d %.200s", code, body)
	}
	if code, body := get("/_emu/calls?service=sts"); code != http.StatusOK || !strings.Contains(body, "GetCallerIdentity") {
		t.Fatalf("calls: %d %.200s", code, body)
	}
	if code, body := get("/_emu/counters"); code != http.StatusOK || !strings.Contains(body, `"sts:GetCallerIdentity": 1`) {
		t.Fatalf("counters: %d %s", code, body)
	}
	if code := post(http.MethodPost, "/_emu/faults", `{"service":"sts","operation":"GetCallerIdentity","throttleNext":1,"latency":"1ms"}`); code != http.StatusNoContent {
		t.Fatalf("set fault: %d", code)
	}
	if code, body := get("/_emu/faults"); code != http.StatusOK || !strings.Contains(body, `"latency": "1ms"`) {
		t.Fatalf("faults: %d %s", code, body)
	}
	_, err = sts.NewFromConfig(l.controller()).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	wantCode(t, err, "Throttling")
	if code := post(http.MethodDelete, "/_emu/faults", ""); code != http.StatusNoContent {
		t.Fatalf("clear faults: %d", code)
	}
	if code := post(http.MethodPost, "/_emu/seed", "accounts:\n  - id: \"999999999999\"\n"); code != http.StatusNoContent {
		t.Fatalf("seed: %d", code)
	}
	if l.emu.Dump().Account("999999999999") == nil {
		t.Fatal("admin seed not applied")
	}
	if code := post(http.MethodPost, fmt.Sprintf("/_emu/messages?account=%s&region=us-east-1&queue=%s", LabAccountID(1), LabFindingsQueue), `{"x":1}`); code != http.StatusOK {
		t.Fatalf("message: %d", code)
	}

	// Security-critical: only loopback callers may use the admin API.
	rec := &responseRecorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, "/_emu/dump", nil)
	req.RemoteAddr = "192.0.2.10:4242"
	l.emu.ServeHTTP(rec, req)
	if rec.status != http.StatusForbidden {
		t.Fatalf("remote admin request answered %d", rec.status)
	}
}

type responseRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *responseRecorder) Header() http.Header         { return r.header }
func (r *responseRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *responseRecorder) WriteHeader(s int)           { r.status = s }

// TestConcurrentIsolation isolates many instances across accounts at once,
// as the benchmark does; run it with -race.
func TestConcurrentIsolation(t *testing.T) {
	l := newLabFrom(t, Lab{Accounts: 6, InstancesPerAccount: 6}.Seed(), false)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for member := 2; member < 6; member++ {
		cfg := l.assumeResponder(t, member)
		c := ec2.NewFromConfig(cfg)
		out, err := c.DescribeInstances(ctx(t), &ec2.DescribeInstancesInput{})
		ok(t, err)
		sg, err := c.CreateSecurityGroup(ctx(t), &ec2.CreateSecurityGroupInput{GroupName: aws.String("iso"), Description: aws.String("iso"),
			VpcId: aws.String(labEC2ID("vpc", LabAccountID(member)+"/prod"))})
		ok(t, err)
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				wg.Go(func() {
					eni := in.NetworkInterfaces[0].NetworkInterfaceId
					if _, err := c.ModifyNetworkInterfaceAttribute(ctx(t), &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: eni, Groups: []string{aws.ToString(sg.GroupId)}}); err != nil {
						errs <- err
						return
					}
					if _, err := c.CreateTags(ctx(t), &ec2.CreateTagsInput{Resources: []string{aws.ToString(in.InstanceId)},
						Tags: []ec2types.Tag{{Key: aws.String("firebreak:isolated"), Value: aws.String("true")}}}); err != nil {
						errs <- err
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("isolation call: %v", err)
	}
	isolated := 0
	for _, a := range l.emu.Dump().Accounts {
		for _, r := range a.Resources {
			for _, in := range r.Instances {
				if in.Tags["firebreak:isolated"] == "true" {
					isolated++
				}
			}
		}
	}
	if isolated != 24 {
		t.Fatalf("%d instances isolated, want 24", isolated)
	}
}
