package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/internal/bandwidth"
	"github.com/firebreak-ir/firebreak/plugins/hostcollect/artifacts"
)

// collectAction is the action `firebreak collect` runs.
const collectAction = "host-collect"

// NewCollectCmd is `firebreak collect`: a run of host-collect.
func NewCollectCmd(g *Globals) *cobra.Command {
	var f runFlags
	var profile, bw string
	var names []string
	cmd := &cobra.Command{
		Use:   "collect --select SELECTOR",
		Short: "Collect forensic evidence from hosts into the evidence store (host-collect)",
		Long: `Collect forensic evidence from every host agent the selector matches.

Each agent runs host-collect at low CPU and IO priority and streams one
evidence bundle (tar + gzip or zstd, with a manifest hashing every member) to
the controller as it is produced. The controller verifies every chunk, the
whole SHA-256 and the bundle's manifest, stores it content-addressed and
starts its custody record. The evidence ids are in each target's result;
fetch them with 'firebreak evidence get ID -o FILE'.

--profile triage (the default) takes seconds; full adds filesystem walks and
process memory (--param pid=N). --artifact NAME (repeatable) collects only
those artifacts; 'firebreak artifacts list' shows the catalogue. --bandwidth
caps each agent's upload for this run, on top of the agent's own --bandwidth.
Other parameters (max_bytes, time_budget, paths, compression, …) go in
--param k=v.`,
		Example: `  firebreak collect --select hostname=web-1 --wait
  firebreak collect --select label.env=prod --bandwidth 5MiB/s --max-concurrency 20 --wait --json
  firebreak collect --select instance_id=i-0abc --profile full --param pid=4242 --wait
  firebreak collect --select all --artifact processes --artifact network_sockets --wait`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if profile != artifacts.ProfileTriage && profile != artifacts.ProfileFull {
				return ExitWith(ExitUsage, fmt.Errorf("--profile %q: want triage or full", profile))
			}
			for _, p := range f.params {
				k, _, _ := strings.Cut(p, "=")
				if k = strings.TrimSpace(k); k == "profile" || k == "artifacts" {
					return ExitWith(ExitUsage, fmt.Errorf("--param %s: use --%s instead", k, strings.TrimSuffix(k, "s")))
				}
			}
			for _, a := range names {
				if !artifacts.Known(a) {
					return ExitWith(ExitUsage, fmt.Errorf("--artifact %q is not in the catalogue: see `firebreak artifacts list`", a))
				}
			}
			bps, err := bandwidth.Parse(bw)
			if err != nil {
				return ExitWith(ExitUsage, fmt.Errorf("--bandwidth: %w", err))
			}
			typed := map[string]any{"profile": profile}
			if len(names) > 0 {
				typed["artifacts"] = names
			}
			req, err := f.request(collectAction, nil, typed)
			if err != nil {
				return err
			}
			req.UploadBytesPerSecond = uint64(bps)
			return g.createRun(cmd.Context(), req, f.wait)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&profile, "profile", artifacts.ProfileTriage, "triage (seconds) or full (adds filesystem walks and process memory)")
	fl.StringArrayVar(&names, "artifact", nil, "collect only this artifact (repeatable; see 'firebreak artifacts list')")
	fl.StringVar(&bw, "bandwidth", "", "cap on each agent's evidence upload for this run, e.g. 10MiB/s, 50MB or 100Mbit (default: the agent's own cap)")
	return cmd
}

// NewArtifactsCmd is `firebreak artifacts`: host-collect's artifact catalogue.
func NewArtifactsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "artifacts", Short: "The forensic artifacts host-collect knows"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the artifacts of host-collect, with their profiles and sources",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat := artifacts.Catalogue()
			if len(cat) == 0 {
				return errors.New("the host-collect catalogue is empty")
			}
			if g.json {
				return g.PrintJSON(cat)
			}
			tw := tabwriter.NewWriter(g.out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ARTIFACT\tPROFILES\tDESCRIPTION")
			for _, a := range cat {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, strings.Join(a.Profiles, ","), a.Description)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(list)
	return cmd
}
