package fleet_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/controller/fleet"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// holdSlots takes running slots of a and parks waiting more handshakes
// behind them; the cleanup gives everything back.
func holdSlots(t *testing.T, a *fleet.Admission, running, waiting int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var releases []func()
	for range running {
		r, err := a.Admit(ctx)
		if err != nil {
			t.Fatalf("taking a free slot: %v", err)
		}
		releases = append(releases, r)
	}
	done := make(chan func(), waiting)
	for range waiting {
		go func() {
			r, err := a.Admit(ctx)
			if err != nil {
				r = func() {}
			}
			done <- r
		}()
	}
	for a.Waiting() < waiting {
		runtime.Gosched()
	}
	t.Cleanup(func() {
		cancel()
		for _, r := range releases {
			r()
		}
		for range waiting {
			(<-done)()
		}
	})
}

// TestAdmission checks what a new handshake meets with some slots taken
// and some handshakes waiting: a free slot at once, a wait while no more
// than the limit already wait, and a refusal beyond.
func TestAdmission(t *testing.T) {
	for _, tc := range []struct {
		name             string
		limit            int
		running, waiting int
		want             string // admitted, waits, shed
	}{
		{name: "free slot", limit: 3, running: 2, want: "admitted"},
		{name: "full, nobody waiting", limit: 3, running: 3, want: "waits"},
		{name: "full, room to wait", limit: 3, running: 3, waiting: 2, want: "waits"},
		{name: "full, as many waiting as run", limit: 3, running: 3, waiting: 3, want: "shed"},
		{name: "limit of one", limit: 1, running: 1, waiting: 1, want: "shed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := fleet.NewAdmission(tc.limit, nil)
			if err != nil {
				t.Fatal(err)
			}
			holdSlots(t, a, tc.running, tc.waiting)
			ctx, cancel := context.WithCancel(context.Background())
			type admitted struct {
				release func()
				err     error
			}
			got := make(chan admitted, 1)
			go func() {
				r, err := a.Admit(ctx)
				got <- admitted{r, err}
			}()
			// Either the call answers, or it joins the waiting ones.
			var res admitted
			answered := false
			for !answered && a.Waiting() <= tc.waiting {
				select {
				case res = <-got:
					answered = true
				default:
					runtime.Gosched()
				}
			}
			outcome := "waits"
			if answered {
				outcome = "shed"
				if res.err == nil {
					outcome = "admitted"
					res.release()
				}
			}
			if outcome != tc.want {
				t.Fatalf("a handshake with %d of %d slots taken and %d waiting: %s (err %v), want %s", tc.running, tc.limit, tc.waiting, outcome, res.err, tc.want)
			}
			if outcome == "shed" && a.Shed() != 1 {
				t.Errorf("Shed() = %d after one shed handshake, want 1", a.Shed())
			}
			cancel()
			if outcome == "waits" {
				// The waiter gives up with its caller, leaving its place.
				if res = <-got; !errors.Is(res.err, context.Canceled) {
					t.Errorf("a waiter whose caller went away: %v, want context.Canceled", res.err)
				}
				if a.Waiting() != tc.waiting {
					t.Errorf("Waiting() = %d after the waiter left, want %d", a.Waiting(), tc.waiting)
				}
			}
		})
	}
}

// TestAdmissionReleaseAdmitsWaiter checks that a slot given back goes to
// a handshake waiting for one.
func TestAdmissionReleaseAdmitsWaiter(t *testing.T) {
	a, err := fleet.NewAdmission(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	release, err := a.Admit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := a.Admit(context.Background())
		if err == nil {
			r()
		}
		got <- err
	}()
	for a.Waiting() < 1 {
		runtime.Gosched()
	}
	release()
	if err := <-got; err != nil {
		t.Fatalf("the waiting handshake after the slot was given back: %v", err)
	}
}

// TestNewAdmissionLimits checks the default and the refusal of a negative
// limit.
func TestNewAdmissionLimits(t *testing.T) {
	for _, tc := range []struct {
		limit, want int
		wantErr     bool
	}{{limit: 0, want: fleet.DefaultMaxHandshakes}, {limit: 5, want: 5}, {limit: -1, wantErr: true}} {
		a, err := fleet.NewAdmission(tc.limit, nil)
		if tc.wantErr {
			if err == nil {
				t.Errorf("NewAdmission(%d) accepted", tc.limit)
			}
			continue
		}
		if err != nil || a.Limit() != tc.want {
			t.Errorf("NewAdmission(%d): limit %v, %v; want %d", tc.limit, a, err, tc.want)
		}
	}
}

