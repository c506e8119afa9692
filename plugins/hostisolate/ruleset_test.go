package hostisolate_test

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate/memnft"
)

func mustSpec(t testing.TB, port uint16, controllers []string, dhcp bool, allow ...string) hostisolate.Spec {
	t.Helper()
	s := hostisolate.Spec{ControllerPort: port, DHCP: dhcp}
	for _, c := range controllers {
		s.Controllers = append(s.Controllers, netip.MustParseAddr(c))
	}
	for _, a := range allow {
		entry, err := hostisolate.ParseAllow(a)
		if err != nil {
			t.Fatal(err)
		}
		s.Allow = append(s.Allow, entry)
	}
	if err := s.CheckAndSetDefaults(); err != nil {
		t.Fatal(err)
	}
	return s
}

// liveTable reads table inet firebreak back through the nftables library's
// own parser and renders each chain's rules.
func liveTable(t testing.TB, conn *nftables.Conn) (map[string]*nftables.Chain, map[string][]string) {
	t.Helper()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	byName, rules := map[string]*nftables.Chain{}, map[string][]string{}
	for _, c := range chains {
		if c.Table.Name != hostisolate.TableName {
			continue
		}
		byName[c.Name] = c
		rs, err := conn.GetRules(&nftables.Table{Name: hostisolate.TableName, Family: nftables.TableFamilyINet}, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			s, err := render(r)
			if err != nil {
				t.Fatalf("chain %s: %v", c.Name, err)
			}
			rules[c.Name] = append(rules[c.Name], s)
		}
	}
	return byName, rules
}

