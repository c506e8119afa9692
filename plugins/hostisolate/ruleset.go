package hostisolate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// TableName and TableFamily name the one table the isolation owns. Nothing
// else in the ruleset is ever touched.
const (
	TableName   = "firebreak"
	TableFamily = nftables.TableFamilyINet
	// TableDisplay is the table as nft(8) names it.
	TableDisplay = "inet firebreak"
)

// The base chains' names.
const (
	ChainInput   = "input"
	ChainOutput  = "output"
	ChainForward = "forward"
)

// ChainPriority is the priority of the isolation's base chains: -350.
//
// A packet passes every base chain on its hook in priority order, and a drop
// anywhere is final while an accept only ends that one chain. So the
// isolation cannot be overridden by another table's accept whatever its
// priority; running early decides what else sees the packets it stops:
//   - after defragmentation (-400), so ports are matched on whole datagrams;
//   - before raw (-300), so no other table's notrack or raw rules spend work
//     on traffic that is going to be stopped;
//   - before conntrack (-200), so outbound packets that are stopped never
//     create connection-tracking entries;
//   - before mangle (-150), NAT (-100) and the usual filter tables (0), so
//     their counters and logs are not filled by a contained host's traffic.
const ChainPriority nftables.ChainPriority = -350

// loopbackIfindex is the loopback device's interface index, the same in
// every network namespace (LOOPBACK_IFINDEX in the kernel).
const loopbackIfindex = 1

// Ruleset is the table an isolation installs, built from a Spec without
// touching the kernel. Apply sends it in one atomic batch.
type Ruleset struct {
	// Table is table inet firebreak.
	Table *nftables.Table
	// Chains are the input, output and forward base chains, policy drop.
	Chains []*nftables.Chain
	// Rules are every chain's rules in order; each names its chain.
	Rules []*nftables.Rule
	// Digest is "sha256:" and the hex SHA-256 of the chains and rules as
	// they are sent to the kernel. The same Spec always gives the same
	// digest; it is recorded and carried in the last input rule's comment
	// so that the live table can be recognised.
	Digest string
}

