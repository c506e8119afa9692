package awsemu

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// noDelay retries at once, so tests of the retry path stay fast.
type noDelay struct{}

func (noDelay) BackoffDelay(int, error) (time.Duration, error) { return 0, nil }

func adaptive(cfg aws.Config) aws.Config {
	cfg.Retryer = func() aws.Retryer {
		return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			o.StandardOptions = append(o.StandardOptions, func(so *retry.StandardOptions) {
				so.MaxAttempts = 5
				so.Backoff = noDelay{}
			})
		})
	}
	return cfg
}

// TestThrottlingRetriedBySDK throttles the next two calls of one operation
// per service and checks the SDK's adaptive retryer sees the service's own
// throttling error and gets through on the third attempt.
func TestThrottlingRetriedBySDK(t *testing.T) {
	l := newLab(t, 3)
	responder := adaptive(l.assumeResponder(t, 2))
	worker := adaptive(l.assumeWorker(t))
	org := adaptive(l.orgReader(t))
	tests := []struct {
		service, operation, code string
		call                     func(context.Context) error
	}{
		{"ec2", "DescribeInstances", "RequestLimitExceeded", func(c context.Context) error {
			_, err := ec2.NewFromConfig(responder).DescribeInstances(c, &ec2.DescribeInstancesInput{})
			return err
		}},
		{"iam", "ListRoles", "Throttling", func(c context.Context) error {
			_, err := iam.NewFromConfig(responder).ListRoles(c, &iam.ListRolesInput{})
			return err
		}},
		{"organizations", "ListAccounts", "TooManyRequestsException", func(c context.Context) error {
			_, err := organizations.NewFromConfig(org).ListAccounts(c, &organizations.ListAccountsInput{})
			return err
		}},
		{"cloudtrail", "LookupEvents", "ThrottlingException", func(c context.Context) error {
			_, err := cloudtrail.NewFromConfig(responder).LookupEvents(c, &cloudtrail.LookupEventsInput{})
			return err
		}},
		{"s3", "ListBuckets", "SlowDown", func(c context.Context) error {
			_, err := s3.NewFromConfig(responder, pathStyle).ListBuckets(c, &s3.ListBucketsInput{})
			return err
		}},
		{"lambda", "ListFunctions", "TooManyRequestsException", func(c context.Context) error {
			_, err := lambda.NewFromConfig(responder).ListFunctions(c, &lambda.ListFunctionsInput{})
			return err
		}},
		{"sqs", "GetQueueUrl", "RequestThrottled", func(c context.Context) error {
			_, err := sqs.NewFromConfig(worker).GetQueueUrl(c, &sqs.GetQueueUrlInput{QueueName: aws.String(LabFindingsQueue)})
			return err
		}},
	}
	// The adaptive retryer paces itself after a throttle, so the services
	// run in parallel.
	t.Run("services", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.service, func(t *testing.T) {
				t.Parallel()
				before := l.emu.CallCount(tt.service, tt.operation)
				l.emu.ThrottleNext(tt.service, tt.operation, 2)
				ok(t, tt.call(ctx(t)))
				if n := l.emu.CallCount(tt.service, tt.operation) - before; n < 3 {
					t.Fatalf("%d calls, want 2 throttled and at least 1 retried to success", n)
				}
				var codes []string
				for _, c := range l.emu.Calls() {
					if c.Service == tt.service && c.Operation == tt.operation && c.ErrorCode != "" {
						codes = append(codes, c.ErrorCode)
					}
				}
				if len(codes) != 2 || codes[0] != tt.code {
					t.Fatalf("throttled with %v, want %s twice", codes, tt.code)
				}
			})
		}
	})
	if f := l.emu.Faults(); len(f) != 0 {
		t.Fatalf("spent faults still installed: %+v", f)
	}
}

func TestThrottleRatioAndLatency(t *testing.T) {
	l := newLab(t, 3)
	c := ec2.NewFromConfig(l.assumeResponder(t, 2))
	l.emu.SetFault(Fault{Service: "ec2", Operation: "DescribeRegions", ThrottleRatio: 1})
	_, err := c.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	wantCode(t, err, "RequestLimitExceeded")
	l.emu.ClearFaults()
	l.emu.SetLatency("ec2", "DescribeRegions", time.Hour)
	cctx, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	_, err = c.DescribeRegions(cctx, &ec2.DescribeRegionsInput{})
	// The call must fail because the emulator held it past the client's
	// deadline, not for any other reason (a refused signature, a wrong
	// endpoint): the error is the deadline's, and the emulator logged the
	// call as abandoned by its client during the injected delay.
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call delayed by an hour: %v, want the client's deadline exceeded", err)
	}
	waitFor(t, "the emulator to log the abandoned call", func() bool {
		for _, c := range l.emu.Calls() {
			if c.Service == "ec2" && c.Operation == "DescribeRegions" && c.ErrorCode == "RequestCanceled" {
				return true
			}
		}
		return false
	})
	l.emu.ClearFaults()
	_, err = c.DescribeRegions(ctx(t), &ec2.DescribeRegionsInput{})
	ok(t, err)
}

// waitFor polls cond until it holds, failing after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
