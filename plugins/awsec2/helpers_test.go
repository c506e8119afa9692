package awsec2_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awsec2/awsec2test"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// labInstance returns the id of the named lab instance of an account.
func labInstance(t testing.TB, lab *awstest.Lab, account, name string) string {
	t.Helper()
	return awsec2test.Instance(t, lab, account, name)
}

// account returns an account's state.
func account(t testing.TB, s *awsemu.State, id string) *awsemu.AccountState {
	t.Helper()
	a := s.Account(id)
	if a == nil {
		t.Fatalf("no account %s in the dump", id)
	}
	return a
}

// region returns an account's state in the lab region.
func region(t testing.TB, s *awsemu.State, account string) *awsemu.RegionState {
	t.Helper()
	a := s.Account(account)
	if a == nil {
		t.Fatalf("no account %s in the dump", account)
	}
	r := a.Region(awstest.Region)
	if r == nil {
		t.Fatalf("no region %s for account %s in the dump", awstest.Region, account)
	}
	return r
}

func instanceState(t testing.TB, r *awsemu.RegionState, id string) awsemu.InstanceState {
	t.Helper()
	for _, in := range r.Instances {
		if in.ID == id {
			return in
		}
	}
	t.Fatalf("no instance %s in the dump", id)
	return awsemu.InstanceState{}
}

func eniState(t testing.TB, r *awsemu.RegionState, id string) awsemu.NetworkInterfaceState {
	t.Helper()
	for _, n := range r.NetworkInterfaces {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("no network interface %s in the dump", id)
	return awsemu.NetworkInterfaceState{}
}

func groupState(t testing.TB, r *awsemu.RegionState, name string) awsemu.AutoScalingGroupState {
	t.Helper()
	for _, g := range r.AutoScalingGroups {
		if g.Name == name {
			return g
		}
	}
	t.Fatalf("no Auto Scaling group %s in the dump", name)
	return awsemu.AutoScalingGroupState{}
}

// withoutHistory drops the emulator's log of security-group changes, which
// is a record of calls rather than state AWS holds.
func withoutHistory(s *awsemu.State) *awsemu.State {
	for i := range s.Accounts {
		for j := range s.Accounts[i].Resources {
			for k := range s.Accounts[i].Resources[j].NetworkInterfaces {
				s.Accounts[i].Resources[j].NetworkInterfaces[k].GroupHistory = nil
			}
		}
	}
	return s
}

// run executes an action in-process against the lab with params.
func run(t testing.TB, a sdk.Action, req *pluginv1.ExecuteRequest, params any) *sdktest.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return sdktest.Execute(ctx, t, sdktest.Start(t, a), req, params)
}

// mustIsolate isolates and decodes the result, failing on any error.
func mustIsolate(t testing.TB, lab *awstest.Lab, cfg awsec2.Config, req *pluginv1.ExecuteRequest, params map[string]any) *awsec2.IsolateResult {
	t.Helper()
	o := run(t, awsec2.NewIsolate(cfg), req, params)
	var res awsec2.IsolateResult
	o.Output(t, &res)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("isolation failed: %v %s\nsteps: %+v", o.Err, o.Result.GetError(), res.Steps)
	}
	return &res
}

// mustUnisolate restores and decodes the result, failing on any error.
func mustUnisolate(t testing.TB, cfg awsec2.Config, req *pluginv1.ExecuteRequest, params map[string]any) *awsec2.UnisolateResult {
	t.Helper()
	o := run(t, awsec2.NewUnisolate(cfg), req, params)
	var res awsec2.UnisolateResult
	o.Output(t, &res)
	if o.Err != nil || o.Result.GetError() != "" {
		t.Fatalf("unisolation failed: %v %s\nsteps: %+v", o.Err, o.Result.GetError(), res.Steps)
	}
	return &res
}

// recordJSON renders a record as the rollback_record parameter.
func recordJSON(t testing.TB, r *awsec2.Record) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mutatingCalls counts the calls the emulator answered that change state.
func mutatingCalls(counts map[string]int) int {
	n := 0
	for k, v := range counts {
		_, op, _ := strings.Cut(k, ":")
		if !strings.HasPrefix(op, "Describe") && !strings.HasPrefix(op, "Get") && !strings.HasPrefix(op, "List") && k != "sts:AssumeRole" {
			n += v
		}
	}
	return n
}

// stepStatus returns the status of a named step.
func stepStatus(steps []awsec2.Step, name string) string {
	i := slices.IndexFunc(steps, func(s awsec2.Step) bool { return s.Name == name })
	if i < 0 {
		return ""
	}
	return steps[i].Status
}

// sqsWith returns an SQS client signed with the given credentials.
func sqsWith(lab *awstest.Lab, c awsemu.Credentials) *sqs.Client {
	return sqs.New(sqs.Options{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)})
}
