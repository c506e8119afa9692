package console

import "net/http"

// listPage is one page of a list paged on the server: the rows shown, the
// total that matched, and the cursor of the next page. Every list the
// console shows is cut into these, so no page sends an unbounded table.
type listPage[T any] struct {
	// Rows are this page's rows.
	Rows []T
	// Total is how many rows matched the filters, over every page.
	Total int
	// First is the 1-based position of the first row shown.
	First int
	// Next is the cursor of the next page, empty on the last.
	Next string
	// NextURL is the request's URL with the cursor of the next page.
	NextURL string
	// Filtered says the list was narrowed by filters or a search.
	Filtered bool
	// Capped, when not empty, says the source itself returned no more
	// than this many rows: older ones exist but are not listed.
	Capped string
}

// link sets NextURL from the request: path (the request's own when empty)
// with the request's query and after=Next.
func (p *listPage[T]) link(r *http.Request, path string) { p.linkParam(r, path, "after") }

// linkParam is link with the cursor in the query parameter param, for a
// page that shows more than one paged list.
func (p *listPage[T]) linkParam(r *http.Request, path, param string) {
	if p.Next == "" {
		return
	}
	q := r.URL.Query()
	q.Set(param, p.Next)
	if path == "" {
		path = r.URL.Path
	}
	p.NextURL = path + "?" + q.Encode()
}

// Last is the 1-based position of the last row shown.
func (p listPage[T]) Last() int { return p.First + len(p.Rows) - 1 }

// paginate cuts the rows matched by keep into a page of size starting
// after the row whose key is cursor (from the start when cursor is empty
// or names no row). The cursor is a row's key rather than an offset, so a
// page does not shift when rows are added before it.
func paginate[T any](rows []T, key func(T) string, keep func(T) bool, cursor string, size int) listPage[T] {
	var matched []T
	for _, r := range rows {
		if keep == nil || keep(r) {
			matched = append(matched, r)
		}
	}
	p := listPage[T]{Total: len(matched)}
	start := 0
	if cursor != "" {
		for i, r := range matched {
			if key(r) == cursor {
				start = i + 1
				break
			}
		}
	}
	end := min(start+size, len(matched))
	p.Rows, p.First = matched[start:end], start+1
	if end < len(matched) && end > start {
		p.Next = key(matched[end-1])
	}
	return p
}