func TestBuildRulesetRules(t *testing.T) {
	const (
		loopbackIn  = `iif "lo" accept comment "firebreak: loopback"`
		loopbackOut = `oif "lo" accept comment "firebreak: loopback"`
		resetsOut   = `meta nfproto ipv4 meta length 40 meta l4proto tcp tcp flags & rst == rst accept comment "firebreak: resets that end cut sessions"`
		resets6Out  = `meta nfproto ipv6 meta length 60 meta l4proto tcp tcp flags & rst == rst accept comment "firebreak: ipv6 resets that end cut sessions"`
		cut         = `meta l4proto tcp counter reject with tcp reset comment "firebreak: cut tcp with a reset"`
		dropped     = `counter comment "firebreak: dropped by policy"`
		marker      = `counter comment "firebreak: dropped by policy; isolation DIGEST"`
		pmtu        = `meta nfproto ipv4 meta l4proto icmp icmp type . code 3 . 4 accept comment "firebreak: path mtu discovery"`
		pmtu6       = `meta nfproto ipv6 meta l4proto icmpv6 icmpv6 type 2 accept comment "firebreak: ipv6 path mtu discovery"`
		nd          = `meta nfproto ipv6 meta l4proto icmpv6 icmpv6 type 133-136 ip6 hoplimit 255 accept comment "firebreak: ipv6 neighbour discovery"`
	)
	tests := []struct {
		name string
		spec hostisolate.Spec
		want map[string][]string
	}{
		{
			name: "ipv4 controller only",
			spec: mustSpec(t, 8443, []string{"10.99.0.1"}, false),
			want: map[string][]string{
				"input": {
					loopbackIn,
					`meta nfproto ipv4 ip saddr 10.99.0.1 meta l4proto tcp tcp sport 8443 accept comment "firebreak: controller 10.99.0.1 tcp/8443"`,
					pmtu, cut, marker,
				},
				"output": {
					loopbackOut,
					`meta nfproto ipv4 ip daddr 10.99.0.1 meta l4proto tcp tcp dport 8443 accept comment "firebreak: controller 10.99.0.1 tcp/8443"`,
					resetsOut, resets6Out, cut, dropped,
				},
				"forward": {cut, dropped},
			},
		},
		{
			name: "dual stack with allow entries and dhcp",
			spec: mustSpec(t, 443, []string{"fd99::1", "10.99.0.1", "::ffff:10.99.0.1"}, true,
				"[2001:db8::/32]:22/tcp", "192.0.2.7:53", "10.0.0.0/8", "10.0.0.0/8"),
			want: map[string][]string{
				"input": {
					loopbackIn,
					`meta nfproto ipv4 ip saddr 10.99.0.1 meta l4proto tcp tcp sport 443 accept comment "firebreak: controller 10.99.0.1 tcp/443"`,
					`meta nfproto ipv6 ip6 saddr fd99::1 meta l4proto tcp tcp sport 443 accept comment "firebreak: controller fd99::1 tcp/443"`,
					`meta nfproto ipv4 ip saddr 10.0.0.0/8 accept comment "firebreak: allow 10.0.0.0/8"`,
					`meta nfproto ipv4 ip saddr 192.0.2.7 meta l4proto tcp tcp sport 53 accept comment "firebreak: allow 192.0.2.7/32:53 (tcp)"`,
					`meta nfproto ipv4 ip saddr 192.0.2.7 meta l4proto udp udp sport 53 accept comment "firebreak: allow 192.0.2.7/32:53 (udp)"`,
					`meta nfproto ipv6 ip6 saddr 2001:db8::/32 meta l4proto tcp tcp sport 22 accept comment "firebreak: allow [2001:db8::/32]:22/tcp (tcp)"`,
					`meta nfproto ipv4 meta l4proto udp udp sport 67 udp dport 68 accept comment "firebreak: dhcp"`,
					`meta nfproto ipv6 meta l4proto udp udp sport 547 udp dport 546 accept comment "firebreak: dhcpv6"`,
					nd, pmtu, pmtu6, cut, marker,
				},
				"output": {
					loopbackOut,
					`meta nfproto ipv4 ip daddr 10.99.0.1 meta l4proto tcp tcp dport 443 accept comment "firebreak: controller 10.99.0.1 tcp/443"`,
					`meta nfproto ipv6 ip6 daddr fd99::1 meta l4proto tcp tcp dport 443 accept comment "firebreak: controller fd99::1 tcp/443"`,
					`meta nfproto ipv4 ip daddr 10.0.0.0/8 accept comment "firebreak: allow 10.0.0.0/8"`,
					`meta nfproto ipv4 ip daddr 192.0.2.7 meta l4proto tcp tcp dport 53 accept comment "firebreak: allow 192.0.2.7/32:53 (tcp)"`,
					`meta nfproto ipv4 ip daddr 192.0.2.7 meta l4proto udp udp dport 53 accept comment "firebreak: allow 192.0.2.7/32:53 (udp)"`,
					`meta nfproto ipv6 ip6 daddr 2001:db8::/32 meta l4proto tcp tcp dport 22 accept comment "firebreak: allow [2001:db8::/32]:22/tcp (tcp)"`,
					`meta nfproto ipv4 meta l4proto udp udp sport 68 udp dport 67 accept comment "firebreak: dhcp"`,
					`meta nfproto ipv6 meta l4proto udp udp sport 546 udp dport 547 accept comment "firebreak: dhcpv6"`,
					nd, resetsOut, resets6Out, cut, dropped,
				},
				"forward": {cut, dropped},
			},
		},
		{
			name: "ipv6 controller only keeps neighbour discovery",
			spec: mustSpec(t, 8443, []string{"fd99::1"}, false),
			want: map[string][]string{
				"input": {
					loopbackIn,
					`meta nfproto ipv6 ip6 saddr fd99::1 meta l4proto tcp tcp sport 8443 accept comment "firebreak: controller fd99::1 tcp/8443"`,
					nd, pmtu6, cut, marker,
				},
				"output": {
					loopbackOut,
					`meta nfproto ipv6 ip6 daddr fd99::1 meta l4proto tcp tcp dport 8443 accept comment "firebreak: controller fd99::1 tcp/8443"`,
					nd, resetsOut, resets6Out, cut, dropped,
				},
				"forward": {cut, dropped},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := hostisolate.BuildRuleset(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			k := memnft.New()
			conn, err := k.Conn()
			if err != nil {
				t.Fatal(err)
			}
			if err := rs.Apply(conn, false); err != nil {
				t.Fatal(err)
			}
			chains, rules := liveTable(t, conn)

			hooks := map[string]*nftables.ChainHook{"input": nftables.ChainHookInput, "output": nftables.ChainHookOutput, "forward": nftables.ChainHookForward}
			if len(chains) != 3 {
				t.Fatalf("chains %v, want input, output and forward", slices.Collect(func(yield func(string) bool) {
					for n := range chains {
						yield(n)
					}
				}))
			}
			for name, hook := range hooks {
				c := chains[name]
				if c == nil {
					t.Fatalf("no chain %s", name)
				}
				if c.Type != nftables.ChainTypeFilter || *c.Hooknum != *hook || *c.Priority != -350 || *c.Policy != nftables.ChainPolicyDrop {
					t.Errorf("chain %s: type %s hook %d priority %d policy %d; want filter hook %d priority -350 policy drop",
						name, c.Type, *c.Hooknum, *c.Priority, *c.Policy, *hook)
				}
			}
			total := 0
			for name, want := range tt.want {
				want = slices.Clone(want)
				for i := range want {
					want[i] = strings.ReplaceAll(want[i], "DIGEST", rs.Digest)
				}
				total += len(want)
				if !slices.Equal(rules[name], want) {
					t.Errorf("chain %s:\n got: %s\nwant: %s", name, strings.Join(rules[name], "\n      "), strings.Join(want, "\n      "))
				}
			}
			if len(rs.Rules) != total {
				t.Errorf("Ruleset has %d rules, the kernel %d", len(rs.Rules), total)
			}
		})
	}
}

func TestBuildRulesetDigest(t *testing.T) {
	base := mustSpec(t, 8443, []string{"10.0.0.1", "10.0.0.2"}, false, "10.1.0.0/16", "192.0.2.1:22/tcp")
	same := mustSpec(t, 8443, []string{"10.0.0.2", "10.0.0.1"}, false, "192.0.2.1:22/tcp", "10.1.0.0/16", "10.1.0.0/16")
	tests := []struct {
		name     string
		spec     hostisolate.Spec
		wantSame bool
	}{
		{"the same spec in another order", same, true},
		{"another port", mustSpec(t, 8444, []string{"10.0.0.1", "10.0.0.2"}, false, "10.1.0.0/16", "192.0.2.1:22/tcp"), false},
		{"dhcp", mustSpec(t, 8443, []string{"10.0.0.1", "10.0.0.2"}, true, "10.1.0.0/16", "192.0.2.1:22/tcp"), false},
		{"one allow entry less", mustSpec(t, 8443, []string{"10.0.0.1", "10.0.0.2"}, false, "10.1.0.0/16"), false},
		{"udp instead of tcp", mustSpec(t, 8443, []string{"10.0.0.1", "10.0.0.2"}, false, "10.1.0.0/16", "192.0.2.1:22/udp"), false},
	}
	want, err := hostisolate.BuildRuleset(base)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(want.Digest, "sha256:") || len(want.Digest) != len("sha256:")+64 {
		t.Fatalf("digest %q", want.Digest)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostisolate.BuildRuleset(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if (got.Digest == want.Digest) != tt.wantSame {
				t.Errorf("digest %s vs %s, want same=%t", got.Digest, want.Digest, tt.wantSame)
			}
		})
	}
}

