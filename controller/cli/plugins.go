package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/agent/pluginhost"
	"github.com/firebreak-ir/firebreak/internal/pki"
)

func init() { extraCommands = append(extraCommands, newPluginsCmd) }

func newPluginsCmd(g *globals) *cobra.Command {
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
			entries, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			m := pluginhost.Manifest{Version: 1, Plugins: []pluginhost.ManifestEntry{}}
			for _, e := range entries {
				if !strings.HasPrefix(e.Name(), pluginhost.FilePrefix) || !e.Type().IsRegular() {
					continue
				}
				sum, err := pluginhost.FileSHA256(filepath.Join(dir, e.Name()))
				if err != nil {
					return err
				}
				m.Plugins = append(m.Plugins, pluginhost.ManifestEntry{File: e.Name(), SHA256: sum})
			}
			sort.Slice(m.Plugins, func(i, j int) bool { return m.Plugins[i].File < m.Plugins[j].File })
			b, _ := json.MarshalIndent(m, "", "  ")
			if err := pki.WriteFileAtomic(filepath.Join(dir, pluginhost.ManifestFile), append(b, '\n'), 0o644); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(m)
			}
			for _, p := range m.Plugins {
				fmt.Fprintf(g.out, "%s  %s\n", p.SHA256, p.File)
			}
			return nil
		},
	}
	cmd.AddCommand(manifest)
	return cmd
}
