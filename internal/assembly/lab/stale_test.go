package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestSweepStale(t *testing.T) {
	// A process that has exited: its pid is free (or reused by something
	// that is not a lab).
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Skipf("no `true` to make a dead pid: %v", err)
	}
	dead := done.Process.Pid
	tmp := t.TempDir()
	tests := []struct {
		name      string
		dir       string
		owner     string // the owner file's content; "-" writes none
		wantSwept bool
	}{
		{name: "owner killed", dir: "firebreak-lab-1", owner: strconv.Itoa(dead), wantSwept: true},
		{name: "owner running (this test)", dir: "firebreak-lab-2", owner: strconv.Itoa(os.Getpid())},
		{name: "no owner file (an earlier version, or not a lab's)", dir: "firebreak-lab-3", owner: "-"},
		{name: "owner file not a pid", dir: "firebreak-lab-4", owner: "garbage"},
		{name: "owner pid 0", dir: "firebreak-lab-5", owner: "0"},
		{name: "another name", dir: "other-lab-6", owner: strconv.Itoa(dead)},
	}
	for _, tt := range tests {
		d := filepath.Join(tmp, tt.dir)
		if err := os.MkdirAll(filepath.Join(d, "bin"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "bin", "plugin"), []byte("#!/bin/sh\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		if tt.owner != "-" {
			if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(tt.owner+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A file with the lab's name is not a directory to sweep.
	if err := os.WriteFile(filepath.Join(tmp, "firebreak-lab-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	swept := sweepStale(tmp)
	for _, tt := range tests {
		d := filepath.Join(tmp, tt.dir)
		_, err := os.Stat(d)
		gone := os.IsNotExist(err)
		if gone != tt.wantSwept || slices.Contains(swept, d) != tt.wantSwept {
			t.Errorf("%s: removed %v (reported %v), want %v", tt.name, gone, slices.Contains(swept, d), tt.wantSwept)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "firebreak-lab-file")); err != nil {
		t.Errorf("a file named like a lab was touched: %v", err)
	}
	// claimDir makes a directory this process owns: the sweep leaves it.
	mine := filepath.Join(tmp, "firebreak-lab-mine")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := claimDir(mine); err != nil {
		t.Fatal(err)
	}
	if got := sweepStale(tmp); slices.Contains(got, mine) {
		t.Fatalf("the sweep removed the running lab's own directory")
	}
}
