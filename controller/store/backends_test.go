package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/controller/store/storetest"
	"github.com/firebreak-ir/firebreak/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A backend makes fresh databases; each opens as many store instances as
// a test wants, with their own pools, as separate controllers would.
type backend struct {
	name  string
	fresh func(t *testing.T) storetest.Database
}

var backends = []backend{
	{name: "sqlite", fresh: func(t *testing.T) storetest.Database {
		path := filepath.Join(t.TempDir(), store.DatabaseFile)
		return func(t *testing.T) *store.SQL {
			s, err := store.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}},
	{name: "postgres", fresh: func(t *testing.T) storetest.Database {
		dsn := pgtest.New(t)
		return func(t *testing.T) *store.SQL {
			s, err := store.OpenPostgres(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	}},
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// openFresh opens one store on a fresh database of b.
func (b backend) openFresh(t *testing.T) *store.SQL { return b.fresh(t)(t) }

func TestConformance(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		storetest.Run(t, func(t *testing.T) store.Store { return b.openFresh(t) })
	})
}

func TestConcurrentControllers(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) { storetest.RunConcurrency(t, b.fresh) })
}
