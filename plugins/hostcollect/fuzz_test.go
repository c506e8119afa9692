package hostcollect_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
)

func seedFile(f *testing.F, name string) {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

// FuzzUtmp feeds arbitrary bytes to the utmp reader: it must never panic,
// and every record it returns must come from a whole 384-byte slot.
func FuzzUtmp(f *testing.F) {
	f.Add(make([]byte, hostcollect.UtmpSize))
	f.Add(bytes.Repeat([]byte{0xff}, hostcollect.UtmpSize*2+7))
	rec := make([]byte, hostcollect.UtmpSize)
	rec[0] = 7
	copy(rec[44:], "root")
	copy(rec[348:], []byte{10, 0, 0, 1})
	f.Add(rec)
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		_ = hostcollect.ReadUtmp(bytes.NewReader(b), func(r hostcollect.UtmpRecord) error {
			n++
			if r.Index >= len(b)/hostcollect.UtmpSize {
				t.Fatalf("record %d from %d bytes", r.Index, len(b))
			}
			return nil
		})
		if len(b) >= hostcollect.LastlogSize {
			_, _, _ = hostcollect.ParseLastlogRecord(b[:hostcollect.LastlogSize])
		}
	})
}

// FuzzProcNetLine feeds arbitrary lines to the /proc/net parsers.
func FuzzProcNetLine(f *testing.F) {
	for _, name := range []string{"proc_net_tcp", "proc_net_tcp6", "proc_net_udp", "proc_net_unix"} {
		b, _ := os.ReadFile("testdata/" + name)
		for _, line := range strings.Split(string(b), "\n") {
			f.Add(line)
		}
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
			if s, err := hostcollect.ParseProcNetLine(proto, line); err == nil && (s.LocalPort < 0 || s.LocalPort > 65535) {
				t.Fatalf("port %d", s.LocalPort)
			}
		}
		_, _ = hostcollect.ParseUnixLine(line)
		_, _ = hostcollect.ParseMapsLine(1, line)
		_, _ = hostcollect.ParseProcStat([]byte(line))
		_, _ = hostcollect.ParseBodyfileLine(line)
	})
}

// FuzzCrontab feeds arbitrary content to the crontab, unit and
// authorized_keys parsers.
func FuzzCrontab(f *testing.F) {
	for _, name := range []string{"crontab", "user_crontab", "evil.service", "authorized_keys"} {
		seedFile(f, name)
	}
	f.Add([]byte("@\n* * * * *\n\"\"\"\n\\\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range hostcollect.ParseCrontab(bytes.NewReader(b), true, "") {
			if e.Kind == "job" && !strings.Contains(string(b), e.Command) {
				t.Fatalf("command %q is not in the input", e.Command)
			}
		}
		_ = hostcollect.ParseCrontab(bytes.NewReader(b), false, "u")
		_ = hostcollect.ParseUnit("x.service", bytes.NewReader(b))
		_ = hostcollect.ParseAuthorizedKeys(bytes.NewReader(b))
		_ = hostcollect.ParseSudoers("s", bytes.NewReader(b))
	})
}

// FuzzPasswd feeds arbitrary content to the account parsers.
func FuzzPasswd(f *testing.F) {
	for _, name := range []string{"passwd", "group", "shadow"} {
		seedFile(f, name)
	}
	f.Add([]byte("::::::\n+\n-\n:x:0:0:::\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, _ := hostcollect.ParsePasswd(bytes.NewReader(b))
		for _, e := range entries {
			if e.Line < 1 {
				t.Fatalf("entry %+v without a line number", e)
			}
		}
		_, _ = hostcollect.ParseGroup(bytes.NewReader(b))
		_, _ = hostcollect.ParseShadow(bytes.NewReader(b))
		_ = hostcollect.ParseModules(b)
		_ = hostcollect.ParseMountinfo(b)
	})
}
