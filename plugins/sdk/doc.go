// Package sdk is the public contract for writing a Firebreak response action.
//
// An action is a small program that implements [Action] and calls [Serve] from
// its main function. The agent (a host agent or an API worker) starts it
// through hashicorp/go-plugin over gRPC, after checking its SHA-256 against
// the plugin manifest, and calls Describe once and Execute once per task.
//
//	func main() { sdk.Serve(sysinfo.New()) }
//
// Rules every action follows:
//   - stdout belongs to the go-plugin handshake: log to stderr only, or better,
//     through [Emitter.Log], which reaches the run's progress view;
//   - decode parameters with [Request.Decode], which refuses unknown fields;
//   - never read credentials from the environment: service-domain actions get
//     short-lived credentials for exactly one account in [Request.AWS];
//   - return an error that says what failed and what to do about it. Wrap it
//     with [Errorf] to choose the gRPC code;
//   - an action that changes host state the agent reports (whether the host
//     is isolated) returns a result implementing [HostStateReporter]; one
//     that keeps host state to restore after a reboot sets
//     reconcile_at_start in its description, and the agent runs it with
//     those parameters at start, before it connects.
//
// Built-in actions speak the same contract in memory ([ServeInMemory]), and
// package sdktest runs an action in-process for tests.
package sdk
