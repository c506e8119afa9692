package servecmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	"github.com/firebreak-ir/firebreak/controller/cli"
)

// NewPluginsCmd is `firebreak plugins`: it writes the manifest of a plugin
// directory.
func NewPluginsCmd(g *cli.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "Manage plugin directories for agents"}
	manifest := &cobra.Command{
		Use:   "manifest DIR",
		Short: "Write DIR/manifest.json with the SHA-256 of every firebreak-plugin-* binary in DIR",
		Long: `Write DIR/manifest.json listing the SHA-256 of every firebreak-plugin-* file in
DIR. Agents load only plugins listed there, and check the hash at load and at
every launch. Run it after installing or upgrading plugins, as the user that
owns the directory (root on real hosts).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			m, err := pluginhost.ScanDir(dir)
			if err != nil {
				return err
			}
			if err := pluginhost.WriteManifest(dir, m); err != nil {
				return err
			}
			if g.JSON() {
				return g.PrintJSON(m)
			}
			for _, p := range m.Plugins {
				fmt.Fprintf(g.Out(), "%s  %s\n", p.SHA256, p.File)
			}
			return nil
		},
	}
	cmd.AddCommand(manifest)
	return cmd
}
