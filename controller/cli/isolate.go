package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// NewIsolateCmd is `firebreak isolate`: a run of host-isolate.
func NewIsolateCmd(g *Globals) *cobra.Command { return newIsolateCmd(g, true) }

// NewUnisolateCmd is `firebreak unisolate`: a run of host-unisolate.
func NewUnisolateCmd(g *Globals) *cobra.Command { return newIsolateCmd(g, false) }

// newIsolateCmd builds `isolate` and `unisolate`: shortcuts for runs of the
// host-isolate and host-unisolate actions, with the same output contract as
// `firebreak run`.
func newIsolateCmd(g *Globals, isolate bool) *cobra.Command {
	var f runFlags
	var allow []string
	var dhcp string
	use, action, short := "isolate --select SELECTOR", "host-isolate", "Cut every matching host off the network, keeping the responder's channel"
	long := `Isolate every matching host in the guest with nftables: a table of its own
(inet firebreak) drops everything except loopback, the controller link and
the --allow networks, and cuts existing sessions at once. The agent's
channel stays up, so collection can follow. Undo it exactly with
'firebreak unisolate'. A run over more hosts than the approval threshold
waits for a second operator (firebreak approve RUN_ID).`
	example := `  firebreak isolate --select hostname=web-3 --reason "GuardDuty SSH brute force" --wait
  firebreak isolate --select label.env=prod,role=host --allow 10.0.99.0/24 --allow 169.254.169.253:53 --wait`
	if !isolate {
		use, action, short = "unisolate --select SELECTOR", "host-unisolate", "Undo host isolation exactly: remove the firebreak nftables table and nothing else"
		long = `Undo host isolation on every matching host: delete exactly the inet firebreak
table and its record, and nothing of anyone else's.`
		example = `  firebreak unisolate --select hostname=web-3 --wait`
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			extra := map[string]string{}
			if isolate && len(allow) > 0 {
				extra["allow"] = strings.Join(allow, ",")
			}
			if isolate && dhcp != "" {
				extra["allow_dhcp"] = dhcp
			}
			if f.reason != "" {
				extra["reason"] = f.reason
			}
			req, err := f.request(action, extra, nil)
			if err != nil {
				return err
			}
			return g.createRun(cmd.Context(), req, f.wait)
		},
	}
	f.register(cmd)
	if isolate {
		cmd.Flags().StringArrayVar(&allow, "allow", nil, "network kept reachable while isolated: CIDR, IP, or CIDR:PORT[/tcp|udp] (repeatable)")
		cmd.Flags().StringVar(&dhcp, "allow-dhcp", "", "keep DHCP open (true|false; default: true on EC2, so the instance keeps its lease)")
	}
	return cmd
}
