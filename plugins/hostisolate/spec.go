package hostisolate

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrControllerUnknown is the refusal when the agent could not say how it
// reaches the controller.
var ErrControllerUnknown = errors.New("refusing to isolate: the controller's address is unknown, so isolation would cut the responder's channel")

// Spec is what an isolation keeps reachable. It is built from the task's
// parameters and the agent's host context, recorded in the state directory,
// and rebuilt into the same ruleset by reconcile.
type Spec struct {
	// Controllers are the controller's addresses as the agent dialled them.
	Controllers []netip.Addr `json:"controllers"`
	// ControllerPort is the controller's TCP port.
	ControllerPort uint16 `json:"controller_port"`
	// Allow lists the other networks the host may still talk to.
	Allow []Allow `json:"allow"`
	// DHCP keeps DHCP (udp 67/68) and DHCPv6 (udp 546/547) working, so the
	// host keeps its address lease while isolated.
	DHCP bool `json:"dhcp"`
}

// CheckAndSetDefaults puts the spec in canonical form (IPv4-mapped
// controller addresses unmapped, lists sorted and without duplicates), so
// that the same isolation always builds the same ruleset and digest. It
// returns ErrControllerUnknown when the controller's address or port is
// missing.
func (s *Spec) CheckAndSetDefaults() error {
	// Security-critical for availability: isolating without the controller's
	// address would cut the only channel that can undo the isolation.
	if len(s.Controllers) == 0 || s.ControllerPort == 0 {
		return ErrControllerUnknown
	}
	ctl := make([]netip.Addr, 0, len(s.Controllers))
	for _, a := range s.Controllers {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() {
			return fmt.Errorf("%w (the agent reported %q)", ErrControllerUnknown, a)
		}
		if a.Zone() != "" {
			return fmt.Errorf("controller address %s has an IPv6 zone, which nftables rules cannot match", a)
		}
		ctl = append(ctl, a)
	}
	slices.SortFunc(ctl, netip.Addr.Compare)
	s.Controllers = slices.Compact(ctl)

	allow := slices.Clone(s.Allow)
	for i, a := range allow {
		if !a.Prefix.IsValid() || a.Prefix.Masked() != a.Prefix || a.Prefix.Bits() == 0 {
			return fmt.Errorf("allow entry %d (%s) is not a valid network", i, a)
		}
	}
	slices.SortFunc(allow, compareAllow)
	s.Allow = slices.Compact(allow)
	if s.Allow == nil {
		s.Allow = []Allow{}
	}
	return nil
}

// UsesIPv6 reports whether any controller address or allowed network is
// IPv6.
func (s *Spec) UsesIPv6() bool {
	return slices.ContainsFunc(s.Controllers, netip.Addr.Is6) ||
		slices.ContainsFunc(s.Allow, func(a Allow) bool { return a.Prefix.Addr().Is6() })
}

// UsesIPv4 reports whether any controller address or allowed network is
// IPv4.
func (s *Spec) UsesIPv4() bool {
	return slices.ContainsFunc(s.Controllers, netip.Addr.Is4) ||
		slices.ContainsFunc(s.Allow, func(a Allow) bool { return a.Prefix.Addr().Is4() })
}

// NeighbourDiscovery reports whether the ruleset accepts ICMPv6 neighbour
// discovery: when IPv6 peers are kept, and when DHCP is, because a DHCPv6
// server answers by unicast from its link-local address and must resolve
// ours first.
func (s *Spec) NeighbourDiscovery() bool { return s.UsesIPv6() || s.DHCP }

// AllowStrings returns the allow entries in canonical form.
func (s *Spec) AllowStrings() []string {
	out := make([]string, len(s.Allow))
	for i, a := range s.Allow {
		out[i] = a.String()
	}
	return out
}

// ControllerStrings returns the controller addresses as text.
func (s *Spec) ControllerStrings() []string {
	out := make([]string, len(s.Controllers))
	for i, a := range s.Controllers {
		out[i] = a.String()
	}
	return out
}

func compareAllow(a, b Allow) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Or(
		cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Protocol, b.Protocol),
	)
}

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (a Allow) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseAllow.
func (a *Allow) UnmarshalText(b []byte) error {
	v, err := ParseAllow(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}
