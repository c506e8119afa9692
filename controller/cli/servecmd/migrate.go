package servecmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/firebreak-ir/firebreak/controller"
	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
)

// migrateJSON is `controller migrate --json`.
type migrateJSON struct {
	// Applied names the migrations this command applied, in order.
	Applied []string `json:"applied"`
	// Total is the number of migrations the database holds now.
	Total int `json:"total"`
}

// newMigrateCmd is `firebreak controller migrate`.
func newMigrateCmd(g *cli.Globals) *cobra.Command {
	var o store.Options
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "migrate (--store DSN | --data-dir DIR)",
		Short: "Apply the store's schema migrations without starting a controller",
		Long: `Apply the migrations the store lacks, under the store's migration lock, and
print what was applied; a controller applies them itself when it starts, so
this is for upgrading a cluster's PostgreSQL before its controllers. A store
holding a migration this binary does not know is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.DSN == "") == (o.DataDir == "") {
				return cli.ExitWith(cli.ExitUsage, errors.New("give the store to migrate: --store postgres://USER@HOST/DB?sslmode=… or --data-dir DIR (its SQLite database)"))
			}
			if o.DataDir != "" {
				if _, err := os.Stat(o.DataDir); err != nil {
					return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--data-dir %s: %w", o.DataDir, err))
				}
			}
			if err := store.CheckOptions(o); err != nil {
				return cli.ExitWith(cli.ExitUsage, fmt.Errorf("--store: %w", err))
			}
			log := telemetry.NewLogger(g.ErrOut(), true, slog.LevelWarn)
			s, err := controller.OpenStore(cmd.Context(), o, timeout, log)
			if err != nil {
				return err
			}
			defer s.Close()
			m := s.Migrated()
			if g.JSON() {
				return g.PrintJSON(migrateJSON{Applied: append([]string{}, m.Applied...), Total: m.Total})
			}
			if len(m.Applied) == 0 {
				fmt.Fprintf(g.Out(), "the schema is current: %d migrations\n", m.Total)
				return nil
			}
			fmt.Fprintf(g.Out(), "applied %d migrations (%d in all):\n  %s\n", len(m.Applied), m.Total, strings.Join(m.Applied, "\n  "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DSN, "store", "", "PostgreSQL store, postgres://USER@HOST/DB?sslmode=verify-full (password: PGPASSWORD or ~/.pgpass)")
	f.StringVar(&o.DataDir, "data-dir", "", "data directory of a controller on SQLite")
	f.DurationVar(&timeout, "store-connect-timeout", 60*time.Second, "how long to wait for an unreachable --store, trying again with backoff")
	return cmd
}