// BuildRuleset turns a spec into the isolation's ruleset. The spec must
// have passed CheckAndSetDefaults.
//
// Each chain accepts loopback, the controller's TCP port, the allowed
// networks, DHCP and ICMPv6 neighbour discovery when the spec asks for them
// and inbound path-MTU errors; it answers every other TCP packet with a
// reset, so established sessions end at once on both sides instead of
// hanging, and lets the policy drop the rest. Connection tracking is not
// used: an established session is not accepted for being established.
func BuildRuleset(spec Spec) (*Ruleset, error) {
	if len(spec.Controllers) == 0 || spec.ControllerPort == 0 {
		return nil, ErrControllerUnknown
	}
	t := &nftables.Table{Name: TableName, Family: TableFamily}
	policy := nftables.ChainPolicyDrop
	prio := ChainPriority
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		p, pol := prio, policy
		return &nftables.Chain{Name: name, Table: t, Hooknum: hook, Priority: &p, Type: nftables.ChainTypeFilter, Policy: &pol}
	}
	in, out, fwd := chain(ChainInput, nftables.ChainHookInput), chain(ChainOutput, nftables.ChainHookOutput), chain(ChainForward, nftables.ChainHookForward)
	rs := &Ruleset{Table: t, Chains: []*nftables.Chain{in, out, fwd}}
	add := func(c *nftables.Chain, comment string, exprs ...expr.Any) {
		rs.Rules = append(rs.Rules, &nftables.Rule{Table: t, Chain: c, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, "firebreak: "+comment)})
	}
	concat := func(parts ...[]expr.Any) []expr.Any {
		var all []expr.Any
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}

	add(in, "loopback", concat(metaEq(expr.MetaKeyIIF, binaryutil.NativeEndian.PutUint32(loopbackIfindex)), accept())...)
	add(out, "loopback", concat(metaEq(expr.MetaKeyOIF, binaryutil.NativeEndian.PutUint32(loopbackIfindex)), accept())...)

	for _, c := range spec.Controllers {
		host := netip.PrefixFrom(c, c.BitLen())
		comment := fmt.Sprintf("controller %s tcp/%d", c, spec.ControllerPort)
		add(in, comment, concat(addrMatch(host, source), portMatch(unix.IPPROTO_TCP, spec.ControllerPort, source), accept())...)
		add(out, comment, concat(addrMatch(host, destination), portMatch(unix.IPPROTO_TCP, spec.ControllerPort, destination), accept())...)
	}

	for _, a := range spec.Allow {
		if a.Port == 0 {
			add(in, "allow "+a.String(), concat(addrMatch(a.Prefix, source), accept())...)
			add(out, "allow "+a.String(), concat(addrMatch(a.Prefix, destination), accept())...)
			continue
		}
		for _, proto := range a.protocols() {
			comment := fmt.Sprintf("allow %s (%s)", a, protoName(proto))
			add(in, comment, concat(addrMatch(a.Prefix, source), portMatch(proto, a.Port, source), accept())...)
			add(out, comment, concat(addrMatch(a.Prefix, destination), portMatch(proto, a.Port, destination), accept())...)
		}
	}

	if spec.DHCP {
		// A client renews from port 68 to a server's 67 (546 to 547 for
		// DHCPv6); the first DISCOVER of a lease uses a packet socket and
		// never reaches netfilter.
		add(in, "dhcp", concat(nfproto(unix.NFPROTO_IPV4), udpPorts(67, 68), accept())...)
		add(out, "dhcp", concat(nfproto(unix.NFPROTO_IPV4), udpPorts(68, 67), accept())...)
		add(in, "dhcpv6", concat(nfproto(unix.NFPROTO_IPV6), udpPorts(547, 546), accept())...)
		add(out, "dhcpv6", concat(nfproto(unix.NFPROTO_IPV6), udpPorts(546, 547), accept())...)
	}
	if spec.NeighbourDiscovery() {
		add(in, "ipv6 neighbour discovery", concat(neighbourDiscovery(), accept())...)
		add(out, "ipv6 neighbour discovery", concat(neighbourDiscovery(), accept())...)
	}

	// Routers on the way to the controller report a smaller path MTU with
	// these ICMP errors. Without them a large TLS record to a controller
	// behind a transit gateway (MTU 8500 or 1500, the instance's 9001)
	// would be black-holed and the responder's channel would stall.
	if spec.UsesIPv4() {
		add(in, "path mtu discovery", concat(nfproto(unix.NFPROTO_IPV4), l4proto(unix.IPPROTO_ICMP),
			payloadEq(expr.PayloadBaseTransportHeader, 0, []byte{3, 4}), accept())...) // destination unreachable, fragmentation needed
	}
	if spec.UsesIPv6() {
		add(in, "ipv6 path mtu discovery", concat(nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6),
			payloadEq(expr.PayloadBaseTransportHeader, 0, []byte{2}), accept())...) // packet too big
	}

	// The resets that the input chain's reject sends to a remote peer leave
	// through the output hook and would be stopped by the output chain's own
	// reject. Only bare resets pass: the kernel's carry no options or data
	// (20-byte TCP header after a 20-byte IPv4 or 40-byte IPv6 header), so
	// this is no channel for anything else.
	add(out, "resets that end cut sessions", concat(bareReset(unix.NFPROTO_IPV4, 40), accept())...)
	add(out, "ipv6 resets that end cut sessions", concat(bareReset(unix.NFPROTO_IPV6, 60), accept())...)

	// Reject with a reset rather than drop: the local process (output) or
	// the remote peer (input) sees its session end at once.
	for _, c := range []*nftables.Chain{in, out, fwd} {
		add(c, "cut tcp with a reset", concat(l4proto(unix.IPPROTO_TCP), []expr.Any{&expr.Counter{}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})...)
	}
	// Counts what the policy drops; it carries no verdict.
	add(out, "dropped by policy", &expr.Counter{})
	add(fwd, "dropped by policy", &expr.Counter{})

	digest, err := rs.digest()
	if err != nil {
		return nil, err
	}
	rs.Digest = digest
	add(in, markerComment(digest), &expr.Counter{})
	rs.order()
	return rs, nil
}

// markerComment is the input chain's last rule's comment, which carries the
// digest so that a live table can be compared with a built one.
func markerComment(digest string) string { return "dropped by policy; isolation " + digest }

// order sorts the rules by chain (input, output, forward), keeping each
// chain's order, so that a chain's rules are sent together.
func (r *Ruleset) order() {
	sorted := make([]*nftables.Rule, 0, len(r.Rules))
	for _, c := range r.Chains {
		for _, rule := range r.Rules {
			if rule.Chain == c {
				sorted = append(sorted, rule)
			}
		}
	}
	r.Rules = sorted
}

// ChainRules returns the rules of the named chain, in order.
func (r *Ruleset) ChainRules(chain string) []*nftables.Rule {
	var out []*nftables.Rule
	for _, rule := range r.Rules {
		if rule.Chain.Name == chain {
			out = append(out, rule)
		}
	}
	return out
}

// Apply sends the ruleset to nf_tables in one batch, which the kernel
// applies atomically: either the whole isolation is in place or nothing
// changed. With replace, the batch first deletes the existing table inet
// firebreak, so a different isolation is swapped for this one with no
// moment in between where the host is open. Without it the table must not
// exist yet (exclusive create), so an isolation that appeared since it was
// looked for is not merged into.
func (r *Ruleset) Apply(conn *nftables.Conn, replace bool) error {
	if replace {
		conn.DelTable(r.Table)
	}
	conn.CreateTable(r.Table)
	for _, c := range r.Chains {
		conn.AddChain(c)
	}
	for _, rule := range r.Rules {
		conn.AddRule(rule)
	}
	return conn.Flush()
}

