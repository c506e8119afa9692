package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// s3Evidence serves an S3 bucket in this process, reached through the AWS
// SDK's environment, and returns the --evidence URL of a prefix in it.
func s3Evidence(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	for k, v := range map[string]string{"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
		"AWS_SECRET_ACCESS_KEY": "secret", "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	client := s3.New(s3.Options{Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("ir-evidence")}); err != nil {
		t.Fatal(err)
	}
	return "s3://ir-evidence/org-1/"
}

// TestControllerOnPostgres migrates a PostgreSQL store with `controller
// migrate`, runs a controller on it with S3 evidence, collects evidence
// from an agent, and verifies the audit log and the evidence.
func TestControllerOnPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	b := e2e.Build(t)
	type migrated struct {
		Applied []string `json:"applied"`
		Total   int      `json:"total"`
	}
	var first, again migrated
	for _, m := range []*migrated{&first, &again} {
		r := firebreak(t, b, "controller", "migrate", "--store", dsn, "--json")
		if r.Exit != 0 || json.Unmarshal([]byte(r.Stdout), m) != nil {
			t.Fatalf("controller migrate: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
	}
	if first.Total == 0 || len(first.Applied) != first.Total || len(again.Applied) != 0 || again.Total != first.Total || again.Applied == nil {
		t.Fatalf("migrate applied %d of %d, then %v of %d", len(first.Applied), first.Total, again.Applied, again.Total)
	}

	c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--store", dsn, "--evidence", s3Evidence(t)}})
	agent := c.StartAgent(t, e2e.AgentOptions{Name: "pg", Token: c.Token(t, "host", 1)})
	c.WaitConnected(t, agent.AgentID(t))
	var run e2e.RunJSON
	c.MustJSON(t, &run, 0, "collect", "--select", "all", "--artifact", "system", "--wait")
	evID, out := onlyResult(t, run)
	requireWhole(t, out)
	if it := evidenceItem(t, c, evID); it.Backend != "s3" {
		t.Fatalf("evidence %+v", it)
	}
	c.MustJSON(t, nil, 0, "evidence", "verify", "--all")
	c.MustJSON(t, nil, 0, "audit", "verify")
	// Nothing of the state is in the data directory's SQLite.
	if _, err := os.Stat(filepath.Join(c.DataDir, "firebreak.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a controller on PostgreSQL made a SQLite database: %v", err)
	}
}

// TestControllerStoreRefused starts controllers on stores they must
// refuse: each fails with a clear error that does not show the password,
// and never listens.
func TestControllerStoreRefused(t *testing.T) {
	dsn := pgtest.New(t)
	b := e2e.Build(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	evidence := s3Evidence(t)
	tests := []struct {
		name  string
		args  []string
		want  []string
		store string
	}{
		{name: "postgres down", args: []string{"--store-connect-timeout", "2s", "--evidence", evidence},
			store: "postgres://fb:hunter2@" + closed + "/firebreak?sslmode=disable",
			want:  []string{"could not be reached within --store-connect-timeout 2s", "postgres://fb:xxxxx@" + closed + "/firebreak", "trying again"}},
		{name: "missing database", args: []string{"--evidence", evidence},
			store: "postgres://postgres:hunter2@" + u.Host + "/no_such_db?sslmode=disable",
			want:  []string{"connecting to the store postgres://postgres:xxxxx@" + u.Host + "/no_such_db", "does not exist"}},
		{name: "not postgres", args: []string{"--evidence", evidence}, store: "mysql://fb:hunter2@db/firebreak",
			want: []string{`the store "mysql://fb:xxxxx@db/firebreak" is a mysql:// URL`}},
		{name: "local evidence", store: "postgres://fb:hunter2@" + u.Host + "/firebreak",
			want: []string{"the evidence must be in S3 (--evidence s3://BUCKET/PREFIX)", "postgres://fb:xxxxx@"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "controller")
			r := firebreak(t, b, append([]string{"controller", "--data-dir", dir, "--listen", "127.0.0.1:0", "--store", tt.store}, tt.args...)...)
			all := r.Stdout + r.Stderr
			if r.Exit == 0 || strings.Contains(all, "hunter2") {
				t.Fatalf("exit %d, output:\n%s", r.Exit, all)
			}
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("the output does not say %q:\n%s", w, all)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "controller.addr")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused controller served: %v", err)
			}
		})
	}
}

// TestControllerMigrateSQLite migrates a data directory's SQLite database
// with `controller migrate`, then finds it current, and refuses a command
// that names no store, or two.
func TestControllerMigrateSQLite(t *testing.T) {
	b := e2e.Build(t)
	dir := t.TempDir()
	var m struct {
		Applied []string `json:"applied"`
		Total   int      `json:"total"`
	}
	r := firebreak(t, b, "controller", "migrate", "--data-dir", dir, "--json")
	if r.Exit != 0 || json.Unmarshal([]byte(r.Stdout), &m) != nil || m.Total == 0 || len(m.Applied) != m.Total {
		t.Fatalf("migrate: exit %d %+v\n%s%s", r.Exit, m, r.Stdout, r.Stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, "firebreak.db")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the database: %v %v", st, err)
	}
	if r := firebreak(t, b, "controller", "migrate", "--data-dir", dir); r.Exit != 0 || !strings.Contains(r.Stdout, "the schema is current") {
		t.Fatalf("migrating again: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	for _, args := range [][]string{{}, {"--data-dir", dir, "--store", "postgres://fb@db/firebreak"}} {
		r := firebreak(t, b, append([]string{"controller", "migrate"}, args...)...)
		if r.Exit != 2 || !strings.Contains(r.Stderr, "give the store to migrate") {
			t.Fatalf("migrate %v: exit %d\n%s%s", args, r.Exit, r.Stdout, r.Stderr)
		}
	}
}
