package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	playbooks "github.com/firebreak-ir/firebreak/controller/playbook/library"
	"github.com/firebreak-ir/firebreak/plugins/catalog"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// permissive is an allow list that lets every address through.
var permissive = `["0.0.0.0/1","128.0.0.0/1","::/1","8000::/1"]`

// catalogueFleet is a controller with two honest fake agents (they report
// the first-party descriptions exactly and record what they are sent) and
// an attacker's agent that reports the descriptions it likes.
type catalogueFleet struct {
	c        *e2e.Controller
	honest   []*e2e.FakeAgent
	attacker *e2e.FakeAgent
	stream   *e2e.FakeStream
	descs    map[string]*pluginv1.ActionDescription
}

func startCatalogueFleet(t *testing.T, lie func(d *pluginv1.ActionDescription)) *catalogueFleet {
	t.Helper()
	b := e2e.Build(t)
	descs, err := catalog.Descriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := &catalogueFleet{c: e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--approval-threshold", "1"}}), descs: descs}
	plugins := func(edit func(d *pluginv1.ActionDescription)) []*agentv1.PluginInfo {
		var out []*agentv1.PluginInfo
		for _, name := range []string{"host-isolate", "host-collect", "noop"} {
			d := proto.Clone(descs[name]).(*pluginv1.ActionDescription)
			if edit != nil {
				edit(d)
			}
			out = append(out, &agentv1.PluginInfo{Description: d, Sha256: "builtin"})
		}
		return out
	}
	var ids []string
	for _, host := range []string{"honest-1", "honest-2", "attacker"} {
		facts := &agentv1.AgentFacts{Hostname: host, Os: "linux"}
		a := f.c.EnrollFake(t, f.c.Token(t, "host", 1), "host", facts)
		var edit func(*pluginv1.ActionDescription)
		if host == "attacker" {
			edit = lie
		}
		s, err := a.Connect(t, &agentv1.Hello{Facts: facts, Plugins: plugins(edit)}, true)
		if err != nil {
			t.Fatal(err)
		}
		if host == "attacker" {
			f.attacker, f.stream = a, s
		} else {
			f.honest = append(f.honest, a)
		}
		ids = append(ids, a.ID)
	}
	f.c.WaitConnected(t, ids...)
	return f
}

// expectedParams resolves an action's parameters as the catalogue says.
func (f *catalogueFleet) expectedParams(t *testing.T, action string, given map[string]string, typed map[string]any) map[string]any {
	t.Helper()
	p, err := sdk.ResolveParams(f.descs[action], given, typed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// pushed waits for each honest agent to be sent one task of action and
// returns their parameters.
func (f *catalogueFleet) pushed(t *testing.T, action string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, a := range f.honest {
		var spec *agentv1.TaskSpec
		e2e.WaitFor(t, 30*time.Second, "a "+action+" task on "+a.ID, func() bool {
			for _, s := range a.TaskSpecs(t) {
				if s.GetAction() == action {
					spec = s
					return true
				}
			}
			return false
		})
		var params map[string]any
		if err := json.Unmarshal(spec.GetParamsJson(), &params); err != nil {
			t.Fatal(err)
		}
		out = append(out, params)
	}
	return out
}

func (f *catalogueFleet) attackerGot(t *testing.T, action string) bool {
	t.Helper()
	for _, s := range f.attacker.TaskSpecs(t) {
		if s.GetAction() == action {
			return true
		}
	}
	return false
}

// TestAgentCannotRedefineIsolation: an agent that reports host-isolate at a
// higher version, not destructive, with an allow-everything default, neither
// lifts the approval nor changes what honest agents are sent, and is not
// sent the action itself.
func TestAgentCannotRedefineIsolation(t *testing.T) {
	f := startCatalogueFleet(t, func(d *pluginv1.ActionDescription) {
		if d.GetName() != "host-isolate" {
			return
		}
		d.Version, d.Destructive = "9.9.9", false
		var kept []*pluginv1.ParamSpec
		for _, p := range d.Params {
			if p.GetName() == "allow" {
				p.DefaultJson = permissive
			}
			if p.GetName() != "reason" {
				kept = append(kept, p)
			}
		}
		d.Params = kept
	})
	c := f.c

	// (1) Two honest targets over a threshold of one: approval is needed.
	r := c.CLI(t, "isolate", "--select", "all")
	if r.Exit != 4 {
		t.Fatalf("isolate over the threshold: exit %d, want 4 (awaiting approval)\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	runID := strings.TrimSpace(r.Stdout)
	bob := filepath.Join(c.DataDir, "bob.creds")
	c.MustJSON(t, nil, 0, "operator", "add", "bob", "--role", "approver", "-o", bob)
	if ar := c.CLIAs(t, bob, "approve", runID, "--json"); ar.Exit != 0 {
		t.Fatalf("approve: exit %d\n%s%s", ar.Exit, ar.Stdout, ar.Stderr)
	}
	want := f.expectedParams(t, "host-isolate", nil, nil)
	for _, got := range f.pushed(t, "host-isolate") {
		b, _ := json.Marshal(got["allow"])
		if strings.Contains(string(b), "0.0.0.0/1") {
			t.Fatalf("an honest agent was sent the attacker's allow list: %s", b)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if string(wb) != string(gb) {
			t.Errorf("signed parameters %s, want the catalogue's %s", gb, wb)
		}
	}
	if f.attackerGot(t, "host-isolate") {
		t.Error("the attacker's agent was sent host-isolate")
	}

	// (3) actions list shows only the catalogue's description.
	var actions []struct {
		Name        string `json:"name"`
		Version     string `json:"version"`
		Destructive bool   `json:"destructive"`
		Agents      int    `json:"agents"`
		Source      string `json:"source"`
		Params      []struct {
			Name    string `json:"name"`
			Default string `json:"default"`
		} `json:"params"`
	}
	c.MustJSON(t, &actions, 0, "actions", "list")
	for _, a := range actions {
		if a.Name != "host-isolate" {
			continue
		}
		if a.Version != f.descs["host-isolate"].GetVersion() || !a.Destructive || a.Agents != 2 || a.Source != "first-party" {
			t.Errorf("actions list shows host-isolate as %+v", a)
		}
		for _, p := range a.Params {
			if strings.Contains(p.Default, "0.0.0.0/1") {
				t.Errorf("actions list shows the attacker's default %s", p.Default)
			}
		}
	}

	// (4) The attacker is flagged in agents list and audited once.
	var agents []struct {
		ID             string `json:"id"`
		Suspect        bool   `json:"suspect"`
		RefusedActions []struct {
			Action      string   `json:"action"`
			Differences []string `json:"differences"`
		} `json:"refused_actions"`
	}
	c.MustJSON(t, &agents, 0, "agents", "list")
	for _, a := range agents {
		if a.ID != f.attacker.ID {
			if a.Suspect || len(a.RefusedActions) != 0 {
				t.Errorf("honest agent %s flagged: %+v", a.ID, a)
			}
			continue
		}
		if !a.Suspect || len(a.RefusedActions) != 1 || a.RefusedActions[0].Action != "host-isolate" {
			t.Fatalf("attacker listed as %+v", a)
		}
		for _, d := range []string{"version", "destructive", "params.allow", "params.reason"} {
			if !slices.Contains(a.RefusedActions[0].Differences, d) {
				t.Errorf("differences %v lack %s", a.RefusedActions[0].Differences, d)
			}
		}
	}
	if tr := c.CLI(t, "agents", "list"); !strings.Contains(tr.Stdout, "SUSPECT") || !strings.Contains(tr.Stdout, "host-isolate!") {
		t.Errorf("the agents table does not mark the attacker:\n%s", tr.Stdout)
	}
	var audit []struct {
		Action  string `json:"action"`
		Subject string `json:"subject"`
		Detail  json.RawMessage
	}
	c.MustJSON(t, &audit, 0, "audit", "list", "--limit", "1000")
	mismatches := 0
	for _, rec := range audit {
		if rec.Action == "agent.action_mismatch" {
			if rec.Subject != f.attacker.ID {
				t.Errorf("mismatch audited for %s", rec.Subject)
			}
			mismatches++
		}
	}
	if mismatches != 1 {
		t.Errorf("%d agent.action_mismatch records, want 1", mismatches)
	}

	// (5) Playbook validation uses the catalogue, with the attacker
	// connected and after it left.
	pb := filepath.Join(t.TempDir(), "ec2-instance-compromise.yaml")
	if err := os.WriteFile(pb, playbooks.All()["ec2-instance-compromise"], 0o600); err != nil {
		t.Fatal(err)
	}
	validate := func(when string) {
		t.Helper()
		var v struct {
			Valid    bool `json:"valid"`
			Problems []struct {
				Message string `json:"message"`
			} `json:"problems"`
		}
		c.MustJSON(t, &v, 0, "playbook", "validate", pb)
		if !v.Valid {
			t.Errorf("%s: the built-in playbook does not validate: %+v", when, v.Problems)
		}
	}
	validate("attacker connected")
	f.stream.Close()
	e2e.WaitFor(t, 30*time.Second, "the attacker to disconnect", func() bool {
		for _, a := range c.Agents(t) {
			if a.ID == f.attacker.ID {
				return !a.Connected
			}
		}
		return false
	})
	validate("attacker gone")
}

// TestAgentCannotRedefineCollection: an agent that reports host-collect
// with defaults of its own (collect only system, send IMDS requests to an
// attacker's listener) does not change what honest agents are sent.
func TestAgentCannotRedefineCollection(t *testing.T) {
	const evil = "http://203.0.113.9:8080"
	f := startCatalogueFleet(t, func(d *pluginv1.ActionDescription) {
		if d.GetName() != "host-collect" {
			return
		}
		d.Version = "9.9.9"
		for _, p := range d.Params {
			switch p.GetName() {
			case "artifacts":
				p.DefaultJson = `["system"]`
			case "imds_endpoint":
				p.DefaultJson = `"` + evil + `"`
			}
		}
	})
	r := f.c.CLI(t, "collect", "--select", "all")
	if r.Exit != 0 {
		t.Fatalf("collect: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	want := f.expectedParams(t, "host-collect", nil, map[string]any{"profile": "triage"})
	wb, _ := json.Marshal(want)
	for _, got := range f.pushed(t, "host-collect") {
		gb, _ := json.Marshal(got)
		if strings.Contains(string(gb), evil) || string(gb) != string(wb) {
			t.Errorf("signed parameters %s, want the catalogue's %s", gb, wb)
		}
	}
	if f.attackerGot(t, "host-collect") {
		t.Error("the attacker's agent was sent host-collect")
	}
}
