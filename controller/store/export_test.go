package store

import "database/sql"

// Writer is the store's own writer pool, for tests that check what the
// application's connection may not do (the append-only triggers) or that
// rewind a migration.
func (s *SQL) Writer() *sql.DB { return s.w }

// Reader is the store's reader pool, for tests that inspect the schema.
func (s *SQL) Reader() *sql.DB { return s.r.DB }
