package readiness

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/firebreak-ir/firebreak/controller/actioncatalog"
	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// CheckPlaybooks is the id of the check that every playbook validates
// against the actions the fleet offers now.
const CheckPlaybooks = "process.playbooks"

// Playbook is one playbook of the controller's library (built-in, or a
// file of its playbook directory), as the review reads it.
type Playbook struct {
	// Name is the playbook's name and Source "built-in" or its file.
	Name, Source string
	// Playbook is the parsed playbook; nil when ParseErr is set.
	Playbook *playbook.Playbook
	// ParseErr is why the file does not parse.
	ParseErr error
}

// maxPlaybookProblems bounds the validation problems quoted per playbook.
const maxPlaybookProblems = 3

// fleetActions is, for each action of the catalogue, the live agents the
// controller would send it: enrolled, not revoked, not a simulated host,
// and reporting the catalogue's exact description for a role the
// catalogue runs it on (actioncatalog.Review, with the role from the
// agent's enrollment). Roles counts those agents by role.
//
// Security-critical: what counts as offered is the controller's own review
// of each agent's plugin set against its trusted catalogue, the same one
// the run planner targets with; an agent that describes an action in its
// own way offers nothing.
func fleetActions(agents []*store.Agent, actions *actioncatalog.Catalogue) (offered map[string][]string, roles map[string]int) {
	offered, roles = map[string][]string{}, map[string]int{}
	for _, a := range agents {
		// Simulated hosts run without the isolation plugins on purpose;
		// host.isolation reports them.
		if a.Revoked || a.Facts.GetSimulated() {
			continue
		}
		roles[a.Role]++
		accepted, _ := actions.Review(a.Role, a.Plugins)
		for name := range accepted {
			offered[name] = append(offered[name], a.ID)
		}
	}
	return offered, roles
}

// playbookActions are the actions a playbook's steps, operations and
// rollbacks run, sorted, each once.
func playbookActions(pb *playbook.Playbook) []string {
	var out []string
	for _, s := range pb.Steps {
		if s.Action != "" {
			out = append(out, s.Action)
		}
		out = append(out, playbook.OperationActions[s.Operation]...)
		if s.Rollback != nil && s.Rollback.Action != "" {
			out = append(out, s.Rollback.Action)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkPlaybooks wants every built-in and custom playbook to validate
// against the trusted catalogue, and each action it runs to be offered by
// some live agent now. A playbook that does not parse or validate fails,
// and so does one naming an action that no agent offers although agents
// of the action's role are enrolled (their plugin set is incomplete or
// differs from the catalogue: the step would fail at 3 a.m.). An action
// whose role has no live agent at all warns: the coverage checks report
// the missing agents, and the playbook itself is sound. A library that
// could not be read is unknown.
func checkPlaybooks(pbs []Playbook, readErr string, agents []*store.Agent, actions *actioncatalog.Catalogue) Check {
	c := Check{ID: CheckPlaybooks, Status: StatusOK}
	if readErr != "" {
		c.Status, c.Evidence = StatusUnknown, "the playbook library could not be read: "+readErr
		c.Remediation = "make the controller's --playbook-dir a readable directory of playbook files, then firebreak playbook list"
		return c
	}
	if len(pbs) == 0 {
		c.Status, c.Evidence = StatusFail, "the controller holds no playbook"
		c.Remediation = "start the controller without replacing its built-in playbooks, or write one (docs/playbooks.md) and check it with firebreak playbook validate FILE"
		return c
	}
	offered, roles := fleetActions(agents, actions)
	var broken, unoffered, noAgents []string
	for _, p := range pbs {
		name := p.Name + " (" + p.Source + ")"
		if p.ParseErr != nil || p.Playbook == nil {
			broken = append(broken, name+": does not parse: "+fmt.Sprint(p.ParseErr))
			continue
		}
		if errs := playbook.Validate(p.Playbook, actions); len(errs) > 0 {
			var msgs []string
			for _, e := range errs[:min(len(errs), maxPlaybookProblems)] {
				msgs = append(msgs, e.Error())
			}
			if len(errs) > maxPlaybookProblems {
				msgs = append(msgs, fmt.Sprintf("and %d more", len(errs)-maxPlaybookProblems))
			}
			broken = append(broken, name+": does not validate against the action catalogue: "+strings.Join(msgs, "; "))
			continue
		}
		var missing, absent []string
		for _, act := range playbookActions(p.Playbook) {
			if len(offered[act]) > 0 {
				continue
			}
			runsOn := actionRoles(actions, act)
			if slices.ContainsFunc(runsOn, func(r string) bool { return roles[r] > 0 }) {
				missing = append(missing, act+" (no "+strings.Join(runsOn, " or ")+" agent offers it)")
			} else {
				absent = append(absent, act+" (no "+strings.Join(runsOn, " or ")+" agent is enrolled)")
			}
		}
		if len(missing) > 0 {
			unoffered = append(unoffered, name+": "+strings.Join(missing, ", "))
		}
		if len(absent) > 0 {
			noAgents = append(noAgents, name+": "+strings.Join(absent, ", "))
		}
	}
	sort.Strings(broken)
	sort.Strings(unoffered)
	sort.Strings(noAgents)
	const basis = "offered means an enrolled agent reports the catalogue's exact description for its enrolled role, as the controller reviews it"
	var fix []string
	var parts []string
	if len(broken) > 0 {
		parts = append(parts, "playbooks that would not run: "+strings.Join(broken, "; "))
		fix = append(fix, "fix each file and check it with firebreak playbook validate FILE (firebreak playbook list shows every problem)")
	}
	if len(unoffered) > 0 {
		parts = append(parts, "steps whose action no agent of its role offers now: "+strings.Join(unoffered, "; "))
		fix = append(fix, "install the agent package of the controller's version with all its plugins and their manifest.json (deploy/ssm/install-agent.yaml), "+
			"then restart the agents; firebreak actions list shows which agents offer each action")
	}
	if len(noAgents) > 0 {
		parts = append(parts, "steps with no agent of their role enrolled: "+strings.Join(noAgents, "; "))
		fix = append(fix, "enroll agents of that role: firebreak token create --role host (deploy/ssm/install-agent.yaml) or --role worker (deploy/README.md)")
	}
	switch {
	case len(broken) > 0 || len(unoffered) > 0:
		c.Status = StatusFail
	case len(noAgents) > 0:
		c.Status = StatusWarn
	}
	if len(parts) == 0 {
		c.Evidence = fmt.Sprintf("%d playbook(s) validate, and the fleet offers every action they run (%s)", len(pbs), basis)
		return c
	}
	c.Evidence = strings.Join(parts, "; ") + " (" + basis + ")"
	c.Remediation = strings.Join(fix, "; ")
	return c
}

// actionRoles are the roles the catalogue runs an action on; every role
// when it names none.
func actionRoles(actions *actioncatalog.Catalogue, name string) []string {
	d, ok := actions.Lookup(name)
	if !ok || len(d.GetRoles()) == 0 {
		return []string{"host", "worker"}
	}
	return slices.Sorted(slices.Values(d.GetRoles()))
}
