package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestLabDemoKeepsTheConsoleUp runs `firebreak lab demo --console` (what
// `make demo CONSOLE=1` runs) with simulated hosts: after the drill the lab
// stays up, the printed link signs in to the console once, the drill's
// case page is there, and an interrupt (Ctrl-C) tears the lab down and
// removes its directory.
func TestLabDemoKeepsTheConsoleUp(t *testing.T) {
	b := e2e.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.Firebreak, "lab", "demo", "--simulated", "--console", "--console-listen", "127.0.0.1:0", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var res struct {
		CaseID     string `json:"case_id"`
		Contained  bool   `json:"contained"`
		ConsoleURL string `json:"console_url"`
		Creds      string `json:"creds"`
		CAFile     string `json:"ca_file"`
	}
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&res); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("reading the demo's result: %v\nstderr: %s", err, stderr.String())
	}
	if !res.Contained || res.CaseID == "" || !strings.HasPrefix(res.ConsoleURL, "https://127.0.0.1:") {
		t.Fatalf("result %+v", res)
	}
	caPEM, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(res.ConsoleURL); code != http.StatusOK || !strings.Contains(body, "Signed in") {
		t.Fatalf("the login link: %d %s", code, body)
	}
	base := strings.SplitN(res.ConsoleURL, "/login/", 2)[0]
	if code, body := get(base + "/cases/" + res.CaseID); code != http.StatusOK || !strings.Contains(body, res.CaseID) || !strings.Contains(body, "commander") {
		t.Fatalf("the drill's case page: %d %s", code, body)
	}
	if code, _ := get(res.ConsoleURL); code != http.StatusForbidden {
		t.Fatalf("the link's second use: %d, want 403", code)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after Ctrl-C: %v\nstderr: %s", err, stderr.String())
	}
	if _, err := os.Stat(filepath.Dir(res.Creds)); !os.IsNotExist(err) {
		t.Fatalf("the lab's directory is still there after Ctrl-C: %v", err)
	}
}
