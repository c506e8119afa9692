// Package hostisolate is the in-guest host isolation: the host-isolate and
// host-unisolate actions, and host-isolate-sim for benchmarks.
//
// host-isolate installs one nftables table of its own, inet firebreak, with
// input, output and forward base chains at priority -350 and policy drop.
// It keeps loopback, the controller's TCP port (so the responder's channel
// stays up), the allowed networks and optionally DHCP; it answers every
// other TCP packet with a reset, so existing sessions end at once on both
// sides, and drops the rest. The whole table goes to the kernel in one
// netlink batch, which nf_tables applies atomically, through
// github.com/google/nftables: nft(8) is never run.
//
// The isolation is recorded in the agent's state directory ([Recorded],
// [ReadRecord]). host-isolate's description asks to be reconciled at start
// (reconcile_at_start), so the agent runs it with reconcile=true before it
// connects: that restores the recorded isolation when its table is missing
// (after a reboot, or if it was deleted) and does nothing when none is
// recorded. host-unisolate deletes exactly table inet firebreak and the
// record. Both results say how they left the host (isolated or not) in the
// result's host state, which the agent reports and records itself; the
// agent never checks which action ran.
//
// The layers can be used apart: [ParseAllow] reads allow entries,
// [BuildRuleset] turns a [Spec] into the table, chains and rules without
// touching anything, and [Ruleset.Apply] sends them over any
// *nftables.Conn: the kernel's ([KernelDialer]) or the in-memory stand-in of
// package memnft.
package hostisolate
