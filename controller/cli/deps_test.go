package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoServerPackage: the operator commands link the generated API,
// the conversion layer and leaf libraries, never the controller's server
// packages, the agent, an action's implementation, the emulator or an
// assembly; those stay in servecmd, labcmd and benchcmd.
func TestLinksNoServerPackage(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot list this package's dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	const module = "github.com/firebreak-ir/firebreak/"
	allowed := []string{
		"proto/gen/",
		"controller/cli",
		"controller/apiview",
		// The playbook language (offline validate, the dry-run plan), the
		// selector grammar it uses, and the finding event size limit.
		"controller/playbook",
		"controller/selector",
		"controller/finding",
		"internal/pki",
		// The offline instance identity document check (attest check-iid).
		"internal/iid",
		"internal/telemetry",
		"internal/termsafe",
		"internal/bandwidth",
		"internal/version",
		"internal/trailscope",
		// The eradication plan model the controller sends (eradicate plan/run).
		"internal/eradplan",
		// The scope and eradication flows, driven through the operator RPCs.
		"internal/eradflow",
		"plugins/hostcollect/artifacts",
	}
	for _, p := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(p, module)
		if !ours {
			continue
		}
		ok := false
		for _, a := range allowed {
			// An entry ending in / allows the packages under it.
			if rel == a || strings.HasSuffix(a, "/") && strings.HasPrefix(rel, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("controller/cli links %s: a server, agent, action or assembly package belongs in servecmd, labcmd or benchcmd", rel)
		}
	}
}
