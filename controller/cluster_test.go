package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/tasksign"
)

func mustInit(t *testing.T, dir string) *PKIDirSummary {
	t.Helper()
	sum, err := InitPKIDir(PKIInit{Dir: dir, Names: ClusterNames{Advertise: "lb.example.com:7443", ServerNames: []string{"lb.example.com", "10.0.0.9"}}})
	if err != nil {
		t.Fatalf("InitPKIDir: %v", err)
	}
	return sum
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestInitPKIDir checks that controller init creates the whole identity
// privately, once, and refuses a directory holding any part of one or a
// bad name without leaving a file behind.
func TestInitPKIDir(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		cfg      PKIInit
		wantErr  string
		wantIs   error
		wantKeep []string // files that must be left as they were
	}{
		{name: "new directory", cfg: PKIInit{Names: ClusterNames{Advertise: "lb.example.com:7443", ServerNames: []string{"lb.example.com"}}}},
		{name: "existing open empty directory is made private", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "second init", setup: func(t *testing.T, dir string) { mustInit(t, dir) }, wantIs: ErrPKIDirInitialised,
			wantErr: "holds ca.key, ca.pem, task-signing.key, admin.creds, cluster.json", wantKeep: pkiDirFiles},
		{name: "directory holding a task-signing key only", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := tasksign.CreateKey(filepath.Join(dir, SigningKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, wantIs: ErrPKIDirInitialised, wantErr: "holds task-signing.key. controller init creates a cluster's identity once", wantKeep: []string{SigningKeyFile}},
		{name: "advertise without a port", cfg: PKIInit{Names: ClusterNames{Advertise: "lb.example.com"}}, wantIs: ErrInitUsage, wantErr: "is not HOST:PORT"},
		{name: "advertise port out of range", cfg: PKIInit{Names: ClusterNames{Advertise: "lb.example.com:70000"}}, wantIs: ErrInitUsage, wantErr: "from 1 to 65535"},
		{name: "server name with a space", cfg: PKIInit{Names: ClusterNames{ServerNames: []string{"lb example"}}}, wantIs: ErrInitUsage, wantErr: `--server-name "lb example": not a DNS name or IP address`},
		{name: "negative lifetime", cfg: PKIInit{AdminCertTTL: -1}, wantIs: ErrInitUsage, wantErr: "is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			before := map[string][]byte{}
			for _, f := range tt.wantKeep {
				before[f], _ = os.ReadFile(filepath.Join(dir, f))
			}
			cfg := tt.cfg
			cfg.Dir = dir
			sum, err := InitPKIDir(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, tt.wantIs) {
					t.Fatalf("err = %v, want %q matching %v", err, tt.wantErr, tt.wantIs)
				}
				entries, _ := os.ReadDir(dir)
				if len(entries) != len(tt.wantKeep) {
					t.Fatalf("the directory holds %d entries after the refusal, want the %d it held", len(entries), len(tt.wantKeep))
				}
				for f, b := range before {
					if got, _ := os.ReadFile(filepath.Join(dir, f)); string(got) != string(b) {
						t.Errorf("%s changed", f)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("InitPKIDir: %v", err)
			}
			if perm(t, dir) != 0o700 {
				t.Errorf("the pki dir has mode %v, want 0700", perm(t, dir))
			}
			if len(sum.Files) != len(pkiDirFiles) {
				t.Fatalf("files %v, want %v", sum.Files, pkiDirFiles)
			}
			for _, f := range pkiDirFiles {
				p := filepath.Join(dir, f)
				if !slices.Contains(sum.Files, p) {
					t.Errorf("the summary does not list %s", p)
				}
				if perm(t, p) != 0o600 {
					t.Errorf("%s has mode %v, want 0600", f, perm(t, p))
				}
			}
			cp, err := loadPKIDir(dir)
			if err != nil {
				t.Fatalf("loading the new pki dir: %v", err)
			}
			if cp.ca.Fingerprint() != sum.CASHA256 || cp.signer.Fingerprint() != sum.SigningKeySHA256 {
				t.Fatalf("the summary's fingerprints %s, %s are not the files' %s, %s", sum.CASHA256, sum.SigningKeySHA256, cp.ca.Fingerprint(), cp.signer.Fingerprint())
			}
			if cp.names.Advertise != cfg.Names.Advertise || !slices.Equal(cp.names.ServerNames, cfg.Names.ServerNames) {
				t.Fatalf("cluster.json holds %+v, want %+v", cp.names, cfg.Names)
			}
			creds, err := pki.LoadCreds(filepath.Join(dir, AdminCredsFile))
			if err != nil {
				t.Fatal(err)
			}
			if creds.Name != "admin" || creds.Controller != cfg.Names.Advertise || creds.CAPEM != string(pki.EncodeCertPEM(cp.ca.Cert.Raw)) {
				t.Fatalf("admin.creds names %q at %q, want admin at %q with the pki dir's CA", creds.Name, creds.Controller, cfg.Names.Advertise)
			}
		})
	}
}

// TestLoadPKIDir checks that a --pki-dir is read as it is, never created
// or completed, and that a missing or exposed file is refused with what to
// do.
func TestLoadPKIDir(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, dir string) // after a full init
		noInit  bool
		wantErr string
	}{
		{name: "initialised directory"},
		{name: "without cluster.json", change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, ClusterFile)) }},
		{name: "missing directory", noInit: true, wantErr: "holds no directory: run `firebreak controller init --pki-dir DIR`"},
		{name: "missing CA key", change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, pki.CAKeyFile)) },
			wantErr: "holds no ca.key: run `firebreak controller init"},
		{name: "missing CA certificate", change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, pki.CACertFile)) },
			wantErr: "holds no ca.pem: run `firebreak controller init"},
		{name: "missing task-signing key", change: func(t *testing.T, dir string) { mustRemove(t, filepath.Join(dir, SigningKeyFile)) },
			wantErr: "holds no task-signing.key: run `firebreak controller init"},
		{name: "CA key readable by others", change: func(t *testing.T, dir string) { mustChmod(t, filepath.Join(dir, pki.CAKeyFile), 0o644) },
			wantErr: "open to other users: run chmod 600"},
		{name: "task-signing key readable by the group", change: func(t *testing.T, dir string) { mustChmod(t, filepath.Join(dir, SigningKeyFile), 0o640) },
			wantErr: "open to other users: run chmod 600"},
		{name: "directory open to others", change: func(t *testing.T, dir string) { mustChmod(t, dir, 0o755) },
			wantErr: "open to other users: run chmod 700"},
		{name: "cluster.json with an unknown field", change: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, ClusterFile), `{"advertise":"lb:7443","servernames":["x"]}`)
		}, wantErr: "cluster.json is not valid"},
		{name: "cluster.json with a bad name", change: func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, ClusterFile), `{"server_names":["a b"]}`)
		}, wantErr: "not a DNS name or IP address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if !tt.noInit {
				mustInit(t, dir)
			}
			if tt.change != nil {
				tt.change(t, dir)
			}
			list := func() []string {
				entries, _ := os.ReadDir(dir)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				return names
			}
			was := list()
			_, err := loadPKIDir(dir)
			if now := list(); !slices.Equal(was, now) {
				t.Fatalf("loading changed the directory from %v to %v", was, now)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("loadPKIDir: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// memMeta is an in-memory meta table; overwrite, when set, is what a
// racing controller recorded first, just before this one's write.
type memMeta struct {
	m         map[string]string
	overwrite map[string]string
	sets      int
}

func (s *memMeta) GetMeta(_ context.Context, key string) (string, error) {
	v, ok := s.m[key]
	if !ok {
		return "", store.ErrNotFound
	}
	return v, nil
}

func (s *memMeta) SetMetaIfAbsent(_ context.Context, key, value string) (string, error) {
	s.sets++
	if v, ok := s.overwrite[key]; ok {
		if _, set := s.m[key]; !set {
			s.m[key] = v
		}
	}
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	s.m[key] = value
	return value, nil
}

// TestCheckClusterIdentity checks the first start's record, a matching
// start, and the refusal, naming both fingerprints, of a differing CA or
// task-signing key.
func TestCheckClusterIdentity(t *testing.T) {
	const ca, key, otherCA, otherKey = "ca-1", "key-1", "ca-2", "key-2"
	tests := []struct {
		name       string
		recorded   map[string]string
		overwrite  map[string]string
		wantErr    []string
		wantSets   int
		wantRecord map[string]string
	}{
		{name: "first start records", recorded: map[string]string{}, wantSets: 2},
		{name: "same identity", recorded: map[string]string{MetaCASHA256: ca, MetaSigningKeySHA256: key}},
		{name: "a record cut short is completed", recorded: map[string]string{MetaCASHA256: ca}, wantSets: 1},
		{name: "another CA", recorded: map[string]string{MetaCASHA256: otherCA, MetaSigningKeySHA256: key},
			wantErr: []string{"its CA has sha256 ca-1, the cluster's recorded in the store has sha256 ca-2", "belongs to another cluster"}},
		{name: "another task-signing key", recorded: map[string]string{MetaCASHA256: ca, MetaSigningKeySHA256: otherKey},
			wantErr: []string{"its task-signing key has sha256 key-1, the cluster's recorded in the store has sha256 key-2"}},
		{name: "another CA, nothing recorded for the key", recorded: map[string]string{MetaCASHA256: otherCA},
			wantErr: []string{"sha256 ca-2"}, wantRecord: map[string]string{MetaCASHA256: otherCA}},
		{name: "a racing first start with another identity wins", recorded: map[string]string{},
			overwrite: map[string]string{MetaCASHA256: otherCA, MetaSigningKeySHA256: otherKey}, wantSets: 2,
			wantErr: []string{"its CA has sha256 ca-1, the cluster's recorded in the store has sha256 ca-2", "sha256 key-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &memMeta{m: map[string]string{}, overwrite: tt.overwrite}
			for k, v := range tt.recorded {
				m.m[k] = v
			}
			err := checkClusterIdentity(context.Background(), m, ca, key)
			if m.sets != tt.wantSets {
				t.Errorf("SetMetaIfAbsent called %d times, want %d", m.sets, tt.wantSets)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("checkClusterIdentity: %v", err)
				}
				if m.m[MetaCASHA256] != ca || m.m[MetaSigningKeySHA256] != key {
					t.Fatalf("recorded %v, want the controller's identity", m.m)
				}
				return
			}
			var mm *IdentityMismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("err = %v, want an *IdentityMismatchError", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to say %q", err, want)
				}
			}
			if tt.wantRecord != nil && !maps.Equal(m.m, tt.wantRecord) {
				t.Errorf("the store holds %v after the refusal, want %v", m.m, tt.wantRecord)
			}
		})
	}
}

