package apiview

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseMaxErrors checks the text of a run's max_errors field: empty (no
// limit), a count such as "5", or a percentage of the targets such as
// "10%". The CLI checks a --max-errors flag with it before it sends the
// request, and the controller checks what it receives, so both accept the
// same text.
func ParseMaxErrors(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	p, pct := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || (pct && n > 100) {
		return fmt.Errorf("max-errors %q: want a count such as 5 or a percentage such as 10%%", s)
	}
	return nil
}