// TestShedHandshakesAnswerRetryAfter checks, over real gRPC, that an
// enrollment beyond the controller's admission is refused
// with RESOURCE_EXHAUSTED and a retry-after trailer, before any join token
// is spent: the same token enrolls once the controller has room.
func TestShedHandshakesAnswerRetryAfter(t *testing.T) {
	f := newFleet(t)
	adm := f.svc.Admission()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	agentv1.RegisterAgentServiceServer(srv, f.svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := agentv1.NewAgentServiceClient(conn)
	secret := f.token(t, store.JoinToken{})
	free := fillAdmission(t, adm)

	var trailer metadata.MD
	_, err = client.Enroll(context.Background(), enrollRequest(t, secret, "herd-1"), grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("enrollment beyond the admission: %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := trailer.Get("retry-after"); len(got) != 1 || got[0] != "1" {
		t.Errorf("retry-after trailer %q, want [\"1\"]", got)
	}

	free()
	if _, err := client.Enroll(context.Background(), enrollRequest(t, secret, "herd-1")); err != nil {
		t.Fatalf("the same join token once the controller has room: %v (a shed enrollment must not spend a use)", err)
	}
}

// TestAdmissionRetryAfterTickets checks the retry-after given to shed
// handshakes: successive tickets at the completion rate the admission
// measured (its limit per second until a window was measured), so a shed
// herd is told to come back spread over the time the controller needs
// for it, from one second up to the cap.
func TestAdmissionRetryAfterTickets(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		// completed is, per one-second window before the herd, how many
		// handshakes completed in it.
		completed []int
		sheds     int
		// want is the retry-after of the last shed handshake.
		want time.Duration
	}{
		{name: "one shed, nothing measured", limit: 10, sheds: 1, want: time.Second},
		{name: "ten shed at the default rate of the limit", limit: 10, sheds: 10, want: time.Second},
		{name: "25 shed at 10 a second", limit: 10, sheds: 25, want: 2400 * time.Millisecond},
		{name: "measured faster: 30 a second (the mean of 10 and 50)", limit: 10, completed: []int{50}, sheds: 61, want: 2 * time.Second},
		{name: "measured slower: 7 a second", limit: 10, completed: []int{4}, sheds: 11, want: 1429 * time.Millisecond},
		{name: "held to the cap", limit: 1, sheds: 100, want: fleet.MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
			a, err := fleet.NewAdmission(tt.limit, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.completed {
				for range n {
					r, err := a.Admit(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					r()
				}
				now = now.Add(time.Second)
			}
			var last time.Duration
			for range tt.sheds {
				last = a.RetryAfter()
			}
			if last.Round(time.Millisecond) != tt.want {
				t.Errorf("the retry-after of the %d-th shed handshake: %s, want %s", tt.sheds, last, tt.want)
			}
		})
	}
}

// fillAdmission takes every slot of adm and fills its waiting line, so the
// next handshake is shed; free gives everything back and returns once the
// waiters are done.
func fillAdmission(t *testing.T, adm *fleet.Admission) (free func()) {
	t.Helper()
	holdCtx, release := context.WithCancel(context.Background())
	held := make([]func(), 0, adm.Limit())
	for range adm.Limit() {
		r, err := adm.Admit(holdCtx)
		if err != nil {
			release()
			t.Fatal(err)
		}
		held = append(held, r)
	}
	waitDone := make(chan struct{}, adm.Limit())
	for range adm.Limit() {
		go func() {
			if r, err := adm.Admit(holdCtx); err == nil {
				r()
			}
			waitDone <- struct{}{}
		}()
	}
	for adm.Waiting() < adm.Limit() {
		runtime.Gosched()
	}
	var once sync.Once
	free = func() {
		once.Do(func() {
			release()
			for _, r := range held {
				r()
			}
			for range adm.Limit() {
				<-waitDone
			}
		})
	}
	t.Cleanup(free)
	return free
}
