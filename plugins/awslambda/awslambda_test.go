package awslambda_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awslambda"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse/awsresponsetest"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
)

const fn = "order-processor"

type fixture struct {
	lab       *awstest.Lab
	contain   *sdk.Client
	uncontain *sdk.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	lab := awsresponsetest.StartLab(t, awsemu.LabSeed(3), awsresponsetest.NewClock())
	c, err := awslambda.NewContain(awslambda.Config{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := awslambda.NewUncontain(awslambda.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{lab: lab, contain: sdktest.Start(t, c), uncontain: sdktest.Start(t, u)}
}

func (f *fixture) run(t *testing.T, c *sdk.Client, params map[string]any) (*awslambda.Result, *sdktest.Outcome) {
	t.Helper()
	o := sdktest.Execute(context.Background(), t, c, f.lab.Request(t, awstest.Member(0)), params)
	if o.Result == nil {
		return nil, o
	}
	var res awslambda.Result
	o.Output(t, &res)
	if o.Result.GetError() != "" {
		t.Fatalf("task failed with output: %s", o.Result.GetError())
	}
	return &res, o
}

// reserved is the function's reservation in the emulator's dump.
func reserved(t *testing.T, lab *awstest.Lab) *int32 {
	t.Helper()
	for _, a := range lab.Emu.Dump().Accounts {
		if a.ID != awstest.Member(0) {
			continue
		}
		for _, f := range a.Resources[0].Functions {
			if f.Name == fn {
				return f.ReservedConcurrency
			}
		}
	}
	t.Fatal("no function in the dump")
	return nil
}

func show(n *int32) string {
	if n == nil {
		return "none"
	}
	return fmt.Sprint(*n)
}

// TestContainRoundTrips contains the function with a reservation and
// without one, and rolls each back to exactly what it was.
func TestContainRoundTrips(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before *int32
	}{{"reservation of 20", aws.Int32(20)}, {"no reservation", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.before == nil {
				client := lambda.NewFromConfig(awsresponsetest.Responder(t, f.lab, awstest.Member(0)))
				if _, err := client.DeleteFunctionConcurrency(context.Background(), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String(fn)}); err != nil {
					t.Fatal(err)
				}
			}
			if got := reserved(t, f.lab); show(got) != show(tt.before) {
				t.Fatalf("reservation before: %v", got)
			}
			arn := "arn:aws:lambda:" + awstest.Region + ":" + awstest.Member(0) + ":function:" + fn
			res, o := f.run(t, f.contain, map[string]any{"function_name": arn})
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			if res.Outcome != awslambda.OutcomeContained || res.FunctionName != fn || show(res.ReservedConcurrencyBefore) != show(tt.before) {
				t.Fatalf("containment: %+v", res)
			}
			if got := reserved(t, f.lab); got == nil || *got != 0 {
				t.Fatalf("reservation after containment: %v", got)
			}
			again, o := f.run(t, f.contain, map[string]any{"function_name": fn})
			if o.Err != nil || again.Outcome != awslambda.OutcomeAlreadyContained || len(again.APICalls) != 1 {
				t.Fatalf("second containment: %+v %v", again, o.Err)
			}
			noop, o := f.run(t, f.uncontain, map[string]any{"function_name": fn, "rollback_record": again.RollbackRecord})
			if o.Err != nil || noop.Outcome != awslambda.OutcomeNothingToUndo {
				t.Fatalf("rollback of the second containment: %+v %v", noop, o.Err)
			}
			back, o := f.run(t, f.uncontain, map[string]any{"function_name": fn, "rollback_record": res.RollbackRecord})
			if o.Err != nil || back.Outcome != awslambda.OutcomeRestored {
				t.Fatalf("rollback: %+v %v", back, o.Err)
			}
			if got := reserved(t, f.lab); show(got) != show(tt.before) {
				t.Fatalf("reservation after rollback: %v, want %v", got, tt.before)
			}
		})
	}
}

func TestLambdaRefusals(t *testing.T) {
	f := newFixture(t)
	other := "arn:aws:lambda:eu-west-1:" + awstest.Member(0) + ":function:" + fn
	for _, tt := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"another region", map[string]any{"function_name": other}, "is not in account"},
		{"a version", map[string]any{"function_name": awstest.Member(0) + ":function:" + fn + ":3"}, "names a version or alias"},
		{"not a function", map[string]any{"function_name": "no/such"}, "neither a Lambda function name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, o := f.run(t, f.contain, tt.params)
			if st, _ := status.FromError(o.Err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("error %v, want %q", o.Err, tt.want)
			}
		})
	}
	res, o := f.run(t, f.contain, map[string]any{"function_name": fn})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	client := lambda.NewFromConfig(awsresponsetest.Responder(t, f.lab, awstest.Member(0)))
	if _, err := client.PutFunctionConcurrency(context.Background(), &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String(fn), ReservedConcurrentExecutions: aws.Int32(5)}); err != nil {
		t.Fatal(err)
	}
	_, o = f.run(t, f.uncontain, map[string]any{"function_name": fn, "rollback_record": res.RollbackRecord})
	if st, _ := status.FromError(o.Err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "changed it since") {
		t.Fatalf("rollback after a change: %v", o.Err)
	}
	if got := reserved(t, f.lab); got == nil || *got != 5 {
		t.Fatalf("the changed reservation was not left alone: %v", got)
	}
}

func TestLambdaThrottlingIsRetried(t *testing.T) {
	f := newFixture(t)
	f.lab.Emu.ThrottleNext("lambda", "PutFunctionConcurrency", 1)
	res, o := f.run(t, f.contain, map[string]any{"function_name": fn})
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	if len(res.APICalls) != 2 || res.APICalls[1].Operation != "lambda:PutFunctionConcurrency" || res.APICalls[1].Attempts != 2 {
		t.Fatalf("calls %+v", res.APICalls)
	}
}

func TestLambdaDescriptions(t *testing.T) {
	c, _ := awslambda.NewContain(awslambda.Config{})
	u, _ := awslambda.NewUncontain(awslambda.Config{})
	for _, a := range []sdk.Action{c, u} {
		d, err := a.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := sdk.CheckDescription(d); err != nil || !d.GetDestructive() || d.GetRollbackAction() == "" {
			t.Fatalf("%s: %v, destructive %v, rollback %q", d.GetName(), err, d.GetDestructive(), d.GetRollbackAction())
		}
	}
}
