package sysinfo_test

import (
	"context"
	"os"
	"testing"

	"github.com/firebreak-ir/firebreak/plugins/sdk/sdktest"
	"github.com/firebreak-ir/firebreak/plugins/sysinfo"
)

func TestSysinfoReadsTheLiveHost(t *testing.T) {
	c := sdktest.Start(t, sysinfo.New())
	o := sdktest.Execute(context.Background(), t, c, nil, map[string]any{})
	var f sysinfo.Facts
	o.Output(t, &f)
	host, _ := os.Hostname()
	if f.Hostname != host {
		t.Errorf("hostname %q, want %q", f.Hostname, host)
	}
	if f.Kernel == "" || f.CPUs < 1 || f.MemTotalBytes == 0 || f.UptimeSeconds <= 0 || len(f.BootID) != 36 {
		t.Errorf("facts incomplete: %+v", f)
	}
	foundLoopback := false
	for _, a := range f.Addresses {
		if a.CIDR == "127.0.0.1/8" {
			foundLoopback = true
		}
	}
	if !foundLoopback {
		t.Errorf("addresses %v lack 127.0.0.1/8", f.Addresses)
	}
}

func TestParseOSRelease(t *testing.T) {
	got := sysinfo.ParseOSRelease([]byte("# c\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\nbad line\n"))
	want := map[string]string{"NAME": "Debian GNU/Linux", "ID": "debian", "VERSION_ID": "12"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %v", got)
	}
}

func TestParseMeminfo(t *testing.T) {
	got := sysinfo.ParseMeminfo([]byte("MemTotal:       16 kB\nHugePages_Total:       0\nJunk\n"))
	if got["MemTotal"] != 16*1024 || got["HugePages_Total"] != 0 {
		t.Fatalf("got %v", got)
	}
}
