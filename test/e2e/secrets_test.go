package e2e_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// tokenShape is what a join token looks like: fbj_ and the base64url of
// 32 random bytes (43 characters), not part of a longer run. (A looser
// "fbj_ and 32 or more" matched a firebreak binary's own strings, where
// "fbj_" is followed by unrelated constants, when a process ran one from
// /tmp during the collection.)
var tokenShape = regexp.MustCompile(`fbj_[A-Za-z0-9_-]{43}(?:[^A-Za-z0-9_-]|$)`)

// TestJoinTokenNeverReachesEvidence starts an agent the documented way,
// with FIREBREAK_JOIN_TOKEN in its environment and a token that has uses
// left, while another process on the host holds the same token and an AWS
// secret key in its environment and the token on its command line. A
// collection from that host must hold neither anywhere in the stored
// archive, must record what it redacted, and the agent itself must have
// dropped the token from its /proc files and its log.
func TestJoinTokenNeverReachesEvidence(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	token := c.Token(t, "host", 5)
	// Made at run time: a constant would be in this test's own binary,
	// which the collection copies when it runs from /tmp.
	raw := make([]byte, 30)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	secretKey := base64.StdEncoding.EncodeToString(raw)

	decoy := exec.Command("sh", "-c", "sleep 300; true", token)
	decoy.Env = []string{"PATH=/usr/bin:/bin", "FIREBREAK_JOIN_TOKEN=" + token, "AWS_SECRET_ACCESS_KEY=" + secretKey}
	if err := decoy.Start(); err != nil {
		t.Skipf("cannot start a shell: %v", err)
	}
	t.Cleanup(func() { _ = decoy.Process.Kill(); _ = decoy.Wait() })

	agent := c.StartAgent(t, e2e.AgentOptions{Name: "secrets", Token: token})
	agentID := agent.AgentID(t)
	c.WaitConnected(t, agentID)

	for _, f := range []string{"environ", "cmdline"} {
		raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(agent.Pid()), f))
		if err != nil {
			t.Fatalf("reading the agent's /proc/PID/%s: %v", f, err)
		}
		if bytes.Contains(raw, []byte(token)) {
			t.Errorf("the agent's /proc/PID/%s still holds the join token", f)
		}
	}

	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--artifact", "process_environ", "--artifact", "processes",
		"--wait", "--reason", "e2e: secrets stay out of evidence")
	evID, out := onlyResult(t, run)
	requireWhole(t, out)
	it := evidenceItem(t, c, evID)

	// The whole stored object, decompressed: every member and the manifest.
	stored, err := os.Open(it.Location)
	if err != nil {
		t.Fatalf("the stored evidence %s: %v", it.Location, err)
	}
	defer stored.Close()
	zr, err := gzip.NewReader(stored)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	for what, secret := range map[string]string{"the join token": token, "the AWS secret key": secretKey} {
		if bytes.Contains(plain, []byte(secret)) {
			t.Errorf("the stored archive holds %s", what)
		}
	}
	if m := tokenShape.Find(plain); m != nil {
		t.Errorf("the stored archive holds a token-shaped value %q", m)
	}
	if strings.Contains(agent.Log(), token) {
		t.Error("the agent's log holds the join token")
	}

	var man *bundle.Manifest
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == bundle.ManifestName {
			raw, _ := io.ReadAll(tr)
			if man, err = bundle.DecodeManifest(raw); err != nil {
				t.Fatal(err)
			}
		}
	}
	if man == nil {
		t.Fatal("the archive has no manifest")
	}
	if man.Redaction == "" {
		t.Error("the manifest does not state that the collector redacts")
	}
	counts := map[string]map[string]int64{}
	for _, st := range man.Artifacts {
		counts[st.Name] = st.Redactions
	}
	if counts["process_environ"]["FIREBREAK_JOIN_TOKEN"] < 1 || counts["process_environ"]["AWS_SECRET_ACCESS_KEY"] < 1 {
		t.Errorf("process_environ records redactions %v: want FIREBREAK_JOIN_TOKEN and AWS_SECRET_ACCESS_KEY", counts["process_environ"])
	}
	if counts["processes"]["firebreak-join-token"] < 1 {
		t.Errorf("processes records redactions %v: want the token on the decoy's command line", counts["processes"])
	}

	// The agent's own environment shows the variable, its value erased.
	file := filepath.Join(t.TempDir(), "secrets.tar.gz")
	c.MustJSON(t, nil, 0, "evidence", "get", evID, "-o", file, "--reason", "e2e check")
	a := readArchive(t, file)
	var seen bool
	for _, r := range a.records(t, "process_environ") {
		if int(r["pid"].(float64)) != agent.Pid() {
			continue
		}
		for _, v := range r["variables"].([]any) {
			if s := v.(string); strings.HasPrefix(s, "FIREBREAK_JOIN_TOKEN=") {
				seen = strings.Trim(strings.TrimPrefix(s, "FIREBREAK_JOIN_TOKEN="), "*") == ""
			}
		}
	}
	if !seen {
		t.Errorf("the agent's process_environ record does not show FIREBREAK_JOIN_TOKEN erased")
	}
}
