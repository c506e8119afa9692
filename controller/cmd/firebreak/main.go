// Command firebreak is the Firebreak controller and operator CLI.
//
// This file is the binary's composition root: commands lists every
// top-level command, once. The operator commands come from controller/cli,
// which links no server package; the commands that run the controller
// (servecmd), the lab (labcmd) and the fleet bench (benchcmd) link the
// whole system and are added here, so only this binary does.
package main

import (
	"os"

	"github.com/firebreak-ir/firebreak/controller/cli"
	"github.com/firebreak-ir/firebreak/controller/cli/benchcmd"
	"github.com/firebreak-ir/firebreak/controller/cli/labcmd"
	"github.com/firebreak-ir/firebreak/controller/cli/servecmd"
)

func main() { os.Exit(cli.Main(os.Args[1:], commands())) }

// commands is every top-level command of firebreak. A new command is added
// here and nowhere else.
func commands() []cli.Command {
	return []cli.Command{
		// The controller and the agents' plugin directories.
		servecmd.NewControllerCmd,
		servecmd.NewPluginsCmd,
		// Enrollment, operators, the audit log and the controllers.
		cli.NewTokenCmd,
		cli.NewAttestCmd,
		cli.NewOperatorCmd,
		cli.NewWhoamiCmd,
		cli.NewAuditCmd,
		cli.NewControllersCmd,
		cli.NewConsoleCmd,
		// The fleet and its actions.
		cli.NewAgentsCmd,
		cli.NewActionsCmd,
		cli.NewAccountsCmd,
		cli.NewReadinessCmd,
		cli.NewArtifactsCmd,
		// Runs.
		cli.NewRunCmd,
		cli.NewIsolateCmd,
		cli.NewUnisolateCmd,
		cli.NewCollectCmd,
		cli.NewRunsCmd,
		cli.NewApproveCmd,
		cli.NewRejectCmd,
		cli.NewCancelCmd,
		// Incidents: playbooks, cases, findings and evidence.
		cli.NewPlaybookCmd,
		cli.NewCaseCmd,
		cli.NewFindingsCmd,
		cli.NewEvidenceCmd,
		cli.NewScopeCmd,
		cli.NewEradicateCmd,
		// Rehearsal and measurement.
		labcmd.NewLabCmd,
		benchcmd.NewBenchCmd,
		cli.NewVersionCmd,
	}
}
