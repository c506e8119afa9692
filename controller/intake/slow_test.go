package intake_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/intake"
)

// TestSlowBodiesHoldNoSlot opens many requests with the valid secret whose
// bodies trickle in and stall, and checks that a legitimate event sent
// meanwhile is accepted: a slow sender must not hold a processing slot.
func TestSlowBodiesHoldNoSlot(t *testing.T) {
	e := newEnv(t, nil)
	secret := strings.Repeat("s", intake.MinSecretLength)
	h := e.c.Intake.Handler(intake.HandlerConfig{Operators: e.c.Store, Secret: []byte(secret), MaxInFlight: 2, BodyTimeout: time.Minute})
	var entered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	const slow = 20
	for i := 0; i < slow; i++ {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		// Headers complete, a body of 4096 bytes announced, one sent.
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s: %s\r\nContent-Length: 4096\r\n\r\n{",
			intake.EventsPath, intake.SecretHeader, secret)
	}
	// Every slow request is in the handler, reading its body.
	deadline := time.Now().Add(time.Minute)
	for entered.Load() < slow {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d slow requests reached the handler", entered.Load(), slow)
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+intake.EventsPath, bytes.NewReader(sample(t, "guardduty-ssh-bruteforce.json")))
	req.Header.Set(intake.SecretHeader, secret)
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the legitimate event got %d %s while %d bodies trickled in; want 200", resp.StatusCode, body, slow)
	}
}

// TestSlowBodyTimesOut checks that a body that does not arrive within
// BodyTimeout is refused with 408.
func TestSlowBodyTimesOut(t *testing.T) {
	e := newEnv(t, nil)
	secret := strings.Repeat("s", intake.MinSecretLength)
	srv := httptest.NewServer(e.c.Intake.Handler(intake.HandlerConfig{Operators: e.c.Store, Secret: []byte(secret), BodyTimeout: 100 * time.Millisecond}))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Length: 4096\r\n\r\n{", intake.EventsPath, intake.SecretHeader, secret)
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive within") {
		t.Fatalf("got %d %s, want 408", resp.StatusCode, body)
	}
}
