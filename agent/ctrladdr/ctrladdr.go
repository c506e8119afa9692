// Package ctrladdr is how an agent chooses among the controllers of a
// cluster: the address list it is given (--controller a:7443,b:7443, or a
// DNS name with several A/AAAA records), rounds in a random order that
// spread agents over the controllers and move off the one that just
// failed, and the exponential backoff with full jitter between rounds.
package ctrladdr

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Endpoint is one configured controller address: a host name or IP and a
// port, as the operator wrote it.
type Endpoint struct {
	// Host is the DNS name or IP literal.
	Host string
	// Port is the TCP port, in decimal.
	Port string
}

// String returns HOST:PORT.
func (e Endpoint) String() string { return net.JoinHostPort(e.Host, e.Port) }

// List is the configured controller addresses, in the order given.
type List []Endpoint

// Parse reads a comma-separated list of HOST:PORT. Spaces around an entry
// are ignored and a repeated entry counts once; an empty entry, a missing
// host or a port outside 1–65535 is refused with the entry named.
func Parse(s string) (List, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no controller address: want HOST:PORT, or several separated by commas")
	}
	var out List
	seen := map[Endpoint]bool{}
	for i, raw := range strings.Split(s, ",") {
		entry := strings.TrimSpace(raw)
		if entry == "" {
			return nil, fmt.Errorf("controller address %d of %q is empty: want HOST:PORT[,HOST:PORT…]", i+1, s)
		}
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			return nil, fmt.Errorf("controller address %q: want HOST:PORT (an IPv6 address in brackets): %w", entry, err)
		}
		if host == "" {
			return nil, fmt.Errorf("controller address %q has no host", entry)
		}
		if strings.Contains(host, "%") {
			return nil, fmt.Errorf("controller address %q: a zoned IPv6 address is not supported", entry)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("controller address %q: port %q is not a number from 1 to 65535", entry, port)
		}
		e := Endpoint{Host: host, Port: strconv.FormatUint(n, 10)}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// String returns the list as Parse reads it.
func (l List) String() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.String()
	}
	return strings.Join(parts, ",")
}

// Target is one address to dial: a resolved IP and the port, with the
// configured endpoint it came from.
type Target struct {
	// Addr is IP:PORT.
	Addr string
	// Endpoint is the configured address Addr was resolved from.
	Endpoint Endpoint
}

// Resolver looks a host name up; *net.Resolver satisfies it.
type Resolver interface {
	// LookupHost returns the host's IP addresses (A and AAAA records).
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// PickerConfig configures a Picker.
type PickerConfig struct {
	// List is the configured addresses; required.
	List List
	// Resolver resolves host names; defaults to net.DefaultResolver.
	Resolver Resolver
	// IntN returns a uniform random integer in [0, n); defaults to
	// math/rand/v2's IntN. Tests inject a seeded source.
	IntN func(n int) int
}

// CheckAndSetDefaults checks the configuration and sets defaults.
func (c *PickerConfig) CheckAndSetDefaults() error {
	if len(c.List) == 0 {
		return errors.New("ctrladdr: missing List (the controller addresses)")
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.IntN == nil {
		c.IntN = rand.IntN
	}
	return nil
}

// Picker orders the controller addresses to dial. Each call resolves the
// list again, so a DNS name's records are followed as they change. A
// Picker is safe for concurrent use.
type Picker struct {
	cfg PickerConfig

	mu sync.Mutex
}

// NewPicker returns a Picker over cfg.List.
func NewPicker(cfg PickerConfig) (*Picker, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Picker{cfg: cfg}, nil
}

// List returns the configured addresses.
func (p *Picker) List() List { return p.cfg.List }

// Resolve returns every address the list resolves to, in list order and
// without repeats. Entries that do not resolve are left out; it fails only
// when none resolves, naming each failure.
func (p *Picker) Resolve(ctx context.Context) ([]Target, error) {
	var out []Target
	var errs []error
	seen := map[string]bool{}
	add := func(ip string, e Endpoint) {
		addr := net.JoinHostPort(ip, e.Port)
		if !seen[addr] {
			seen[addr] = true
			out = append(out, Target{Addr: addr, Endpoint: e})
		}
	}
	for _, e := range p.cfg.List {
		if ip := net.ParseIP(e.Host); ip != nil {
			add(ip.String(), e)
			continue
		}
		ips, err := p.cfg.Resolver.LookupHost(ctx, e.Host)
		if err == nil && len(ips) == 0 {
			err = errors.New("no addresses")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolving controller %s: %w", e, err))
			continue
		}
		for _, ip := range ips {
			if parsed := net.ParseIP(ip); parsed != nil {
				add(parsed.String(), e)
			}
		}
	}
	if len(out) == 0 {
		if len(errs) == 0 {
			errs = append(errs, fmt.Errorf("controller %s resolves to no IP address", p.cfg.List))
		}
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Round returns every resolved address once, in a random order, with
// failed (the address whose connection just ended or failed) last when
// there is another: the next connection goes elsewhere first, and a
// controller that is down is tried again only after every other.
func (p *Picker) Round(ctx context.Context, failed string) ([]Target, error) {
	targets, err := p.Order(ctx)
	if err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(targets, func(t Target) bool { return t.Addr == failed }); i >= 0 && len(targets) > 1 {
		t := targets[i]
		targets = append(targets[:i], targets[i+1:]...)
		targets = append(targets, t)
	}
	return targets, nil
}

// Order returns every resolved address in a random order, for a one-off
// call (enrollment) that tries them in turn.
func (p *Picker) Order(ctx context.Context) ([]Target, error) {
	targets, err := p.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Fisher–Yates with the injected source.
	for i := len(targets) - 1; i > 0; i-- {
		j := p.cfg.IntN(i + 1)
		targets[i], targets[j] = targets[j], targets[i]
	}
	return targets, nil
}
