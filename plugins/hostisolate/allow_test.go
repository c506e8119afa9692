package hostisolate_test

import (
	"net/netip"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
)

func TestParseAllow(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		in        string
		want      hostisolate.Allow
		canonical string
		wantErr   string
	}{
		{in: "10.0.0.0/8", want: hostisolate.Allow{Prefix: p("10.0.0.0/8")}, canonical: "10.0.0.0/8"},
		{in: "10.1.2.3", want: hostisolate.Allow{Prefix: p("10.1.2.3/32")}, canonical: "10.1.2.3/32"},
		{in: "10.1.2.3:22", want: hostisolate.Allow{Prefix: p("10.1.2.3/32"), Port: 22}, canonical: "10.1.2.3/32:22"},
		{in: "10.0.0.0/16:443/tcp", want: hostisolate.Allow{Prefix: p("10.0.0.0/16"), Port: 443, Protocol: hostisolate.ProtocolTCP}, canonical: "10.0.0.0/16:443/tcp"},
		{in: "192.0.2.53:53/udp", want: hostisolate.Allow{Prefix: p("192.0.2.53/32"), Port: 53, Protocol: hostisolate.ProtocolUDP}, canonical: "192.0.2.53/32:53/udp"},
		{in: "10.1.2.3:65535", want: hostisolate.Allow{Prefix: p("10.1.2.3/32"), Port: 65535}, canonical: "10.1.2.3/32:65535"},
		{in: "2001:db8::/32", want: hostisolate.Allow{Prefix: p("2001:db8::/32")}, canonical: "2001:db8::/32"},
		{in: "2001:db8::1", want: hostisolate.Allow{Prefix: p("2001:db8::1/128")}, canonical: "2001:db8::1/128"},
		{in: "[2001:db8::/32]:443", want: hostisolate.Allow{Prefix: p("2001:db8::/32"), Port: 443}, canonical: "[2001:db8::/32]:443"},
		{in: "[2001:db8::1]:22/tcp", want: hostisolate.Allow{Prefix: p("2001:db8::1/128"), Port: 22, Protocol: hostisolate.ProtocolTCP}, canonical: "[2001:db8::1/128]:22/tcp"},
		{in: "[2001:DB8::1]:53/udp", want: hostisolate.Allow{Prefix: p("2001:db8::1/128"), Port: 53, Protocol: hostisolate.ProtocolUDP}, canonical: "[2001:db8::1/128]:53/udp"},

		{in: "", wantErr: `allow entry "": empty; write a CIDR or address, optionally with :PORT and /tcp or /udp`},
		{in: " 10.0.0.0/8", wantErr: `allow entry " 10.0.0.0/8": contains spaces or characters that cannot be part of an address`},
		{in: "10.0.0.0/8\n", wantErr: `allow entry "10.0.0.0/8\n": contains spaces or characters that cannot be part of an address`},
		{in: "example.com", wantErr: `allow entry "example.com": not an IP address or CIDR: unexpected character (at "example.com")`},
		{in: "10.0.0.256", wantErr: `allow entry "10.0.0.256": not an IP address or CIDR: IPv4 field has value >255`},
		{in: "10.0.0.0/33", wantErr: `allow entry "10.0.0.0/33": not a CIDR: prefix length out of range`},
		{in: "10.1.2.3/8", wantErr: `allow entry "10.1.2.3/8": 10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?`},
		{in: "0.0.0.0/0", wantErr: `allow entry "0.0.0.0/0": 0.0.0.0/0 allows every address, which would undo the isolation`},
		{in: "::/0", wantErr: `allow entry "::/0": ::/0 allows every address, which would undo the isolation`},
		{in: "[::/0]:443", wantErr: `allow entry "[::/0]:443": ::/0 allows every address, which would undo the isolation`},
		{in: "0.0.0.0", wantErr: `allow entry "0.0.0.0": 0.0.0.0 is the unspecified address, which no peer has`},
		{in: "10.0.0.1:", wantErr: `allow entry "10.0.0.1:": no port after the colon`},
		{in: ":443", wantErr: `allow entry ":443": no address before the port`},
		{in: "10.0.0.1:0", wantErr: `allow entry "10.0.0.1:0": port 0 is out of range 1-65535`},
		{in: "10.0.0.1:65536", wantErr: `allow entry "10.0.0.1:65536": port 65536 is out of range 1-65535`},
		{in: "10.0.0.1:0443", wantErr: `allow entry "10.0.0.1:0443": port "0443" has a leading zero`},
		{in: "10.0.0.1:+443", wantErr: `allow entry "10.0.0.1:+443": port "+443" is not a number`},
		{in: "10.0.0.1:https", wantErr: `allow entry "10.0.0.1:https": port "https" is not a number`},
		{in: "10.0.0.1:1000-2000", wantErr: `allow entry "10.0.0.1:1000-2000": port ranges are not supported; list each port`},
		{in: "10.0.0.1:443/sctp", wantErr: `allow entry "10.0.0.1:443/sctp": unknown protocol "sctp": use tcp or udp (lower case)`},
		{in: "10.0.0.1:443/TCP", wantErr: `allow entry "10.0.0.1:443/TCP": unknown protocol "TCP": use tcp or udp (lower case)`},
		{in: "10.0.0.1:443/", wantErr: `allow entry "10.0.0.1:443/": unknown protocol "": use tcp or udp (lower case)`},
		{in: "10.0.0.0/8/tcp", wantErr: `allow entry "10.0.0.0/8/tcp": a protocol goes after a port, as in 10.0.0.0/8:443/tcp`},
		{in: "[2001:db8::1]", wantErr: `allow entry "[2001:db8::1]": brackets are only for an IPv6 address followed by :PORT; write 2001:db8::1 to allow every port`},
		{in: "[2001:db8::1]443", wantErr: `allow entry "[2001:db8::1]443": want :PORT after ], got "443"`},
		{in: "[2001:db8::1:443", wantErr: `allow entry "[2001:db8::1:443": missing ]`},
		{in: "[10.0.0.1]:22", wantErr: `allow entry "[10.0.0.1]:22": brackets are only for IPv6; write 10.0.0.1:22`},
		{in: "fe80::1%eth0", wantErr: `allow entry "fe80::1%eth0": IPv6 zones are not supported`},
		{in: "::ffff:10.0.0.1", wantErr: `allow entry "::ffff:10.0.0.1": IPv4-mapped IPv6 address; write the IPv4 form 10.0.0.1`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := hostisolate.ParseAllow(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseAllow(%q) error = %v\nwant %s", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAllow(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseAllow(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.canonical {
				t.Fatalf("canonical form %q, want %q", got.String(), tt.canonical)
			}
		})
	}
}

