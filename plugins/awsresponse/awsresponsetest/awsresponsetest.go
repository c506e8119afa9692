// Package awsresponsetest helps test the AWS response actions against the
// emulator: a lab organisation on a clock the test moves, the "attacker"
// holding a member account's leaked ci-deployer key, and clients that act
// as the responder role, all through the real SDK.
package awsresponsetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Clock is an emulated clock the test moves by hand or by Sleep. It is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at a fixed, whole-second time.
func NewClock() *Clock { return &Clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Sleep advances the clock by d at once instead of waiting.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d > 0 {
		c.Advance(d)
	}
	return nil
}

// StartLab runs the emulator with seed on clock until the test ends.
func StartLab(t testing.TB, seed *awsemu.Seed, clock *Clock) *awstest.Lab {
	t.Helper()
	emu, err := awsemu.New(awsemu.Config{Seed: seed, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	endpoint, stop, err := emu.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	return &awstest.Lab{Emu: emu, Endpoint: endpoint, Seed: seed}
}

// LeakedKey returns the ci-deployer access key of account: the lab's
// stolen key.
func LeakedKey(t testing.TB, lab *awstest.Lab, account string) awsemu.AccessKeySeed {
	t.Helper()
	for _, a := range lab.Seed.Accounts {
		if a.ID != account {
			continue
		}
		for _, u := range a.Users {
			if u.Name == awsemu.LabCompromisedUser && len(u.AccessKeys) > 0 {
				return u.AccessKeys[0]
			}
		}
	}
	t.Fatalf("account %s has no %s key in the seed", account, awsemu.LabCompromisedUser)
	return awsemu.AccessKeySeed{}
}

// StaticConfig returns an SDK configuration for static credentials at the
// lab's endpoint, making each call once (no retries), as an attacker's
// script would see refusals.
func StaticConfig(lab *awstest.Lab, id, secret, token string) aws.Config {
	return aws.Config{
		Region:       awstest.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, token),
		BaseEndpoint: aws.String(lab.Endpoint),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 1 })
		},
	}
}

// Attacker returns an SDK configuration signed with account's leaked key.
func Attacker(t testing.TB, lab *awstest.Lab, account string) aws.Config {
	t.Helper()
	k := LeakedKey(t, lab, account)
	return StaticConfig(lab, k.ID, k.Secret, "")
}

// Responder returns an SDK configuration acting as account's responder
// role, as a plugin would, for a test's own checks and set-up.
func Responder(t testing.TB, lab *awstest.Lab, account string) aws.Config {
	t.Helper()
	cfg, err := awsclient.Config(lab.Credentials(t, account))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Request returns the ExecuteRequest a worker would send for account, in
// region when it is not empty.
func Request(t testing.TB, lab *awstest.Lab, account, region string) *pluginv1.ExecuteRequest {
	t.Helper()
	req := lab.Request(t, account)
	if region != "" {
		req.Aws.Region = region
	}
	return req
}
