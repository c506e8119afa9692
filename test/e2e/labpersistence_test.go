package e2e_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/assembly/lab"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// TestLabDrillLeakedKeyPersistence runs `firebreak lab drill
// leaked-key-persistence --json` through the real binary: the attacker
// plants eight artifacts across two member accounts with a leaked key and
// a role it assumes; the built-in playbook, started by the finding in
// auto mode, contains, scopes, plans, waits for the lab's second operator
// to approve each account's eradication run, eradicates and verifies.
// Every artifact must be found and eradicated (read back from the
// emulator, not from Firebreak's verdict), the attacker's keys refused,
// logging back on and the time to eradicate recorded; and the drill exits
// 0.
func TestLabDrillLeakedKeyPersistence(t *testing.T) {
	b := e2e.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.Firebreak, "lab", "drill", "leaked-key-persistence", "--json").Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	var res lab.Result
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("drill: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	if err != nil || !res.Contained {
		t.Fatalf("drill: exit %v, not held: %+v\nstderr: %s", err, res.Checks, stderr)
	}
	er := res.Eradication
	if er == nil || er.Planted != 8 || er.Found != 8 || er.Eradicated != 8 || er.TimeToEradicateMS <= 0 || len(er.Artifacts) != 8 {
		t.Fatalf("eradication %+v: want 8 planted, found and eradicated, and a time to eradicate", er)
	}
	var kinds []string
	accounts := map[string]bool{}
	for _, a := range er.Artifacts {
		if !a.Found || !a.Eradicated || a.State == "" {
			t.Errorf("artifact %+v", a)
		}
		kinds = append(kinds, a.Kind)
		accounts[a.Account] = true
	}
	slices.Sort(kinds)
	want := []string{"cloudtrail-logging", "ec2-ingress-rule", "ec2-snapshot-share", "iam-access-key", "iam-access-key", "iam-user", "iam-user-policy", "lambda-function"}
	if !slices.Equal(kinds, want) || len(accounts) != 2 {
		t.Fatalf("artifacts %v in %d account(s), want %v in two", kinds, len(accounts), want)
	}
	// The playbook went contain → scope → plan → eradicate → verify, every
	// step succeeded, and only the eradication waited for an approval.
	var steps []string
	for _, s := range res.Steps {
		if s.Status != "succeeded" && s.Status != "skipped" {
			t.Errorf("step %+v", s)
		}
		steps = append(steps, s.ID+"="+s.Action)
	}
	for _, w := range []string{"disable_key=aws-iam-contain", "scope=operation:credential-scope", "eradication_plan=operation:eradication-plan",
		"eradicate=operation:eradicate", "verify=operation:eradication-verify"} {
		if !slices.Contains(steps, w) {
			t.Errorf("steps %v lack %s", steps, w)
		}
	}
	// The JSON keeps the drill report's fields and adds the eradication's.
	var raw map[string]any
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "case_id", "contained", "time_to_contain_ms", "checks", "score", "planted", "found", "eradicated",
		"time_to_eradicate_ms", "artifacts"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("--json lacks %q: %s", k, strings.Join(keys(raw), ", "))
		}
	}
	t.Logf("planted %d, found %d, eradicated %d, time to eradicate %d ms, wall %d ms", er.Planted, er.Found, er.Eradicated, er.TimeToEradicateMS, res.WallMS)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
