package bandwidth

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"", 0, ""},
		{"0", 0, ""},
		{"unlimited", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512b", 512, ""},
		{"10MiB/s", 10 << 20, ""},
		{"10 MiB/s", 10 << 20, ""},
		{"50MB", 50_000_000, ""},
		{"50mb/s", 50_000_000, ""},
		{"512k", 512_000, ""},
		{"64KiB", 64 << 10, ""},
		{"100Mbit", 12_500_000, ""},
		{"100mbit/s", 12_500_000, ""},
		{"1Gbps", 125_000_000, ""},
		{"20MBps", 20_000_000, ""},
		{"2.5MiB/s", 5 << 19, ""},
		{"1GiB", 1 << 30, ""},
		{"8bit", 1, ""},
		{"0MB", 0, ""},
		{"1bit", 0, "below 1 byte"},
		{"fast", 0, "does not start with a number"},
		{"10 furlongs", 0, "unknown unit"},
		{"1.2.3MB", 0, "is not a number"},
		{"99999999999TiB", 0, "too large"},
		{"-5MB", 0, "does not start with a number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "unlimited"},
		{-1, "unlimited"},
		{512, "512 B/s"},
		{10 << 20, "10 MiB/s"},
		{1536, "1.5 KiB/s"},
		{3 << 30, "3 GiB/s"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, never returns a negative rate,
// and that what Format prints parses back to within rounding.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10MiB/s", "50MB", "100Mbit", "1Gbps", "0", "2.5k", "1e3", ".5MB", "9999999999999999TiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d", s, n)
		}
		if n == 0 {
			return
		}
		back, err := Parse(strings.ReplaceAll(Format(n), " ", ""))
		if err != nil {
			t.Fatalf("Format(%d) = %q does not parse: %v", n, Format(n), err)
		}
		if d := back - n; d > n/10+1 || -d > n/10+1 {
			t.Fatalf("Parse(Format(%d)) = %d", n, back)
		}
	})
}
