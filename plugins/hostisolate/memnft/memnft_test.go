package memnft_test

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
	"github.com/firebreak-ir/firebreak/test/netlab"
)

// backend is an nf_tables to run a test against: the stand-in, or (as
// root) the kernel's in a lab namespace, which shows that the stand-in
// answers as the kernel does. kernel is nil for the real one.
type backend struct {
	kernel *memnft.Kernel
	conn   *nftables.Conn
}

func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Run("memnft", func(t *testing.T) {
		k := memnft.New()
		c, err := k.Conn()
		if err != nil {
			t.Fatal(err)
		}
		test(t, backend{kernel: k, conn: c})
	})
	t.Run("kernel", func(t *testing.T) {
		lab := netlab.New(t, "host")
		ns, err := os.Open(lab.NetnsPath("host"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
		if err != nil {
			t.Fatal(err)
		}
		test(t, backend{conn: c})
	})
}

// tables lists the tables as nft(8) names them.
func (b backend) tables(t *testing.T) []string {
	t.Helper()
	all, err := b.conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	names := map[nftables.TableFamily]string{nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip"}
	var out []string
	for _, tab := range all {
		out = append(out, names[tab.Family]+" "+tab.Name)
	}
	slices.Sort(out)
	if b.kernel != nil && !slices.Equal(out, b.kernel.Tables()) {
		t.Errorf("Tables() = %v, listed %v", b.kernel.Tables(), out)
	}
	return out
}

// rule makes a rule identified by a verdict-less counter whose byte count
// is mark, so that marks can read the chain's order back.
func rule(t *nftables.Table, c *nftables.Chain, mark uint64) *nftables.Rule {
	return &nftables.Rule{Table: t, Chain: c, Exprs: []expr.Any{&expr.Counter{Bytes: mark}}}
}

func marks(t *testing.T, c *nftables.Conn, table *nftables.Table, chain *nftables.Chain) ([]uint64, []*nftables.Rule) {
	t.Helper()
	rules, err := c.GetRules(table, chain)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, r := range rules {
		out = append(out, r.Exprs[0].(*expr.Counter).Bytes)
	}
	return out, rules
}

func TestTablesAndChains(t *testing.T) { forEachBackend(t, testTablesAndChains) }

func testTablesAndChains(t *testing.T, b backend) {
	c := b.conn
	inet := c.AddTable(&nftables.Table{Name: "firebreak", Family: nftables.TableFamilyINet})
	c.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
	prio, policy := nftables.ChainPriority(-350), nftables.ChainPolicyDrop
	c.AddChain(&nftables.Chain{Name: "input", Table: inet, Hooknum: nftables.ChainHookInput, Priority: &prio, Type: nftables.ChainTypeFilter, Policy: &policy})
	c.AddChain(&nftables.Chain{Name: "helper", Table: inet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	if got := b.tables(t); !slices.Equal(got, []string{"inet firebreak", "ip filter"}) {
		t.Errorf("tables: %v", got)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil || len(tables) != 1 || tables[0].Name != "firebreak" {
		t.Errorf("inet tables: %+v %v", tables, err)
	}
	if all, err := c.ListTables(); err != nil || len(all) != 2 {
		t.Errorf("all tables: %+v %v", all, err)
	}
	if tab, err := c.ListTableOfFamily("filter", nftables.TableFamilyIPv4); err != nil || tab.Name != "filter" {
		t.Errorf("ListTableOfFamily: %+v %v", tab, err)
	}
	if _, err := c.ListTableOfFamily("absent", nftables.TableFamilyIPv4); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("ListTableOfFamily(absent): %v, want ENOENT", err)
	}
	ch, err := c.ListChain(inet, "input")
	if err != nil || *ch.Hooknum != *nftables.ChainHookInput || *ch.Priority != -350 || *ch.Policy != nftables.ChainPolicyDrop || ch.Type != nftables.ChainTypeFilter {
		t.Errorf("ListChain: %+v %v", ch, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil || len(chains) != 2 || chains[1].Hooknum != nil {
		t.Errorf("chains: %+v %v", chains, err)
	}
}

func TestRulePositions(t *testing.T) { forEachBackend(t, testRulePositions) }

func testRulePositions(t *testing.T, b backend) {
	c := b.conn
	tab := c.AddTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyINet})
	ch := c.AddChain(&nftables.Chain{Name: "c", Table: tab})
	c.AddRule(rule(tab, ch, 2))
	c.AddRule(rule(tab, ch, 4))
	c.InsertRule(rule(tab, ch, 1))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got, rules := marks(t, c, tab, ch)
	if !slices.Equal(got, []uint64{1, 2, 4}) {
		t.Fatalf("after add, add, insert: %v", got)
	}

	after := rule(tab, ch, 3)
	after.Position = rules[1].Handle // after the rule marked 2
	c.AddRule(after)
	replacement := rule(tab, ch, 40)
	replacement.Handle = rules[2].Handle
	c.ReplaceRule(replacement)
	if err := c.DelRule(rules[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := marks(t, c, tab, ch); !slices.Equal(got, []uint64{2, 3, 40}) {
		t.Fatalf("after positioned add, replace and delete: %v", got)
	}

	c.FlushChain(ch)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, _ := marks(t, c, tab, ch); len(got) != 0 {
		t.Fatalf("after flushing the chain: %v", got)
	}
}

func TestBatchesAreAtomic(t *testing.T) { forEachBackend(t, testBatchesAreAtomic) }

func testBatchesAreAtomic(t *testing.T, b backend) {
	c := b.conn
	tab := c.AddTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyINet})
	ch := c.AddChain(&nftables.Chain{Name: "c", Table: tab})
	c.AddRule(rule(tab, ch, 1))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		queue   func()
		wantErr syscall.Errno
	}{
		{"a rule for a missing chain", func() {
			c.AddRule(rule(tab, ch, 2))
			c.AddRule(rule(tab, &nftables.Chain{Name: "missing"}, 3))
		}, syscall.ENOENT},
		{"an exclusive create of an existing table", func() {
			c.AddRule(rule(tab, ch, 2))
			c.CreateTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyINet})
		}, syscall.EEXIST},
		{"deleting a missing chain", func() {
			c.AddRule(rule(tab, ch, 2))
			c.DelChain(&nftables.Chain{Name: "missing", Table: tab})
		}, syscall.ENOENT},
		{"deleting a missing table", func() {
			c.DelTable(tab)
			c.DelTable(&nftables.Table{Name: "t", Family: nftables.TableFamilyIPv4})
		}, syscall.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.queue()
			if err := c.Flush(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Flush error = %v, want %v", err, tt.wantErr)
			}
			if got, _ := marks(t, c, tab, ch); !slices.Equal(got, []uint64{1}) {
				t.Errorf("a refused batch changed the chain: %v", got)
			}
			if b.kernel != nil {
				batches := b.kernel.Batches()
				if last := batches[len(batches)-1]; !errors.Is(last.Err, tt.wantErr) {
					t.Errorf("recorded batch %+v", last)
				}
			}
		})
	}

	if b.kernel != nil {
		b.kernel.FailBatches(syscall.EPERM)
		c.AddRule(rule(tab, ch, 2))
		if err := c.Flush(); !errors.Is(err, syscall.EPERM) {
			t.Errorf("with FailBatches(EPERM): %v", err)
		}
		b.kernel.FailBatches(0)
	}

	c.FlushRuleset()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := b.tables(t); len(got) != 0 {
		t.Errorf("tables after flushing the ruleset: %v", got)
	}
}
