package store

import (
	"context"
	"database/sql"
)

// scanner is a row to scan: *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// rowsQuerier runs a query that returns rows: the reader pool.
type rowsQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs q on db and returns every row as scan reads it.
func queryAll[T any](ctx context.Context, db rowsQuerier, q string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// queryStrings runs q on db and returns the first column of every row.
func queryStrings(ctx context.Context, db rowsQuerier, q string, args ...any) ([]string, error) {
	return queryAll(ctx, db, q, args, func(sc scanner) (string, error) {
		var s string
		err := sc.Scan(&s)
		return s, err
	})
}
