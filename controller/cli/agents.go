package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// agentJSON is the `agents list --json` contract.
type agentJSON struct {
	ID         string            `json:"id"`
	Role       string            `json:"role"`
	Hostname   string            `json:"hostname"`
	Labels     map[string]string `json:"labels"`
	Connected  bool              `json:"connected"`
	LastSeen   *time.Time        `json:"last_seen"`
	Plugins    []pluginJSON      `json:"plugins"`
	Isolated   bool              `json:"isolated"`
	Simulated  bool              `json:"simulated"`
	InstanceID string            `json:"instance_id,omitempty"`
	Account    string            `json:"account,omitempty"`
	Region     string            `json:"region,omitempty"`
	Version    string            `json:"agent_version"`
	// Attestation is how the agent proved itself at enrollment: aws-iid,
	// aws-sts or token.
	Attestation string     `json:"attestation"`
	CertExpiry  *time.Time `json:"cert_not_after,omitempty"`
	// IdentitySource says where instance_id, account and region come
	// from: always the certificate the controller issued at enrollment.
	IdentitySource string `json:"identity_source"`
	// Reported holds what the agent says about itself, which no identity
	// selector trusts.
	Reported reportedJSON `json:"reported"`
	// Suspect is set when the agent reported an action the controller does
	// not send it: uncatalogued, or described otherwise than the catalogue.
	Suspect        bool                `json:"suspect"`
	RefusedActions []refusedActionJSON `json:"refused_actions"`
	// State is connected, offline, revoked or terminated (AWS reports the
	// agent's instance terminated).
	State        string     `json:"state"`
	TerminatedAt *time.Time `json:"terminated_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
	// Degraded says why the agent cannot serve its role now, as it
	// reports it (e.g. a worker whose AWS credentials do not work yet).
	Degraded string `json:"degraded,omitempty"`
}

// agentState is an agent's state as `agents list` shows it.
func agentState(a *operatorv1.Agent) string {
	switch {
	case a.GetRevoked():
		return "revoked"
	case a.GetTerminatedAt() != nil:
		return "terminated"
	case a.GetConnected():
		return "connected"
	}
	return "offline"
}

type refusedActionJSON struct {
	Action      string   `json:"action"`
	Reason      string   `json:"reason"`
	Differences []string `json:"differences,omitempty"`
}

// reportedJSON is the self-reported part of an agent: hostname, platform,
// version, state and labels (token labels, set by an admin, already
// override the agent's own).
type reportedJSON struct {
	Hostname  string            `json:"hostname"`
	OS        string            `json:"os"`
	Arch      string            `json:"arch"`
	Version   string            `json:"agent_version"`
	Isolated  bool              `json:"isolated"`
	Simulated bool              `json:"simulated"`
	Labels    map[string]string `json:"labels"`
}

type pluginJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

// NewAgentsCmd is `firebreak agents`: list and revoke agents.
func NewAgentsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "List enrolled agents"}
	var sel string
	var withRevoked bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List agents with their role, labels, connection and plugins",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListAgents(ctx, &operatorv1.ListAgentsRequest{Selector: sel, IncludeRevoked: withRevoked})
			if err != nil {
				return rpcError(err)
			}
			out := make([]agentJSON, 0, len(resp.GetAgents()))
			for _, a := range resp.GetAgents() {
				j := agentJSON{ID: a.GetId(), Role: apiview.EnumName(a.GetRole()), Hostname: a.GetFacts().GetHostname(), Labels: a.GetFacts().GetLabels(),
					Connected: a.GetConnected(), Isolated: a.GetFacts().GetIsolated(), Simulated: a.GetFacts().GetSimulated(),
					InstanceID: a.GetFacts().GetInstanceId(), Account: a.GetFacts().GetAccount(), Region: a.GetFacts().GetRegion(),
					Version: a.GetFacts().GetAgentVersion(), Plugins: []pluginJSON{}, RefusedActions: []refusedActionJSON{},
					IdentitySource: "certificate", Attestation: a.GetAttestation()}
				for _, r := range a.GetRefusedActions() {
					j.RefusedActions = append(j.RefusedActions, refusedActionJSON{Action: r.GetAction(), Reason: r.GetReason(), Differences: r.GetDifferences()})
				}
				j.Suspect = len(j.RefusedActions) > 0
				j.State, j.RevokeReason, j.Degraded = agentState(a), a.GetRevokeReason(), a.GetFacts().GetDegraded()
				j.RevokedAt, j.TerminatedAt = apiview.Time(a.GetRevokedAt()), apiview.Time(a.GetTerminatedAt())
				if j.Labels == nil {
					j.Labels = map[string]string{}
				}
				j.Reported = reportedJSON{Hostname: j.Hostname, OS: a.GetFacts().GetOs(), Arch: a.GetFacts().GetArch(), Version: j.Version,
					Isolated: j.Isolated, Simulated: j.Simulated, Labels: j.Labels}
				j.LastSeen, j.CertExpiry = apiview.Time(a.GetLastSeen()), apiview.Time(a.GetCertNotAfter())
				for _, p := range a.GetPlugins() {
					j.Plugins = append(j.Plugins, pluginJSON{Name: p.GetDescription().GetName(), Version: p.GetDescription().GetVersion(), SHA256: p.GetSha256()})
				}
				out = append(out, j)
			}
			if g.json {
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tINSTANCE\tHOSTNAME*\tROLE\tSTATE\tLAST SEEN\tLABELS*\tPLUGINS")
			for _, a := range out {
				state := a.State
				if a.Degraded != "" && a.State == "connected" {
					state += ",DEGRADED"
				}
				if a.Isolated {
					state += ",ISOLATED"
				}
				if a.Simulated {
					state += ",simulated"
				}
				seen := "-"
				if a.LastSeen != nil {
					seen = time.Since(*a.LastSeen).Round(time.Second).String() + " ago"
				}
				if a.Suspect {
					state += ",SUSPECT"
				}
				refused := map[string]bool{}
				for _, r := range a.RefusedActions {
					refused[r.Action] = true
				}
				var names []string
				for _, p := range a.Plugins {
					if refused[p.Name] {
						// Marked: the controller does not send it this action.
						names = append(names, p.Name+"!")
						continue
					}
					names = append(names, p.Name)
				}
				inst := a.InstanceID
				if inst == "" {
					inst = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, clean(inst), clean(a.Hostname), a.Role, state, seen, clean(labelString(a.Labels)), clean(strings.Join(names, ",")))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "%d agents (* reported by the agent; id, instance, account and region come from its certificate)\n", len(out))
			for _, a := range out {
				if a.Degraded != "" && a.State == "connected" {
					fmt.Fprintf(g.errOut, "%s DEGRADED: %s\n", a.ID, clean(a.Degraded))
				}
			}
			if suspects := countSuspects(out); suspects > 0 {
				fmt.Fprintf(g.errOut, "%d SUSPECT: PLUGIN! is an action the agent reports otherwise than the controller's catalogue; it is not sent that action (details: --json, audit agent.action_mismatch)\n", suspects)
			}
			return nil
		},
	}
	list.Flags().StringVar(&sel, "select", "", "only agents matching this selector")
	list.Flags().BoolVar(&withRevoked, "revoked", false, "list revoked agents too (until they are forgotten)")
	cmd.AddCommand(list, newAgentsRevokeCmd(g), newAgentsForgetCmd(g))
	return cmd
}

func countSuspects(agents []agentJSON) int {
	n := 0
	for _, a := range agents {
		if a.Suspect {
			n++
		}
	}
	return n
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// NewActionsCmd is `firebreak actions`: the controller's action catalogue.
func NewActionsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "actions", Short: "List the controller's action catalogue"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the catalogue's actions with their domain, parameters and how many agents offer them",
		Long: `List the controller's trusted action catalogue: the first-party actions built
into the controller. Runs and playbooks take an action's parameters, defaults
and destructive flag from here, never from an agent. AGENTS counts the agents
that report the action with exactly this description; an agent that reports
it otherwise is not sent it and is marked SUSPECT in ` + "`firebreak agents list`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ctx, done, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.op.ListActions(ctx, &operatorv1.ListActionsRequest{})
			if err != nil {
				return rpcError(err)
			}
			type paramJSON struct {
				Name        string   `json:"name"`
				Type        string   `json:"type"`
				Required    bool     `json:"required"`
				Default     string   `json:"default,omitempty"`
				Allowed     []string `json:"allowed,omitempty"`
				Description string   `json:"description"`
			}
			type actionJSON struct {
				Name        string      `json:"name"`
				Version     string      `json:"version"`
				Domain      string      `json:"domain"`
				Destructive bool        `json:"destructive"`
				Rollback    string      `json:"rollback_action,omitempty"`
				Description string      `json:"description"`
				Agents      uint32      `json:"agents"`
				Params      []paramJSON `json:"params"`
				Source      string      `json:"source"`
				Digest      string      `json:"digest"`
			}
			var out []actionJSON
			for _, a := range resp.GetActions() {
				d := a.GetDescription()
				j := actionJSON{Name: d.GetName(), Version: d.GetVersion(), Domain: apiview.EnumName(d.GetDomain()),
					Destructive: d.GetDestructive(), Rollback: d.GetRollbackAction(), Description: d.GetDescription(), Agents: a.GetAgents(), Params: []paramJSON{},
					Source: a.GetSource(), Digest: a.GetDigest()}
				for _, p := range d.GetParams() {
					j.Params = append(j.Params, paramJSON{Name: p.GetName(), Type: apiview.EnumName(p.GetType()),
						Required: p.GetRequired(), Default: p.GetDefaultJson(), Allowed: p.GetAllowed(), Description: p.GetDescription()})
				}
				out = append(out, j)
			}
			if g.json {
				if out == nil {
					out = []actionJSON{}
				}
				return g.PrintJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ACTION\tVERSION\tDOMAIN\tDESTRUCTIVE\tAGENTS\tPARAMETERS\tDESCRIPTION")
			for _, a := range out {
				var ps []string
				for _, p := range a.Params {
					s := p.Name + ":" + p.Type
					if p.Required {
						s += "*"
					}
					ps = append(ps, s)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\t%s\n", a.Name, a.Version, a.Domain, a.Destructive, a.Agents, strings.Join(ps, " "), a.Description)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(list)
	return cmd
}
