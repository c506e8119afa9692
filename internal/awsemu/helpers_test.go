package awsemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"
)

// testClock is an emulated clock tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lab is a running emulator loaded with a lab organisation.
type lab struct {
	emu   *Emulator
	srv   *httptest.Server
	seed  *Seed
	clock *testClock
}

// newLab starts an emulator with LabSeed(accounts) behind an httptest
// server.
func newLab(t testing.TB, accounts int) *lab {
	t.Helper()
	return newLabFrom(t, LabSeed(accounts), false)
}

func newLabFrom(t testing.TB, seed *Seed, tls bool) *lab {
	t.Helper()
	clock := newTestClock()
	emu, err := New(Config{Clock: clock.Now, Seed: seed})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(emu)
	} else {
		srv = httptest.NewServer(emu)
	}
	t.Cleanup(srv.Close)
	return &lab{emu: emu, srv: srv, seed: seed, clock: clock}
}

// cfg returns an SDK configuration for the static credentials, pointed at
// the emulator.
func (l *lab) cfg(id, secret, token string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, token),
		BaseEndpoint: aws.String(l.srv.URL),
		HTTPClient:   l.srv.Client(),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 1 })
		},
	}
}

// keyCfg returns a configuration for a seeded access key.
func (l *lab) keyCfg(k AccessKeySeed) aws.Config { return l.cfg(k.ID, k.Secret, "") }

// controller is the security account's controller user.
func (l *lab) controller() aws.Config {
	return l.keyCfg(labKey("controller/" + LabAccountID(1)))
}

// compromised is the ci-deployer key of member account i (2 and up).
func (l *lab) compromised(i int) aws.Config {
	return l.keyCfg(labKey("ci/" + LabAccountID(i)))
}

// root is the management account's root key.
func (l *lab) root() aws.Config {
	return l.keyCfg(labKey("root/" + LabAccountID(0)))
}

// apiCode returns the AWS error code of err, or "" when it carries none.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// wantCode fails the test unless err carries the AWS error code.
func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want error %s", code)
	}
	if got := apiCode(err); got != code {
		t.Fatalf("got error %v (code %q), want code %s", err, got, code)
	}
}

// ok fails the test on an unexpected error.
func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func ctx(t testing.TB) context.Context { return t.Context() }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	ok(t, err)
	return string(b)
}

// jsonEqual compares two values by their JSON form.
func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	return mustJSON(t, a) == mustJSON(t, b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