// TestNewWithPKIDir starts controllers on a shared --pki-dir: each
// registers the admin credential's certificate as the admin operator and
// writes no key into its data dir; a data dir whose store recorded another
// cluster, or that holds a single node's own CA, is refused.
func TestNewWithPKIDir(t *testing.T) {
	root := t.TempDir()
	pkiA, pkiB := filepath.Join(root, "pki-a"), filepath.Join(root, "pki-b")
	mustInit(t, pkiA)
	mustInit(t, pkiB)
	creds, err := pki.LoadCreds(filepath.Join(pkiA, AdminCredsFile))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := pki.ParseCertPEM([]byte(creds.CertPEM))
	wantSerial := cert.SerialNumber.Text(16)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(dataDir, pkiDir string) (*Controller, error) {
		c, err := New(context.Background(), Config{DataDir: dataDir, PKIDir: pkiDir, Listen: "127.0.0.1:0", Logger: logger})
		if err == nil {
			t.Cleanup(func() {
				c.lis.Close()
				c.Store.Close()
			})
		}
		return c, err
	}
	tests := []struct {
		name    string
		dataDir string
		pkiDir  string
		wantErr string
	}{
		{name: "first controller", dataDir: "data-1", pkiDir: pkiA},
		{name: "second controller, same pki dir", dataDir: "data-2", pkiDir: pkiA},
		{name: "first controller restarted on another cluster's pki dir", dataDir: "data-1", pkiDir: pkiB,
			wantErr: "this controller's identity is not the cluster's"},
		{name: "single-node data dir with its own CA", dataDir: "single", pkiDir: pkiA, wantErr: "holds its own CA"},
		{name: "the pki dir as the data dir", dataDir: "pki-a", pkiDir: pkiA, wantErr: "--pki-dir and --data-dir must be different directories"},
	}
	if err := os.Mkdir(filepath.Join(root, "single"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.LoadOrCreateCA(filepath.Join(root, "single")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := filepath.Join(root, tt.dataDir)
			c, err := start(dataDir, tt.pkiDir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			op, err := c.Store.GetOperator(context.Background(), "admin")
			if err != nil {
				t.Fatal(err)
			}
			if op.CertSerial != wantSerial {
				t.Fatalf("the admin operator's serial is %s, want admin.creds's %s", op.CertSerial, wantSerial)
			}
			for _, f := range []string{pki.CACertFile, pki.CAKeyFile, SigningKeyFile, AdminCredsFile} {
				if _, err := os.Stat(filepath.Join(dataDir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the data dir holds %s; with --pki-dir the identity stays there", f)
				}
			}
			if got, _ := c.Store.GetMeta(context.Background(), MetaCASHA256); got != c.CA.Fingerprint() {
				t.Errorf("the store recorded CA %q, want %q", got, c.CA.Fingerprint())
			}
			if c.cfg.Advertise != "lb.example.com:7443" || !slices.Contains(c.cfg.ServerNames, "lb.example.com") {
				t.Errorf("advertise %q, server names %v: want cluster.json's", c.cfg.Advertise, c.cfg.ServerNames)
			}
			c.lis.Close()
			c.Store.Close()
		})
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNewRecordsIdentityWithoutPKIDir: a single-node data dir records its
// identity at its first start and starts again; with its task-signing key
// replaced it is refused, naming the key's fingerprints.
func TestNewRecordsIdentityWithoutPKIDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "controller")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (*Controller, error) {
		return New(context.Background(), Config{DataDir: dataDir, Listen: "127.0.0.1:0", Logger: logger})
	}
	tests := []struct {
		name    string
		before  func(t *testing.T)
		wantErr string
	}{
		{name: "first start records"},
		{name: "restart on the same identity"},
		{name: "restart with another task-signing key", before: func(t *testing.T) {
			mustRemove(t, filepath.Join(dataDir, SigningKeyFile))
			if _, err := tasksign.CreateKey(filepath.Join(dataDir, SigningKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "its task-signing key has sha256 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before(t)
			}
			c, err := start()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "its CA has") {
					t.Fatalf("err = %v, want %q naming the key alone", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Store.Close()
			defer c.lis.Close()
			ctx := context.Background()
			if got, _ := c.Store.GetMeta(ctx, MetaCASHA256); got != c.CA.Fingerprint() {
				t.Errorf("recorded CA %q, want %q", got, c.CA.Fingerprint())
			}
			if got, _ := c.Store.GetMeta(ctx, MetaSigningKeySHA256); got != c.Signer.Fingerprint() {
				t.Errorf("recorded task-signing key %q, want %q", got, c.Signer.Fingerprint())
			}
		})
	}
}