func TestBuildRulesetRefusesWithoutController(t *testing.T) {
	for _, spec := range []hostisolate.Spec{{}, {ControllerPort: 8443}, {Controllers: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}} {
		if _, err := hostisolate.BuildRuleset(spec); !errors.Is(err, hostisolate.ErrControllerUnknown) {
			t.Errorf("BuildRuleset(%+v) error = %v, want ErrControllerUnknown", spec, err)
		}
		if err := spec.CheckAndSetDefaults(); !errors.Is(err, hostisolate.ErrControllerUnknown) {
			t.Errorf("CheckAndSetDefaults(%+v) error = %v, want ErrControllerUnknown", spec, err)
		}
	}
}

// recorder wraps the in-memory kernel as the nftables test dialer and
// keeps every request the connection sends.
type recorder struct {
	k     *memnft.Kernel
	calls [][]netlink.Message
}

func (r *recorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	if req != nil {
		r.calls = append(r.calls, slices.Clone(req))
	}
	return r.k.Dial(req)
}

func msgName(m netlink.Message) string {
	switch m.Header.Type {
	case netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN):
		return "begin"
	case netlink.HeaderType(unix.NFNL_MSG_BATCH_END):
		return "end"
	}
	names := map[int]string{unix.NFT_MSG_NEWTABLE: "newtable", unix.NFT_MSG_DELTABLE: "deltable",
		unix.NFT_MSG_NEWCHAIN: "newchain", unix.NFT_MSG_NEWRULE: "newrule"}
	if n, ok := names[int(m.Header.Type&0xff)]; ok {
		if m.Header.Type&0xff == unix.NFT_MSG_NEWTABLE && m.Header.Flags&netlink.Excl != 0 {
			return n + "(excl)"
		}
		return n
	}
	return m.Header.Type.String()
}