// FuzzParseAllow checks that the parser never panics, and that whatever it
// accepts is a real network with no host bits, never everything, and reads
// back from its canonical form to the same entry.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3:22/tcp", "[2001:db8::/32]:443", "2001:db8::1", "[::1]:53/udp",
		"0.0.0.0/0", "10.0.0.1:0443", "[10.0.0.1]:22", "fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.4:65536", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := hostisolate.ParseAllow(s)
		if err != nil {
			return
		}
		if !a.Prefix.IsValid() || a.Prefix.Masked() != a.Prefix || a.Prefix.Bits() == 0 {
			t.Fatalf("ParseAllow(%q) accepted the network %s", s, a.Prefix)
		}
		if a.Prefix.Addr().Is4In6() || a.Prefix.Addr().Zone() != "" {
			t.Fatalf("ParseAllow(%q) accepted the address %s", s, a.Prefix.Addr())
		}
		if a.Port == 0 && a.Protocol != hostisolate.ProtocolAny {
			t.Fatalf("ParseAllow(%q) gave a protocol without a port", s)
		}
		back, err := hostisolate.ParseAllow(a.String())
		if err != nil {
			t.Fatalf("the canonical form %q of %q does not parse: %v", a.String(), s, err)
		}
		if back != a {
			t.Fatalf("%q → %+v → %q → %+v", s, a, a.String(), back)
		}
	})
}
