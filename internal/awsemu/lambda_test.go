package awsemu

import (
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

func TestLambdaConcurrency(t *testing.T) {
	seed := LabSeed(3)
	rs := &seed.Accounts[2].Resources[0]
	for i := range 4 {
		rs.Functions = append(rs.Functions, FunctionSeed{Name: fmt.Sprintf("fn-%d", i)})
	}
	l := newLabFrom(t, seed, false)
	c := lambda.NewFromConfig(l.assumeResponder(t, 2))
	arn := "arn:aws:lambda:us-east-1:" + LabAccountID(2) + ":function:order-processor"

	var names []string
	p := lambda.NewListFunctionsPaginator(c, &lambda.ListFunctionsInput{MaxItems: aws.Int32(2)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx(t))
		ok(t, err)
		for _, f := range out.Functions {
			names = append(names, aws.ToString(f.FunctionName))
		}
	}
	if len(names) != 5 {
		t.Fatalf("functions %v", names)
	}
	fn, err := c.GetFunction(ctx(t), &lambda.GetFunctionInput{FunctionName: aws.String("order-processor")})
	ok(t, err)
	if aws.ToString(fn.Configuration.FunctionArn) != arn || fn.Concurrency == nil || aws.ToInt32(fn.Concurrency.ReservedConcurrentExecutions) != 20 {
		t.Fatalf("function %+v concurrency %+v", fn.Configuration, fn.Concurrency)
	}
	tests := []struct {
		name string
		run  func() error
		code string
	}{
		{"get by ARN", func() error {
			out, err := c.GetFunctionConcurrency(ctx(t), &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String(arn)})
			if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) != 20 {
				return fmt.Errorf("concurrency %d", aws.ToInt32(out.ReservedConcurrentExecutions))
			}
			return err
		}, ""},
		{"throttle to zero", func() error {
			out, err := c.PutFunctionConcurrency(ctx(t), &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("order-processor"), ReservedConcurrentExecutions: aws.Int32(0)})
			if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) != 0 {
				return fmt.Errorf("concurrency %d", aws.ToInt32(out.ReservedConcurrentExecutions))
			}
			return err
		}, ""},
		{"reserve too much", func() error {
			_, err := c.PutFunctionConcurrency(ctx(t), &lambda.PutFunctionConcurrencyInput{FunctionName: aws.String("fn-1"), ReservedConcurrentExecutions: aws.Int32(950)})
			return err
		}, "InvalidParameterValueException"},
		{"delete", func() error {
			_, err := c.DeleteFunctionConcurrency(ctx(t), &lambda.DeleteFunctionConcurrencyInput{FunctionName: aws.String("order-processor")})
			return err
		}, ""},
		{"get after delete", func() error {
			out, err := c.GetFunctionConcurrency(ctx(t), &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("order-processor")})
			if err == nil && out.ReservedConcurrentExecutions != nil {
				return fmt.Errorf("concurrency still %d", aws.ToInt32(out.ReservedConcurrentExecutions))
			}
			return err
		}, ""},
		{"missing function", func() error {
			_, err := c.GetFunction(ctx(t), &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
			return err
		}, "ResourceNotFoundException"},
		{"no permission", func() error {
			_, err := lambda.NewFromConfig(l.assumeWorker(t)).ListFunctions(ctx(t), &lambda.ListFunctionsInput{})
			return err
		}, "AccessDeniedException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if tt.code == "" {
				ok(t, err)
				return
			}
			wantCode(t, err, tt.code)
		})
	}
}