func TestApplyIsOneAtomicBatch(t *testing.T) {
	first := mustSpec(t, 8443, []string{"10.0.0.1"}, false)
	second := mustSpec(t, 8443, []string{"10.0.0.1"}, true, "10.1.0.0/16")
	rs1, err := hostisolate.BuildRuleset(first)
	if err != nil {
		t.Fatal(err)
	}
	rs2, err := hostisolate.BuildRuleset(second)
	if err != nil {
		t.Fatal(err)
	}
	expect := func(rs *hostisolate.Ruleset, replace bool) []string {
		var want []string
		want = append(want, "begin")
		if replace {
			want = append(want, "deltable")
		}
		want = append(want, "newtable(excl)", "newchain", "newchain", "newchain")
		for range rs.Rules {
			want = append(want, "newrule")
		}
		return append(want, "end")
	}
	tests := []struct {
		name    string
		before  *hostisolate.Ruleset
		apply   *hostisolate.Ruleset
		replace bool
		wantErr error
	}{
		{name: "fresh", apply: rs1},
		{name: "replacing another isolation", before: rs1, apply: rs2, replace: true},
		{name: "exclusive create refuses an isolation that appeared meanwhile", before: rs1, apply: rs2, wantErr: syscall.EEXIST},
		{name: "replacing an isolation that vanished meanwhile", apply: rs2, replace: true, wantErr: syscall.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{k: memnft.New()}
			conn, err := nftables.New(nftables.WithTestDial(rec.dial))
			if err != nil {
				t.Fatal(err)
			}
			var beforeRules map[string][]string
			if tt.before != nil {
				if err := tt.before.Apply(conn, false); err != nil {
					t.Fatal(err)
				}
				_, beforeRules = liveTable(t, conn)
			}
			rec.calls = nil

			err = tt.apply.Apply(conn, tt.replace)
			if len(rec.calls) != 1 {
				t.Fatalf("Apply made %d netlink requests, want one batch", len(rec.calls))
			}
			var got []string
			for _, m := range rec.calls[0] {
				got = append(got, msgName(m))
			}
			if want := expect(tt.apply, tt.replace); !slices.Equal(got, want) {
				t.Errorf("batch:\n got %v\nwant %v", got, want)
			}
			_, after := liveTable(t, conn)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Apply error = %v, want %v", err, tt.wantErr)
				}
				if !mapsEqual(after, beforeRules) {
					t.Errorf("a refused batch changed the table:\nbefore %v\nafter  %v", beforeRules, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(after["input"]) + len(after["output"]) + len(after["forward"]); n != len(tt.apply.Rules) {
				t.Errorf("the table holds %d rules, want %d", n, len(tt.apply.Rules))
			}
		})
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
