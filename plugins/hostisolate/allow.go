package hostisolate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol is the transport protocol an allow entry is limited to.
type Protocol string

// The protocols an allow entry can name. ProtocolAny with a port means
// both TCP and UDP.
const (
	ProtocolAny Protocol = ""
	ProtocolTCP Protocol = "tcp"
	ProtocolUDP Protocol = "udp"
)

// Allow is one network an isolated host may still talk to, in both
// directions: outbound to the network (and port), inbound from it (and from
// that port).
type Allow struct {
	// Prefix is the network, with no host bits set; a single address is a
	// /32 or /128.
	Prefix netip.Prefix
	// Port limits the entry to one remote port; 0 means every port and
	// protocol.
	Port uint16
	// Protocol limits a port to TCP or UDP; ProtocolAny means both.
	Protocol Protocol
}

// String returns the entry's canonical form, which ParseAllow reads back to
// the same value: "10.0.0.0/8", "10.0.0.5/32:443/tcp",
// "[2001:db8::/32]:53".
func (a Allow) String() string {
	if a.Port == 0 {
		return a.Prefix.String()
	}
	host := a.Prefix.String()
	if a.Prefix.Addr().Is6() {
		host = "[" + host + "]"
	}
	s := host + ":" + strconv.Itoa(int(a.Port))
	if a.Protocol != ProtocolAny {
		s += "/" + string(a.Protocol)
	}
	return s
}

// ParseAllow reads one allow entry: CIDR[:PORT[/tcp|/udp]], where the CIDR
// may be a bare address, and an IPv6 address or network followed by a port
// is written in brackets ("[2001:db8::/32]:443"). Parsing is strict, because
// a misread entry either cuts a channel the responder needs or leaves one
// open that should be closed.
func ParseAllow(s string) (Allow, error) {
	fail := func(format string, args ...any) (Allow, error) {
		return Allow{}, fmt.Errorf("allow entry %q: %s", s, fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty; write a CIDR or address, optionally with :PORT and /tcp or /udp")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return fail("contains spaces or characters that cannot be part of an address")
	}

	host, portSpec, hasPort := "", "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fail("missing ]")
		}
		host, portSpec = s[1:end], s[end+1:]
		if portSpec == "" {
			return fail("brackets are only for an IPv6 address followed by :PORT; write %s to allow every port", host)
		}
		if !strings.HasPrefix(portSpec, ":") {
			return fail("want :PORT after ], got %q", portSpec)
		}
		portSpec, hasPort = portSpec[1:], true
		if !strings.Contains(host, ":") {
			return fail("brackets are only for IPv6; write %s:%s", host, portSpec)
		}
	} else {
		switch strings.Count(s, ":") {
		case 0:
			host = s
		case 1:
			host, portSpec, _ = strings.Cut(s, ":")
			hasPort = true
		default:
			// An IPv6 address with a port must be bracketed, so two or more
			// colons are the address alone.
			host = s
		}
	}

	prefix, err := parseNetwork(host)
	if err != nil {
		return fail("%v", err)
	}
	// Security-critical: an entry covering every address would make the
	// isolation a no-op while the run reports the host as contained.
	if prefix.Bits() == 0 {
		return fail("%s allows every address, which would undo the isolation", prefix)
	}
	a := Allow{Prefix: prefix}
	if !hasPort {
		return a, nil
	}
	if a.Port, a.Protocol, err = parsePort(portSpec); err != nil {
		return fail("%v", err)
	}
	return a, nil
}

// parseNetwork reads an address or a CIDR without host bits.
func parseNetwork(host string) (netip.Prefix, error) {
	if host == "" {
		return netip.Prefix{}, fmt.Errorf("no address before the port")
	}
	if strings.Contains(host, "%") {
		return netip.Prefix{}, fmt.Errorf("IPv6 zones are not supported")
	}
	if strings.Count(host, "/") > 1 {
		return netip.Prefix{}, fmt.Errorf("a protocol goes after a port, as in 10.0.0.0/8:443/tcp")
	}
	var p netip.Prefix
	if strings.Contains(host, "/") {
		var err error
		if p, err = netip.ParsePrefix(host); err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR: %s", cutParseError(err))
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s has host bits set; did you mean %s?", host, p.Masked())
		}
	} else {
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR: %s", cutParseError(err))
		}
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	if p.Addr().IsUnspecified() && p.IsSingleIP() {
		return netip.Prefix{}, fmt.Errorf("%s is the unspecified address, which no peer has", p.Addr())
	}
	if p.Addr().Is4In6() {
		// Packets from an IPv4 peer are IPv4 on the wire; a mapped form would
		// match nothing.
		return netip.Prefix{}, fmt.Errorf("IPv4-mapped IPv6 address; write the IPv4 form %s", p.Addr().Unmap())
	}
	return p, nil
}

// parsePort reads PORT[/tcp|/udp].
func parsePort(spec string) (uint16, Protocol, error) {
	num, proto, hasProto := strings.Cut(spec, "/")
	if num == "" {
		return 0, "", fmt.Errorf("no port after the colon")
	}
	if strings.Contains(num, "-") {
		return 0, "", fmt.Errorf("port ranges are not supported; list each port")
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return 0, "", fmt.Errorf("port %q is not a number", num)
		}
	}
	if len(num) > 1 && num[0] == '0' {
		return 0, "", fmt.Errorf("port %q has a leading zero", num)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return 0, "", fmt.Errorf("port %s is out of range 1-65535", num)
	}
	p := ProtocolAny
	if hasProto {
		switch Protocol(proto) {
		case ProtocolTCP, ProtocolUDP:
			p = Protocol(proto)
		default:
			return 0, "", fmt.Errorf("unknown protocol %q: use tcp or udp (lower case)", proto)
		}
	}
	return uint16(n), p, nil
}

// cutParseError drops the net/netip prefix that repeats the input.
func cutParseError(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
