// Package bandwidth parses and prints transfer rates as operators write
// them on the command line (--bandwidth 10MiB/s, 50MB, 100Mbit).
package bandwidth

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Unlimited is the rate that means "no cap".
const Unlimited int64 = 0

// units maps a unit, lower-cased and without a trailing "/s" or "ps", to
// its size in bits. A unit without "bit" is bytes whatever its case ("50mb"
// is 50 megabytes, as in rsync and curl); bits are written out ("100Mbit")
// or as "bps" ("1Gbps").
var units = map[string]float64{
	"": 8, "b": 8, "byte": 8, "bytes": 8,
	"k": 8e3, "kb": 8e3, "kib": 8 * 1024,
	"m": 8e6, "mb": 8e6, "mib": 8 * 1024 * 1024,
	"g": 8e9, "gb": 8e9, "gib": 8 * 1024 * 1024 * 1024,
	"t": 8e12, "tb": 8e12, "tib": 8 * 1024 * 1024 * 1024 * 1024,
	"bit": 1, "bits": 1,
	"kbit": 1e3, "kbits": 1e3, "kibit": 1024,
	"mbit": 1e6, "mbits": 1e6, "mibit": 1024 * 1024,
	"gbit": 1e9, "gbits": 1e9, "gibit": 1024 * 1024 * 1024,
	"tbit": 1e12, "tbits": 1e12,
}

// Parse reads a rate in bytes per second. It accepts a number followed by
// an optional unit and an optional "/s" (or "ps"):
//
//	10MiB/s  50MB  512k  100Mbit  1Gbps  2.5mb/s  1048576
//
// Decimal prefixes (k, M, G, T) are powers of 1000 and binary ones (KiB,
// MiB, …) powers of 1024; units ending in "bit" or "bps" are bits, and
// "Bps" is bytes. "0",
// "" and "unlimited" mean no cap. The result is rounded down to whole bytes
// and must be at least 1 byte per second.
func Parse(s string) (int64, error) {
	in := strings.TrimSpace(s)
	switch strings.ToLower(in) {
	case "", "0", "unlimited", "none":
		return Unlimited, nil
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("rate %q does not start with a number: write e.g. 10MiB/s, 50MB or 100Mbit", s)
	}
	num, err := strconv.ParseFloat(in[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %q is not a number", s, in[:i])
	}
	raw := strings.TrimSpace(in[i:])
	unit := strings.ToLower(raw)
	switch {
	case strings.HasSuffix(unit, "/s"):
		unit = strings.TrimSuffix(unit, "/s")
	case strings.HasSuffix(raw, "Bps"):
		// MBps, KiBps: bytes.
		unit = strings.TrimSuffix(unit, "ps")
	case strings.HasSuffix(unit, "bps"):
		// Mbps, Gbps: bits.
		unit = strings.TrimSuffix(unit, "ps") + "it"
	}
	factor, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("rate %q: unknown unit %q: use B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit or Gbit, optionally with /s", s, strings.TrimSpace(in[i:]))
	}
	bytes := num * factor / 8
	if math.IsNaN(bytes) || math.IsInf(bytes, 0) || bytes >= math.MaxInt64/2 {
		return 0, fmt.Errorf("rate %q is too large", s)
	}
	if bytes < 1 {
		if num == 0 {
			return Unlimited, nil
		}
		return 0, fmt.Errorf("rate %q is below 1 byte per second", s)
	}
	return int64(bytes), nil
}

// Format prints a rate in bytes per second with a binary unit, e.g.
// "10 MiB/s", or "unlimited" for 0.
func Format(bps int64) string {
	if bps <= 0 {
		return "unlimited"
	}
	const unit = 1024
	if bps < unit {
		return fmt.Sprintf("%d B/s", bps)
	}
	div, exp := int64(unit), 0
	for n := bps / unit; n >= unit && exp < 3; n /= unit {
		div *= unit
		exp++
	}
	v := float64(bps) / float64(div)
	s := strconv.FormatFloat(v, 'f', 1, 64)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGT"[exp]) + "iB/s"
}
