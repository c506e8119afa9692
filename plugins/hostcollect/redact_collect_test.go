package hostcollect_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// TestEnvironSecretsAreRedactedAndRecorded collects process_environ while
// a process runs with a join token and AWS credentials in its environment,
// and checks that no member of the bundle holds them and that the manifest
// says what was redacted.
func TestEnvironSecretsAreRedactedAndRecorded(t *testing.T) {
	const token = "fbj_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cwX"
	const secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{"FIREBREAK_JOIN_TOKEN=" + token, "AWS_SECRET_ACCESS_KEY=" + secretKey, "NOTE=token " + token, "HARMLESS=kept"}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	c := collect(t, &pluginv1.ExecuteRequest{}, map[string]any{"artifacts": []string{"process_environ"}})
	for path, b := range c.members {
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, []byte(secretKey)) {
			i := max(bytes.Index(b, []byte(token)), bytes.Index(b, []byte(secretKey)))
			t.Fatalf("member %s holds a secret: %q", path, b[max(i-300, 0):min(i+100, len(b))])
		}
	}
	if c.manifest.Redaction != hostcollect.RedactionPolicy {
		t.Errorf("the manifest states no redaction policy: %q", c.manifest.Redaction)
	}
	st := c.status("process_environ")
	if st.Redactions["FIREBREAK_JOIN_TOKEN"] < 1 || st.Redactions["AWS_SECRET_ACCESS_KEY"] < 1 || st.Redactions[hostcollect.RedactJoinToken] < 1 {
		t.Errorf("process_environ redactions %v: want FIREBREAK_JOIN_TOKEN, AWS_SECRET_ACCESS_KEY and %s counted", st.Redactions, hostcollect.RedactJoinToken)
	}
	var counted bool
	for _, m := range c.manifest.Members {
		if m.Artifact == "process_environ" && m.Redactions["FIREBREAK_JOIN_TOKEN"] > 0 {
			counted = true
		}
	}
	if !counted {
		t.Error("no process_environ member records its redactions")
	}
	var found bool
	for _, r := range c.records(t, "process_environ") {
		if int(r["pid"].(float64)) != cmd.Process.Pid {
			continue
		}
		found = true
		vars := strings.Join(toStrings(r["variables"]), "\n")
		for _, want := range []string{"FIREBREAK_JOIN_TOKEN=[REDACTED:firebreak-join-token]", "AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]", "NOTE=token [REDACTED:firebreak-join-token]", "HARMLESS=kept"} {
			if !strings.Contains(vars, want) {
				t.Errorf("the environment of pid %d lacks %q:\n%s", cmd.Process.Pid, want, vars)
			}
		}
	}
	if !found {
		t.Fatalf("no process_environ record for pid %d", cmd.Process.Pid)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
