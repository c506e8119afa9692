package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

const herdAccount = "123456789012"

type orgAccounts struct{}

func (orgAccounts) ListAccounts(context.Context) ([]*store.Account, error) {
	return []*store.Account{{ID: herdAccount}}, nil
}

// runningInstances says every instance runs with the required tag.
type runningInstances struct{}

func (runningInstances) Instance(context.Context, string, string, string) (*attest.Instance, error) {
	return &attest.Instance{State: "running", Tags: map[string]string{"firebreak": "enabled"}}, nil
}

// attestedFleet is a fleet on SQLite that verifies documents signed by an
// emulator's identity key. Instance state is a stand-in: the checks against
// AWS are covered by controller/attest's tests and test/e2e.
type attestedFleet struct {
	svc   *fleet.Service
	store store.Store
	emu   *awsemu.Emulator
	now   time.Time
}

func newAttestedFleet(tb testing.TB) *attestedFleet {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "firebreak.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := tasksign.LoadOrCreateKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		tb.Fatal(err)
	}
	emu, err := awsemu.New(awsemu.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, err := emu.IdentityCertificatePEM()
	if err != nil {
		tb.Fatal(err)
	}
	certs, err := iid.AWSCertificates()
	if err != nil {
		tb.Fatal(err)
	}
	extra, err := iid.ParseCertificatesPEM(certPEM)
	if err != nil {
		tb.Fatal(err)
	}
	certs.Add(extra...)
	pol, err := attest.ParsePolicy("policy.yaml", []byte("iid:\n  accounts: [all]\n  required_tags: {firebreak: enabled}\n  max_age: 1h\n"))
	if err != nil {
		tb.Fatal(err)
	}
	f := &attestedFleet{emu: emu, store: st, now: time.Now().UTC().Truncate(time.Second)}
	v, err := attest.New(attest.Config{Accounts: orgAccounts{}, Certs: certs, Policy: pol, ServerID: "bench", Instances: runningInstances{},
		Clock: func() time.Time { return f.now }})
	if err != nil {
		tb.Fatal(err)
	}
	f.svc, err = fleet.New(fleet.Config{Store: st, CA: ca, Signer: signer, Dispatcher: nopDispatcher{}, Attest: v, Logger: slog.New(slog.DiscardHandler),
		Clock: func() time.Time { return f.now }, CertTTL: certTTL,
		EnrollLimits: fleet.EnrollLimits{PerSource: 1e9, PerSourceBurst: 1 << 30, Overall: 1e9, OverallBurst: 1 << 30}})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// request is an enrollment with instance i's signed document.
func (f *attestedFleet) request(tb testing.TB, i int) *agentv1.EnrollRequest {
	tb.Helper()
	signed, err := f.emu.SignIdentityDocument(&iid.Document{AccountID: herdAccount, AvailabilityZone: "eu-west-1a",
		InstanceID: fmt.Sprintf("i-%017x", i+1), PendingTime: f.now.Add(-time.Minute), Region: "eu-west-1"})
	if err != nil {
		tb.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := pki.NewCSR(key, "host")
	if err != nil {
		tb.Fatal(err)
	}
	return &agentv1.EnrollRequest{CsrDer: csr, Facts: &agentv1.AgentFacts{Hostname: fmt.Sprintf("host-%d", i), Os: "linux"},
		AwsIid: &agentv1.AwsIidProof{Document: signed.Document, Rsa2048: []byte(signed.RSA2048)}}
}

func from(i int) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 7, byte(i>>8), byte(i)), Port: 4000}})
}

// TestOneDocumentEnrollsOneAgent sends one instance's document many times
// at once: exactly one enrollment wins, the others are refused as a
// possible stolen document.
func TestOneDocumentEnrollsOneAgent(t *testing.T) {
	f := newAttestedFleet(t)
	req := f.request(t, 1)
	const racers = 16
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, racers)
	for i := range racers {
		// Each racer sends its own copy, as each RPC has its own request:
		// the service checks and fills in the facts it received.
		req := proto.CloneOf(req)
		wg.Go(func() {
			_, err := f.svc.Enroll(from(i), req)
			codesSeen[i] = status.Code(err)
		})
	}
	wg.Wait()
	won := 0
	for _, c := range codesSeen {
		switch c {
		case codes.OK:
			won++
		case codes.AlreadyExists:
		default:
			t.Fatalf("an enrollment ended %v", c)
		}
	}
	if won != 1 {
		t.Fatalf("%d enrollments of one instance succeeded, want 1 (%v)", won, codesSeen)
	}
}

// herdSize is FIREBREAK_IID_HERD, or 1000.
func herdSize() int {
	if v, err := strconv.Atoi(os.Getenv("FIREBREAK_IID_HERD")); err == nil && v > 0 {
		return v
	}
	return 1000
}

// BenchmarkIIDEnrollmentHerd enrols FIREBREAK_IID_HERD (default 1000)
// instances at once, each with its own emulator-signed document, 64 at a
// time, and reports the time until 99% and 100% of them hold a
// certificate. Documents and keys are made before the clock starts. It
// runs the fleet service in process (no TLS, no gRPC transport): the
// figure is the controller's verification, signing and storing.
func BenchmarkIIDEnrollmentHerd(b *testing.B) {
	n := herdSize()
	for b.Loop() {
		b.StopTimer()
		f := newAttestedFleet(b)
		reqs := make([]*agentv1.EnrollRequest, n)
		for i := range reqs {
			reqs[i] = f.request(b, i)
		}
		herd(b, "IID", f.svc, reqs)
	}
}

// BenchmarkTokenEnrollmentHerd is the same herd enrolling with one join
// token of n uses, the figure to compare the IID one with.
func BenchmarkTokenEnrollmentHerd(b *testing.B) {
	n := herdSize()
	for b.Loop() {
		b.StopTimer()
		f := newAttestedFleet(b)
		secret := "fbj_herd-token"
		tok := &store.JoinToken{Hash: fleet.HashToken(secret), Role: "host", Uses: n, UsesLeft: n, ExpiresAt: f.now.Add(time.Hour), CreatedBy: "bench", CreatedAt: f.now}
		if err := f.store.CreateJoinToken(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		reqs := make([]*agentv1.EnrollRequest, n)
		for i := range reqs {
			r := f.request(b, i)
			r.AwsIid, r.JoinToken = nil, secret
			reqs[i] = r
		}
		herd(b, "token", f.svc, reqs)
	}
}

// herd enrols reqs 64 at a time and reports the time to 99% and 100%.
func herd(b *testing.B, what string, svc *fleet.Service, reqs []*agentv1.EnrollRequest) {
	n := len(reqs)
	done := make([]time.Duration, n)
	work := make(chan int)
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			for i := range work {
				if _, err := svc.Enroll(from(i), reqs[i]); err != nil {
					b.Errorf("enrollment %d: %v", i, err)
				}
				done[i] = time.Since(start)
			}
		})
	}
	for i := range reqs {
		work <- i
	}
	close(work)
	wg.Wait()
	slices.Sort(done)
	p99, all := done[(n*99+99)/100-1], done[n-1]
	b.ReportMetric(float64(p99.Milliseconds()), "ms-to-99%")
	b.ReportMetric(float64(all.Milliseconds()), "ms-to-100%")
	b.Logf("%s enrollment herd of %d: 99%% in %s, 100%% in %s (%.0f enrollments/s)", what, n, p99.Round(time.Millisecond), all.Round(time.Millisecond), float64(n)/all.Seconds())
}
