package hostisolate_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// render writes a rule's expressions the way nft(8) lists them, so a test
// can state the expected ruleset readably and independently of how the
// package builds it. It fails on anything it does not know, rather than
// guess.
func render(r *nftables.Rule) (string, error) {
	var out []string
	var l4 byte
	var loaded string     // what the last load put in register 1
	var loadedLen uint32  // its size
	var mask []byte       // a bitwise mask applied to it
	var addrFamily = "ip" // for payload names
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.Register != 1 || e.SourceRegister {
				return "", fmt.Errorf("meta with register %d", e.Register)
			}
			switch e.Key {
			case expr.MetaKeyNFPROTO:
				loaded = "meta nfproto"
			case expr.MetaKeyL4PROTO:
				loaded = "meta l4proto"
			case expr.MetaKeyIIF:
				loaded = "iif"
			case expr.MetaKeyOIF:
				loaded = "oif"
			case expr.MetaKeyLEN:
				loaded = "meta length"
			default:
				return "", fmt.Errorf("meta key %d", e.Key)
			}
			mask = nil
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad || e.DestRegister != 1 {
				return "", fmt.Errorf("payload %+v", e)
			}
			name, err := payloadName(e, addrFamily, l4)
			if err != nil {
				return "", err
			}
			loaded, loadedLen, mask = name, e.Len, nil
		case *expr.Bitwise:
			if e.SourceRegister != 1 || e.DestRegister != 1 || len(e.Xor) != len(e.Mask) || strings.Trim(string(e.Xor), "\x00") != "" {
				return "", fmt.Errorf("bitwise %+v", e)
			}
			mask = e.Mask
		case *expr.Cmp:
			if e.Register != 1 {
				return "", fmt.Errorf("cmp with register %d", e.Register)
			}
			op := ""
			if e.Op == expr.CmpOpNeq {
				op = "!= "
			} else if e.Op != expr.CmpOpEq {
				return "", fmt.Errorf("cmp op %d", e.Op)
			}
			v, err := value(loaded, loadedLen, mask, e.Data)
			if err != nil {
				return "", err
			}
			switch loaded {
			case "meta nfproto":
				if v == "ipv6" {
					addrFamily = "ip6"
				}
			case "meta l4proto":
				l4 = e.Data[0]
			}
			if mask != nil && loaded == "tcp flags" {
				out = append(out, fmt.Sprintf("%s & %s == %s", loaded, v, v))
			} else {
				out = append(out, fmt.Sprintf("%s %s%s", loaded, op, v))
			}
		case *expr.Range:
			if e.Register != 1 || e.Op != expr.CmpOpEq || len(e.FromData) != 1 {
				return "", fmt.Errorf("range %+v", e)
			}
			out = append(out, fmt.Sprintf("%s %d-%d", loaded, e.FromData[0], e.ToData[0]))
		case *expr.Counter:
			out = append(out, "counter")
		case *expr.Reject:
			if e.Type != unix.NFT_REJECT_TCP_RST {
				return "", fmt.Errorf("reject type %d", e.Type)
			}
			out = append(out, "reject with tcp reset")
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				out = append(out, "accept")
			case expr.VerdictDrop:
				out = append(out, "drop")
			default:
				return "", fmt.Errorf("verdict %d", e.Kind)
			}
		default:
			return "", fmt.Errorf("expression %T", e)
		}
	}
	s := strings.Join(out, " ")
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
		s += fmt.Sprintf(" comment %q", c)
	}
	return s, nil
}

func payloadName(e *expr.Payload, family string, l4 byte) (string, error) {
	type key struct {
		base        expr.PayloadBase
		offset, len uint32
	}
	k := key{e.Base, e.Offset, e.Len}
	switch {
	case k == key{expr.PayloadBaseNetworkHeader, 12, 4} && family == "ip":
		return "ip saddr", nil
	case k == key{expr.PayloadBaseNetworkHeader, 16, 4} && family == "ip":
		return "ip daddr", nil
	case k == key{expr.PayloadBaseNetworkHeader, 8, 16} && family == "ip6":
		return "ip6 saddr", nil
	case k == key{expr.PayloadBaseNetworkHeader, 24, 16} && family == "ip6":
		return "ip6 daddr", nil
	case k == key{expr.PayloadBaseNetworkHeader, 7, 1} && family == "ip6":
		return "ip6 hoplimit", nil
	case k == key{expr.PayloadBaseTransportHeader, 0, 2} && (l4 == unix.IPPROTO_TCP || l4 == unix.IPPROTO_UDP):
		return proto(l4) + " sport", nil
	case k == key{expr.PayloadBaseTransportHeader, 2, 2} && (l4 == unix.IPPROTO_TCP || l4 == unix.IPPROTO_UDP):
		return proto(l4) + " dport", nil
	case k == key{expr.PayloadBaseTransportHeader, 13, 1} && l4 == unix.IPPROTO_TCP:
		return "tcp flags", nil
	case k == key{expr.PayloadBaseTransportHeader, 0, 2} && l4 == unix.IPPROTO_ICMP:
		return "icmp type . code", nil
	case k == key{expr.PayloadBaseTransportHeader, 0, 1} && l4 == unix.IPPROTO_ICMPV6:
		return "icmpv6 type", nil
	}
	return "", fmt.Errorf("payload %+v after l4proto %d in %s", e, l4, family)
}

func proto(p byte) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto(%d)", p)
}

func value(loaded string, size uint32, mask, data []byte) (string, error) {
	switch loaded {
	case "meta nfproto":
		switch data[0] {
		case unix.NFPROTO_IPV4:
			return "ipv4", nil
		case unix.NFPROTO_IPV6:
			return "ipv6", nil
		}
	case "meta l4proto":
		return proto(data[0]), nil
	case "iif", "oif":
		if len(data) == 4 && binary.NativeEndian.Uint32(data) == 1 {
			return `"lo"`, nil
		}
	case "meta length":
		if len(data) == 4 {
			return fmt.Sprint(binary.NativeEndian.Uint32(data)), nil
		}
	case "ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr":
		a, ok := netip.AddrFromSlice(data)
		if !ok || uint32(len(data)) != size {
			break
		}
		if mask == nil {
			return a.String(), nil
		}
		bits := 0
		for _, b := range mask {
			for ; b&0x80 != 0; b <<= 1 {
				bits++
			}
		}
		return netip.PrefixFrom(a, bits).String(), nil
	case "ip6 hoplimit", "icmpv6 type":
		return fmt.Sprint(data[0]), nil
	case "icmp type . code":
		return fmt.Sprintf("%d . %d", data[0], data[1]), nil
	case "tcp flags":
		if len(data) == 1 && data[0] == 0x04 && len(mask) == 1 && mask[0] == 0x04 {
			return "rst", nil
		}
	default:
		if strings.HasSuffix(loaded, "port") && len(data) == 2 {
			return fmt.Sprint(binary.BigEndian.Uint16(data)), nil
		}
	}
	return "", fmt.Errorf("%s compared with %x (mask %x)", loaded, data, mask)
}
