package failoverbench

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestQuantiles checks the herd's 99% and 100% times, and -1 when that
// share of the fleet never connected.
func TestQuantiles(t *testing.T) {
	ms100 := func(n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name     string
		sorted   []time.Duration
		fleet    int
		p99, all float64
	}{
		{name: "all of 100", sorted: ms100(100), fleet: 100, p99: 99, all: 100},
		{name: "99 of 100", sorted: ms100(99), fleet: 100, p99: 99, all: -1},
		{name: "98 of 100", sorted: ms100(98), fleet: 100, p99: -1, all: -1},
		{name: "one of one", sorted: ms100(1), fleet: 1, p99: 1, all: 1},
		{name: "none", fleet: 10, p99: -1, all: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p99, all := quantiles(tt.sorted, tt.fleet)
			if p99 != tt.p99 || all != tt.all {
				t.Errorf("quantiles: %v, %v; want %v, %v", p99, all, tt.p99, tt.all)
			}
		})
	}
}

// TestCountLogErrors checks the count of ERROR and WARN lines of a
// controller's JSON log from an offset on (the restarted controller's
// part of the file).
func TestCountLogErrors(t *testing.T) {
	first := `{"level":"ERROR","msg":"before the restart"}` + "\n"
	rest := strings.Join([]string{
		`{"level":"INFO","msg":"controller serving"}`,
		`{"level":"WARN","msg":"lost the lease"}`,
		`{"level":"INFO","msg":"agent connected","note":"level ERROR in a value"}`,
		`{"level":"ERROR","msg":"the store is unreachable"}`,
	}, "\n") + "\n"
	path := filepath.Join(t.TempDir(), "controller.log")
	if err := os.WriteFile(path, []byte(first+rest), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		from        int64
		errs, lines int
	}{
		{name: "whole file", from: 0, errs: 3, lines: 5},
		{name: "after the restart", from: int64(len(first)), errs: 2, lines: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs, lines, err := countLogErrors(path, tt.from)
			if err != nil {
				t.Fatal(err)
			}
			if errs != tt.errs || lines != tt.lines {
				t.Errorf("countLogErrors from %d: %d errors in %d lines, want %d in %d", tt.from, errs, lines, tt.errs, tt.lines)
			}
		})
	}
}

// TestEnrollResultJSON checks the keys `bench enroll --json` prints: a
// token herd's are those it printed before --join existed, and an aws-iid
// herd's add join and attested_aws_iid (zero included).
func TestEnrollResultJSON(t *testing.T) {
	tokenKeys := []string{"agents", "enrolled", "time_to_99_ms", "time_to_all_ms", "errors", "shed_attempts", "agent_restarts",
		"controller_rss_bytes", "controller_log_errors", "simulated_agents"}
	zero := 0
	tests := []struct {
		name string
		res  EnrollResult
		want []string
	}{
		{name: "token", res: EnrollResult{Agents: 3}, want: tokenKeys},
		{name: "aws-iid", res: EnrollResult{Agents: 3, Join: "aws-iid", AttestedAWSIID: &zero}, want: append(slices.Clone(tokenKeys), "join", "attested_aws_iid")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.res)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(m))
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Fatalf("keys %v, want %v", got, want)
			}
		})
	}
}

// TestHerdJoin checks --join: token by default, aws-iid taking its worker
// from next to the binary unless --bin-dir says, anything else refused.
func TestHerdJoin(t *testing.T) {
	tests := []struct {
		name, join, binDir   string
		wantJoin, wantBinDir string
		wantErr              string
	}{
		{name: "default", wantJoin: "token"},
		{name: "token", join: "token", wantJoin: "token"},
		{name: "aws-iid", join: "aws-iid", wantJoin: "aws-iid", wantBinDir: "/opt/firebreak/bin"},
		{name: "aws-iid with bin dir", join: "aws-iid", binDir: "/srv/bin", wantJoin: "aws-iid", wantBinDir: "/srv/bin"},
		{name: "aws-sts", join: "aws-sts", wantErr: `--join "aws-sts"`},
		{name: "unknown", join: "password", wantErr: `--join "password"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := HerdOptions{Agents: 1, Join: tt.join, BinDir: tt.binDir, Executable: "/opt/firebreak/bin/firebreak"}
			err := o.CheckAndSetDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Join != tt.wantJoin || o.BinDir != tt.wantBinDir {
				t.Fatalf("join %q bin dir %q, want %q %q", o.Join, o.BinDir, tt.wantJoin, tt.wantBinDir)
			}
		})
	}
}
