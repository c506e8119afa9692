package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller/fleet"
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
	CertExpiry *time.Time        `json:"cert_not_after,omitempty"`
}

type pluginJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
}

func newAgentsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "agents", Short: "List enrolled agents"}
	var sel string
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
			resp, err := c.op.ListAgents(ctx, &operatorv1.ListAgentsRequest{Selector: sel})
			if err != nil {
				return rpcError(err)
			}
			out := make([]agentJSON, 0, len(resp.GetAgents()))
			for _, a := range resp.GetAgents() {
				j := agentJSON{ID: a.GetId(), Role: fleet.RoleName(a.GetRole()), Hostname: a.GetFacts().GetHostname(), Labels: a.GetFacts().GetLabels(),
					Connected: a.GetConnected(), Isolated: a.GetFacts().GetIsolated(), Simulated: a.GetFacts().GetSimulated(),
					InstanceID: a.GetFacts().GetInstanceId(), Account: a.GetFacts().GetAccount(), Region: a.GetFacts().GetRegion(),
					Version: a.GetFacts().GetAgentVersion(), Plugins: []pluginJSON{}}
				if j.Labels == nil {
					j.Labels = map[string]string{}
				}
				if a.GetLastSeen() != nil {
					t := a.GetLastSeen().AsTime()
					j.LastSeen = &t
				}
				if a.GetCertNotAfter() != nil {
					t := a.GetCertNotAfter().AsTime()
					j.CertExpiry = &t
				}
				for _, p := range a.GetPlugins() {
					j.Plugins = append(j.Plugins, pluginJSON{Name: p.GetDescription().GetName(), Version: p.GetDescription().GetVersion(), SHA256: p.GetSha256()})
				}
				out = append(out, j)
			}
			if g.json {
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tROLE\tSTATE\tLAST SEEN\tLABELS\tPLUGINS")
			for _, a := range out {
				state := "offline"
				if a.Connected {
					state = "connected"
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
				var names []string
				for _, p := range a.Plugins {
					names = append(names, p.Name)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, clean(a.Hostname), a.Role, state, seen, clean(labelString(a.Labels)), strings.Join(names, ","))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "%d agents\n", len(out))
			return nil
		},
	}
	list.Flags().StringVar(&sel, "select", "", "only agents matching this selector")
	cmd.AddCommand(list)
	return cmd
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

func newActionsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "actions", Short: "List the actions the fleet offers"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List actions with their domain, parameters and how many agents offer them",
		Args:  cobra.NoArgs,
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
			}
			var out []actionJSON
			for _, a := range resp.GetActions() {
				d := a.GetDescription()
				j := actionJSON{Name: d.GetName(), Version: d.GetVersion(), Domain: strings.ToLower(strings.TrimPrefix(d.GetDomain().String(), "DOMAIN_")),
					Destructive: d.GetDestructive(), Rollback: d.GetRollbackAction(), Description: d.GetDescription(), Agents: a.GetAgents(), Params: []paramJSON{}}
				for _, p := range d.GetParams() {
					j.Params = append(j.Params, paramJSON{Name: p.GetName(), Type: strings.ToLower(strings.TrimPrefix(p.GetType().String(), "PARAM_TYPE_")),
						Required: p.GetRequired(), Default: p.GetDefaultJson(), Allowed: p.GetAllowed(), Description: p.GetDescription()})
				}
				out = append(out, j)
			}
			if g.json {
				if out == nil {
					out = []actionJSON{}
				}
				return g.printJSON(out)
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
