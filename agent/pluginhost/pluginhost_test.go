package pluginhost_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/agent/pluginhost"
)

func TestCheckOwnership(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "firebreak-plugin-ok")
	if err := os.WriteFile(regular, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	writable := filepath.Join(dir, "firebreak-plugin-writable")
	if err := os.WriteFile(writable, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "firebreak-plugin-link")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		dir     bool
		wantErr string
	}{
		{name: "regular file", path: regular},
		{name: "directory", path: dir, dir: true},
		{name: "writable by others", path: writable, wantErr: "writable by group or others"},
		{name: "symlink", path: link, wantErr: "is a symlink"},
		{name: "directory where a file is expected", path: dir, wantErr: "not a regular file"},
		{name: "missing", path: filepath.Join(dir, "nope"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pluginhost.CheckOwnership(tt.path, tt.dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestManifestRefusals(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "firebreak-plugin-noop")
	if err := os.WriteFile(bin, []byte("not really a plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := pluginhost.ScanDir(dir)
	if err != nil || len(m.Plugins) != 1 {
		t.Fatalf("scan: %+v %v", m, err)
	}
	// Entries that point outside the directory or at nothing, a bad hash,
	// and a binary changed after the manifest was written.
	m.Plugins = append(m.Plugins,
		pluginhost.ManifestEntry{File: "../firebreak-plugin-escape", SHA256: m.Plugins[0].SHA256},
		pluginhost.ManifestEntry{File: "firebreak-plugin-absent", SHA256: m.Plugins[0].SHA256},
		pluginhost.ManifestEntry{File: "not-a-plugin", SHA256: m.Plugins[0].SHA256},
	)
	if err := pluginhost.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("changed after the manifest"), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := pluginhost.New(pluginhost.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := h.Plugins(); len(got) != 0 {
		t.Fatalf("loaded %v", got)
	}
	skipped := strings.Join(h.Skipped(), "\n")
	for _, want := range []string{"SHA-256 mismatch", "../firebreak-plugin-escape", "firebreak-plugin-absent", "not-a-plugin"} {
		if !strings.Contains(skipped, want) {
			t.Errorf("refusals %q lack %q", skipped, want)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, pluginhost.ManifestFile), []byte(`{"version": 2, "plugins": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pluginhost.New(pluginhost.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("manifest version: %v", err)
	}
}
