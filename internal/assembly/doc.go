// Package assembly holds the assemblies that build the whole Firebreak
// system: the incident lab (internal/assembly/lab) and the fleet bench
// (internal/assembly/fleetbench) in one process, and the failover bench
// (internal/assembly/failoverbench), which runs controller processes of
// the firebreak binary and simulated agents in its own.
//
// The rest of internal/ is leaf libraries (pki, tasksign, telemetry,
// termsafe, bandwidth, bundle, the AWS emulator, …) that the controller,
// the agent and the plugins build on. The dependency rule:
//   - only the packages under internal/assembly may import controller/...
//     and agent/...; a leaf library under internal/ imports neither;
//   - nothing under controller/ or agent/ imports an assembly, except the
//     firebreak command's lab and bench subcommands
//     (controller/cli/labcmd, controller/cli/benchcmd), which the binary's
//     composition root (controller/cmd/firebreak) adds to its command list.
//
// This package has no code; it documents the folder.
package assembly
