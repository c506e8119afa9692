package readiness

import (
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/library"
	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// builtIns are the built-in playbooks as the controller's library lists
// them.
func builtIns(t *testing.T) []Playbook {
	t.Helper()
	var out []Playbook
	for _, name := range library.Names() {
		data, _ := library.Get(name)
		pb, err := playbook.Parse(name+".yaml", data)
		if err != nil {
			t.Fatalf("built-in %s: %v", name, err)
		}
		out = append(out, Playbook{Name: name, Source: "built-in", Playbook: pb})
	}
	return out
}

// TestCheckPlaybooks validates the built-in and custom playbooks against
// what the fleet offers as the controller reviews it: the catalogue's
// exact description on an agent of the action's role.
func TestCheckPlaybooks(t *testing.T) {
	first, err := actioncatalog.FirstParty()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actioncatalog.New(first)
	if err != nil {
		t.Fatal(err)
	}
	// agent offers every catalogue action of its role, but those named in
	// without; changed reports those in its own description instead.
	agent := func(id, role string, without, changed []string) *store.Agent {
		a := &store.Agent{ID: id, Role: role, Hostname: id + ".example", Facts: &agentv1.AgentFacts{}}
		for _, e := range cat.Entries() {
			d := proto.CloneOf(e.Description)
			name := d.GetName()
			if !slices.Contains(d.GetRoles(), role) || slices.Contains(without, name) {
				continue
			}
			if slices.Contains(changed, name) {
				d.Version = "0.0.1-own"
			}
			a.Plugins = append(a.Plugins, &agentv1.PluginInfo{Description: d, Sha256: "aa"})
		}
		return a
	}
	simulated := agent("sim", "host", nil, nil)
	simulated.Facts.Simulated = true
	revoked := agent("gone", "host", nil, nil)
	revoked.Revoked = true
	// A host-isolate step of the agent's own: it claims the action, but
	// offers the controller's catalogue nothing under that name.
	bogus := agent("h1", "host", nil, nil)
	bogus.Plugins = append(bogus.Plugins, &agentv1.PluginInfo{Description: proto.CloneOf(first["aws-ec2-isolate"])})

	custom := func(name, yaml string) Playbook {
		p := Playbook{Name: name, Source: "/etc/firebreak/playbooks/" + name + ".yaml"}
		p.Playbook, p.ParseErr = playbook.Parse(name+".yaml", []byte(yaml))
		return p
	}
	unknownAction := custom("wipe", `apiVersion: firebreak/v1
kind: Playbook
metadata: {name: wipe, version: 1, description: wipes}
steps:
  - id: wipe
    phase: eradicate
    action: host-wipe
    targets: {selector: role=host}
`)
	unparsable := custom("broken", "apiVersion: firebreak/v1\nkind: [\n")

	workers := agent("w1", "worker", nil, nil)
	for _, tt := range []struct {
		name      string
		playbooks []Playbook
		readErr   string
		agents    []*store.Agent
		want      want
	}{
		{"every action offered", builtIns(t), "", []*store.Agent{workers, agent("h1", "host", nil, nil)},
			want{StatusOK, "4 playbook(s) validate, and the fleet offers every action they run", ""}},
		{"no host agent enrolled", builtIns(t), "", []*store.Agent{workers},
			want{StatusWarn, "ec2-instance-compromise (built-in): host-collect (no host agent is enrolled), host-isolate (no host agent is enrolled), host-unisolate", "--role host"}},
		{"simulated and revoked hosts offer nothing", builtIns(t), "", []*store.Agent{workers, simulated, revoked},
			want{StatusWarn, "cryptomining-instance (built-in): host-collect (no host agent is enrolled)", "--role host"}},
		{"a host agent without host-collect", builtIns(t), "", []*store.Agent{workers, agent("h1", "host", []string{"host-collect"}, nil)},
			want{StatusFail, "cryptomining-instance (built-in): host-collect (no host agent offers it); ec2-instance-compromise (built-in): host-collect (no host agent offers it)", "manifest.json"}},
		{"an action described the agent's own way", builtIns(t), "", []*store.Agent{agent("w1", "worker", nil, []string{"aws-iam-contain"}), agent("h1", "host", nil, nil)},
			want{StatusFail, "iam-credential-compromise (built-in): aws-iam-contain (no worker agent offers it)", "firebreak actions list"}},
		{"a worker action claimed by a host", builtIns(t), "", []*store.Agent{agent("w1", "worker", []string{"aws-ec2-isolate"}, nil), bogus},
			want{StatusFail, "aws-ec2-isolate (no worker agent offers it)", "install the agent package"}},
		{"a custom playbook naming an action the catalogue lacks", append(builtIns(t), unknownAction), "", []*store.Agent{workers, agent("h1", "host", nil, nil)},
			want{StatusFail, "wipe (/etc/firebreak/playbooks/wipe.yaml): does not validate against the action catalogue: ", "firebreak playbook validate FILE"}},
		{"a custom playbook that does not parse", append(builtIns(t), unparsable), "", []*store.Agent{workers, agent("h1", "host", nil, nil)},
			want{StatusFail, "broken (/etc/firebreak/playbooks/broken.yaml): does not parse", "firebreak playbook validate FILE"}},
		{"library unreadable", nil, "reading the playbook directory /etc/firebreak/playbooks: permission denied", []*store.Agent{workers},
			want{StatusUnknown, "permission denied", "--playbook-dir"}},
		{"no playbook", nil, "", []*store.Agent{workers}, want{StatusFail, "no playbook", "firebreak playbook validate FILE"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := checkPlaybooks(tt.playbooks, tt.readErr, tt.agents, cat)
			tt.want.check(t, c)
			if c.ID != CheckPlaybooks || c.Account != "" {
				t.Fatalf("check %s in %q", c.ID, c.Account)
			}
		})
	}
	if unknownAction.ParseErr != nil || unparsable.ParseErr == nil {
		t.Fatalf("fixtures: %v, %v", unknownAction.ParseErr, unparsable.ParseErr)
	}
}

// TestBuildChecksPlaybooksOnlyWithALibrary leaves the check out when no
// library was read, and reports it when one was, naming why it could not.
func TestBuildChecksPlaybooksOnlyWithALibrary(t *testing.T) {
	first, err := actioncatalog.FirstParty()
	if err != nil {
		t.Fatal(err)
	}
	cat, err := actioncatalog.New(first)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(r *Report) []string {
		var out []string
		for _, c := range r.Checks {
			out = append(out, c.ID+"="+string(c.Status))
		}
		sort.Strings(out)
		return out
	}
	without := ids(Build(Inputs{Now: now, Actions: cat}))
	if slices.ContainsFunc(without, func(s string) bool { return strings.HasPrefix(s, CheckPlaybooks) }) {
		t.Fatalf("playbook check without a library: %v", without)
	}
	with := ids(Build(Inputs{Now: now, Actions: cat, PlaybooksErr: errors.New("no such directory").Error()}))
	if !slices.Contains(with, CheckPlaybooks+"=unknown") {
		t.Fatalf("checks %v", with)
	}
}