// digest hashes the chains and rules (without the marker rule) in the form
// they are sent.
func (r *Ruleset) digest() (string, error) {
	h := sha256.New()
	field := func(b []byte) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(b)))
		h.Write(b)
	}
	for _, c := range r.Chains {
		field([]byte(c.Name))
		field([]byte(c.Type))
		field(binary.BigEndian.AppendUint32(nil, uint32(*c.Hooknum)))
		field(binary.BigEndian.AppendUint32(nil, uint32(*c.Priority)))
		field(binary.BigEndian.AppendUint32(nil, uint32(*c.Policy)))
		for _, rule := range r.Rules {
			if rule.Chain != c {
				continue
			}
			field(rule.UserData)
			for _, e := range rule.Exprs {
				b, err := expr.Marshal(byte(r.Table.Family), e)
				if err != nil {
					return "", fmt.Errorf("encoding a rule of chain %s: %w", c.Name, err)
				}
				field(b)
			}
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (a Allow) protocols() []byte {
	switch a.Protocol {
	case ProtocolTCP:
		return []byte{unix.IPPROTO_TCP}
	case ProtocolUDP:
		return []byte{unix.IPPROTO_UDP}
	}
	return []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP}
}

func protoName(p byte) string {
	if p == unix.IPPROTO_UDP {
		return "udp"
	}
	return "tcp"
}

// direction says which end of a packet a match looks at.
type direction bool

const (
	source      direction = true
	destination direction = false
)

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

func metaEq(key expr.MetaKey, value []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: value},
	}
}

func nfproto(family byte) []expr.Any   { return metaEq(expr.MetaKeyNFPROTO, []byte{family}) }
func l4proto(protocol byte) []expr.Any { return metaEq(expr.MetaKeyL4PROTO, []byte{protocol}) }

func payloadEq(base expr.PayloadBase, offset uint32, value []byte) []expr.Any { //nolint:unparam // the payload base is explicit in every nftables match this file builds
	return []expr.Any{
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: base, Offset: offset, Len: uint32(len(value))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: value},
	}
}

// addrMatch matches the packet's source or destination address against a
// network. In an inet table the family is checked first: the address sits
// at a different offset in IPv4 and IPv6 headers.
func addrMatch(p netip.Prefix, dir direction) []expr.Any {
	var family byte
	var offset uint32
	switch {
	case p.Addr().Is4() && dir == source:
		family, offset = unix.NFPROTO_IPV4, 12
	case p.Addr().Is4():
		family, offset = unix.NFPROTO_IPV4, 16
	case dir == source:
		family, offset = unix.NFPROTO_IPV6, 8
	default:
		family, offset = unix.NFPROTO_IPV6, 24
	}
	addr := p.Addr().AsSlice()
	out := append(nfproto(family),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))})
	if p.Bits() < p.Addr().BitLen() {
		mask := netmask(p.Bits(), len(addr))
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)), Mask: mask, Xor: make([]byte, len(addr))})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr})
}

func netmask(bits, size int) []byte {
	m := make([]byte, size)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// portMatch matches TCP or UDP and the source or destination port.
func portMatch(protocol byte, port uint16, dir direction) []expr.Any {
	offset := uint32(2)
	if dir == source {
		offset = 0
	}
	return append(l4proto(protocol), payloadEq(expr.PayloadBaseTransportHeader, offset, binaryutil.BigEndian.PutUint16(port))...)
}

// udpPorts matches UDP from one port to another.
func udpPorts(from, to uint16) []expr.Any {
	return append(append(l4proto(unix.IPPROTO_UDP),
		payloadEq(expr.PayloadBaseTransportHeader, 0, binaryutil.BigEndian.PutUint16(from))...),
		payloadEq(expr.PayloadBaseTransportHeader, 2, binaryutil.BigEndian.PutUint16(to))...)
}

// neighbourDiscovery matches router solicitation and advertisement and
// neighbour solicitation and advertisement (ICMPv6 133-136) with a hop
// limit of 255, which RFC 4861 requires and which proves the sender is on
// the link.
func neighbourDiscovery() []expr.Any {
	return append(append(nfproto(unix.NFPROTO_IPV6), l4proto(unix.IPPROTO_ICMPV6)...),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{136}},
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{255}},
	)
}

// bareReset matches a TCP packet of the given family and total length with
// the RST flag set.
func bareReset(family byte, length uint32) []expr.Any {
	return append(append(append(nfproto(family),
		metaEq(expr.MetaKeyLEN, binaryutil.NativeEndian.PutUint32(length))...),
		l4proto(unix.IPPROTO_TCP)...),
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x04}},
	)
}
