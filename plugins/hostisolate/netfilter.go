package hostisolate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// Dialer opens a connection to nf_tables: the kernel's, or an in-memory
// stand-in (package memnft).
type Dialer func() (*nftables.Conn, error)

// KernelDialer returns a Dialer for the kernel's nf_tables in the network
// namespace that netnsFD refers to, or in the calling process's own
// namespace when netnsFD is 0. The connection is a lasting one, so a task's
// look-ups and batch share one netlink socket; close it with CloseLasting.
func KernelDialer(netnsFD int) Dialer {
	return func() (*nftables.Conn, error) {
		opts := []nftables.ConnOption{nftables.AsLasting()}
		if netnsFD != 0 {
			opts = append(opts, nftables.WithNetNSFd(netnsFD))
		}
		return nftables.New(opts...)
	}
}

// PacketCounts are what an isolation has stopped so far, read from the
// counters of its rules.
type PacketCounts struct {
	// Reset counts TCP packets answered with a reset.
	Reset uint64 `json:"reset_packets"`
	// Dropped counts other packets dropped by the chains' policy.
	Dropped uint64 `json:"dropped_packets"`
}

// liveTable is what the kernel holds under table inet firebreak.
type liveTable struct {
	present bool
	chains  map[string]*nftables.Chain
	rules   map[string][]*nftables.Rule
}

// readLive reads table inet firebreak, its chains and rules. Of other
// tables only the names of tables and chains are seen; their rules are
// never read.
func readLive(conn *nftables.Conn) (*liveTable, error) {
	tables, err := conn.ListTablesOfFamily(TableFamily)
	if err != nil {
		return nil, netfilterError("listing nftables tables", err)
	}
	live := &liveTable{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{}}
	live.present = slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName })
	if !live.present {
		return live, nil
	}
	chains, err := conn.ListChainsOfTableFamily(TableFamily)
	if err != nil {
		return nil, netfilterError("listing the chains of table "+TableDisplay, err)
	}
	table := &nftables.Table{Name: TableName, Family: TableFamily}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		live.chains[c.Name] = c
		rules, err := conn.GetRules(table, c)
		if err != nil {
			return nil, netfilterError("reading the rules of chain "+c.Name+" of table "+TableDisplay, err)
		}
		live.rules[c.Name] = rules
	}
	return live, nil
}

// matches reports whether the live table is exactly the built ruleset:
// the same base chains with the same hooks, priorities and policies, and
// the same rules in the same order, recognised by their comments, the last
// of which carries the ruleset's digest. A rule added, removed or replaced
// behind the isolation's back makes it differ.
func (l *liveTable) matches(rs *Ruleset) bool {
	if !l.present || len(l.chains) != len(rs.Chains) {
		return false
	}
	for _, want := range rs.Chains {
		got, ok := l.chains[want.Name]
		if !ok || got.Type != want.Type || !eqPtr(got.Hooknum, want.Hooknum) ||
			!eqPtr(got.Priority, want.Priority) || !eqPtr(got.Policy, want.Policy) {
			return false
		}
		wantRules, gotRules := rs.ChainRules(want.Name), l.rules[want.Name]
		if len(gotRules) != len(wantRules) {
			return false
		}
		for i := range wantRules {
			if ruleComment(gotRules[i].UserData) != ruleComment(wantRules[i].UserData) ||
				len(gotRules[i].Exprs) != len(wantRules[i].Exprs) {
				return false
			}
		}
	}
	return true
}

// ruleCount is the number of rules in the live table.
func (l *liveTable) ruleCount() int {
	n := 0
	for _, r := range l.rules {
		n += len(r)
	}
	return n
}

// counts sums the counters of the live table's reject rules and of its
// verdict-less counter rules, which count what the policy drops.
func (l *liveTable) counts() PacketCounts {
	var pc PacketCounts
	for _, rules := range l.rules {
		for _, r := range rules {
			var c *expr.Counter
			rejects := false
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Counter:
					c = e
				case *expr.Reject:
					rejects = true
				}
			}
			switch {
			case c == nil:
			case rejects:
				pc.Reset += c.Packets
			case len(r.Exprs) == 1:
				pc.Dropped += c.Packets
			}
		}
	}
	return pc
}

// deleteTable removes table inet firebreak, and nothing else, in one batch.
func deleteTable(conn *nftables.Conn) error {
	conn.DelTable(&nftables.Table{Name: TableName, Family: TableFamily})
	return conn.Flush()
}

// ruleComment reads a rule's comment. Unlike userdata.GetString it does not
// trust the encoding, since a live rule may have been written by anyone.
func ruleComment(ud []byte) string {
	for len(ud) >= 2 {
		typ, n := userdata.Type(ud[0]), int(ud[1])
		if len(ud) < 2+n {
			return ""
		}
		if typ == userdata.TypeComment {
			s, _ := bytes.CutSuffix(ud[2:2+n], []byte{0})
			return string(s)
		}
		ud = ud[2+n:]
	}
	return ""
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// netfilterError says what failed and what to do, with a gRPC code the
// operator can act on.
func netfilterError(what string, err error) error {
	switch {
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return sdk.Errorf(codes.PermissionDenied, "%s: %v: the agent must run as root (or with CAP_NET_ADMIN) to change nftables", what, err)
	case errors.Is(err, syscall.EPROTONOSUPPORT), errors.Is(err, syscall.EOPNOTSUPP):
		return sdk.Errorf(codes.FailedPrecondition, "%s: %v: the kernel has no nf_tables support (load the nf_tables module)", what, err)
	}
	// codes.Unknown, not Internal: the agent reads an Internal error that
	// mentions a connection as a dead plugin.
	return sdk.Errorf(codes.Unknown, "%s: %v", what, err)
}

// describeBatchError adds what the state of the host is after a failed
// batch: nf_tables applies a batch entirely or not at all.
func describeBatchError(what string, err error) error {
	return netfilterError(fmt.Sprintf("%s (the kernel applies a batch entirely or not at all, so nothing changed)", what), err)
}
