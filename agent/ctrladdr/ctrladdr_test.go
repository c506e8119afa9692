package ctrladdr_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/agent/ctrladdr"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "one", in: "ctl.example:7443", want: "ctl.example:7443"},
		{name: "several", in: "10.0.0.1:7443,10.0.0.2:7443,ctl.example:8443", want: "10.0.0.1:7443,10.0.0.2:7443,ctl.example:8443"},
		{name: "spaces", in: " a:1 , b:2 ", want: "a:1,b:2"},
		{name: "repeat counts once", in: "a:1,b:2,a:1", want: "a:1,b:2"},
		{name: "ipv6", in: "[fd00::1]:7443,10.0.0.1:7443", want: "[fd00::1]:7443,10.0.0.1:7443"},
		{name: "port leading zero", in: "a:07443", want: "a:7443"},
		{name: "empty", in: "", wantErr: "no controller address"},
		{name: "blank", in: "  ", wantErr: "no controller address"},
		{name: "empty entry", in: "a:1,,b:2", wantErr: `address 2 of "a:1,,b:2" is empty`},
		{name: "trailing comma", in: "a:1,", wantErr: "is empty"},
		{name: "no port", in: "ctl.example", wantErr: `"ctl.example": want HOST:PORT`},
		{name: "no host", in: ":7443", wantErr: `":7443" has no host`},
		{name: "port zero", in: "a:0", wantErr: `port "0" is not a number`},
		{name: "port too big", in: "a:70000", wantErr: `port "70000"`},
		{name: "port name", in: "a:https", wantErr: `port "https"`},
		{name: "ipv6 without brackets", in: "fd00::1:7443", wantErr: "want HOST:PORT"},
		{name: "zoned ipv6", in: "[fe80::1%eth0]:7443", wantErr: "zoned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ctrladdr.Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %v, %v; want an error containing %q", tt.in, l, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := l.String(); got != tt.want {
				t.Fatalf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// fakeResolver answers from a map; a missing name fails.
type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	ips, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	return ips, nil
}

func TestPickerResolve(t *testing.T) {
	res := fakeResolver{
		"ctl.example":   {"10.0.0.1", "10.0.0.2", "fd00::3"},
		"empty.example": {},
	}
	tests := []struct {
		name    string
		list    string
		want    []string
		wantErr string
	}{
		{name: "ip literals", list: "10.0.0.1:7443,10.0.0.2:7443", want: []string{"10.0.0.1:7443", "10.0.0.2:7443"}},
		{name: "dns name with several records", list: "ctl.example:7443", want: []string{"10.0.0.1:7443", "10.0.0.2:7443", "[fd00::3]:7443"}},
		{name: "name and literal overlap once", list: "ctl.example:7443,10.0.0.1:7443", want: []string{"10.0.0.1:7443", "10.0.0.2:7443", "[fd00::3]:7443"}},
		{name: "same ip other port", list: "10.0.0.1:7443,10.0.0.1:8443", want: []string{"10.0.0.1:7443", "10.0.0.1:8443"}},
		{name: "unresolved entry left out", list: "gone.example:7443,10.0.0.9:7443", want: []string{"10.0.0.9:7443"}},
		{name: "nothing resolves", list: "gone.example:7443,empty.example:7443", wantErr: "resolving controller gone.example:7443: no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPicker(t, tt.list, res, rand.New(rand.NewPCG(1, 2)))
			got, err := p.Resolve(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve = %v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, g := range got {
				addrs = append(addrs, g.Addr)
			}
			if !slices.Equal(addrs, tt.want) {
				t.Fatalf("Resolve = %v, want %v", addrs, tt.want)
			}
		})
	}
}

func newPicker(t *testing.T, list string, res ctrladdr.Resolver, r *rand.Rand) *ctrladdr.Picker {
	t.Helper()
	l, err := ctrladdr.Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ctrladdr.NewPicker(ctrladdr.PickerConfig{List: l, Resolver: res, IntN: r.IntN})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPickerRoundPutsTheFailedAddressLast: a round holds every resolved
// address once, the one that just failed last whenever there is another,
// and the endpoint (the configured name) travels with the resolved IP.
func TestPickerRoundPutsTheFailedAddressLast(t *testing.T) {
	tests := []struct {
		name string
		list string
		want int
	}{
		{name: "three literals", list: "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", want: 3},
		{name: "two literals", list: "10.0.0.1:7443,10.0.0.2:7443", want: 2},
		{name: "dns name", list: "ctl.example:7443", want: 3},
		{name: "one address", list: "10.0.0.1:7443", want: 1},
	}
	res := fakeResolver{"ctl.example": {"10.0.0.1", "10.0.0.2", "10.0.0.3"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPicker(t, tt.list, res, rand.New(rand.NewPCG(7, 7)))
			failed := ""
			for range 200 {
				round, err := p.Round(context.Background(), failed)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, r := range round {
					if seen[r.Addr] {
						t.Fatalf("round %v holds %s twice", round, r.Addr)
					}
					seen[r.Addr] = true
					if tt.name == "dns name" && r.Endpoint.String() != "ctl.example:7443" {
						t.Fatalf("endpoint %s, want the configured ctl.example:7443", r.Endpoint)
					}
				}
				if len(round) != tt.want {
					t.Fatalf("round %v, want %d addresses", round, tt.want)
				}
				if failed != "" && round[len(round)-1].Addr != failed {
					t.Fatalf("round %v after %s failed: it must come last", round, failed)
				}
				failed = round[0].Addr
			}
		})
	}
}

// TestPickerSpreadsAgents: many agents, each with its own picker and
// random source (seeded, so the counts are fixed), spread evenly over three
// controllers at start; and when one controller dies, its agents spread
// over the two others and none comes back to it.
func TestPickerSpreadsAgents(t *testing.T) {
	const agents = 3000
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
	seed := rand.New(rand.NewPCG(2026, 13))
	pickers := make([]*ctrladdr.Picker, agents)
	first := map[string]int{}
	on := make([]string, agents)
	for i := range pickers {
		pickers[i] = newPicker(t, strings.Join(addrs, ","), nil, rand.New(rand.NewPCG(seed.Uint64(), seed.Uint64())))
		got, err := pickers[i].Round(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		first[got[0].Addr]++
		on[i] = got[0].Addr
	}
	// Each count is Binomial(3000, 1/3): mean 1000, sd 25.8. ±150 is
	// almost six sd; a pick that favoured one address would be far out.
	for _, a := range addrs {
		if n := first[a]; n < 850 || n > 1150 {
			t.Errorf("%d of %d agents picked %s first, want 1000±150 (all: %v)", n, agents, a, first)
		}
	}
	dead := addrs[0]
	moved := map[string]int{}
	for i, p := range pickers {
		if on[i] != dead {
			continue
		}
		got, err := p.Round(context.Background(), dead)
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Addr == dead {
			t.Fatalf("agent %d went back to the controller that failed", i)
		}
		moved[got[0].Addr]++
	}
	n := first[dead]
	// Binomial(n, 1/2): sd ≈ 16 for n ≈ 1000; each survivor gets half ±15%.
	for _, a := range addrs[1:] {
		if got := moved[a]; float64(got) < 0.35*float64(n) || float64(got) > 0.65*float64(n) {
			t.Errorf("%d of the %d agents of the dead controller moved to %s, want about half (all: %v)", got, n, a, moved)
		}
	}
}

func TestPickerOrder(t *testing.T) {
	p := newPicker(t, "10.0.0.1:1,10.0.0.2:1,10.0.0.3:1,10.0.0.4:1", nil, rand.New(rand.NewPCG(3, 4)))
	firsts := map[string]int{}
	for range 400 {
		got, err := p.Order(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var addrs []string
		for _, g := range got {
			addrs = append(addrs, g.Addr)
		}
		sorted := slices.Sorted(slices.Values(addrs))
		if !slices.Equal(sorted, []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1"}) {
			t.Fatalf("Order = %v: not every address once", addrs)
		}
		firsts[addrs[0]]++
	}
	// Each address leads about a quarter of the time (100 ± 50).
	for a, n := range firsts {
		if n < 50 || n > 150 {
			t.Errorf("%s came first %d times of 400: %v", a, n, firsts)
		}
	}
	if len(firsts) != 4 {
		t.Errorf("only %d addresses ever came first: %v", len(firsts), firsts)
	}
}

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name       string
		b          ctrladdr.Backoff
		ceilings   []time.Duration
		resetAt    int // after this many delays, Reset (0: never)
		afterReset time.Duration
	}{
		{name: "defaults", b: ctrladdr.Backoff{},
			ceilings: []time.Duration{500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}},
		{name: "custom", b: ctrladdr.Backoff{Base: 100 * ms, Cap: 350 * ms},
			ceilings: []time.Duration{100 * ms, 200 * ms, 350 * ms, 350 * ms}},
		{name: "reset", b: ctrladdr.Backoff{Base: 100 * ms, Cap: time.Second},
			ceilings: []time.Duration{100 * ms, 200 * ms, 400 * ms}, resetAt: 3, afterReset: 100 * ms},
		{name: "base above cap", b: ctrladdr.Backoff{Base: 2 * time.Second, Cap: time.Second},
			ceilings: []time.Duration{time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Three random sources: the highest value, the lowest, and a
			// seeded one. Every delay lies in [0, ceiling], and the extreme
			// sources reach both ends, so the jitter is full.
			sources := map[string]func(int64) int64{
				"max":    func(n int64) int64 { return n - 1 },
				"min":    func(int64) int64 { return 0 },
				"seeded": rand.New(rand.NewPCG(5, 6)).Int64N,
			}
			for sname, src := range sources {
				b := tt.b
				b.Int64N = src
				for i, want := range tt.ceilings {
					if got := b.Ceiling(); got != want {
						t.Fatalf("%s: ceiling %d = %s, want %s", sname, i, got, want)
					}
					d := b.Next()
					if d < 0 || d > want {
						t.Fatalf("%s: delay %d = %s, outside [0, %s]", sname, i, d, want)
					}
					switch sname {
					case "max":
						if d != want {
							t.Fatalf("max source: delay %d = %s, want the ceiling %s", i, d, want)
						}
					case "min":
						if d != 0 {
							t.Fatalf("min source: delay %d = %s, want 0", i, d)
						}
					}
				}
				if tt.resetAt > 0 {
					b.Reset()
					if got := b.Ceiling(); got != tt.afterReset {
						t.Fatalf("%s: ceiling after Reset = %s, want %s", sname, got, tt.afterReset)
					}
				}
			}
		})
	}
}

func TestNewPickerRequiresList(t *testing.T) {
	if _, err := ctrladdr.NewPicker(ctrladdr.PickerConfig{}); err == nil || !strings.Contains(err.Error(), "List") {
		t.Fatalf("NewPicker without a list: %v", err)
	}
}
