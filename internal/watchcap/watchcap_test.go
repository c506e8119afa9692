package watchcap_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/firebreak-ir/firebreak/internal/watchcap"
)

func TestLimiter(t *testing.T) {
	tests := []struct {
		name          string
		perOp, total  int
		opens         []string // operators opening in order
		refusedAt     int      // index of the first refusal, -1 for none
		wantInMessage string
	}{
		{"under the limits", 2, 4, []string{"a", "a", "b"}, -1, ""},
		{"per operator", 2, 10, []string{"a", "a", "a"}, 2, "--max-watches-per-operator"},
		{"overall", 5, 3, []string{"a", "b", "c", "d"}, 3, "--max-watches"},
		{"defaults", 0, 0, make([]string, watchcap.DefaultPerOperator+1), watchcap.DefaultPerOperator, "has 16 watches open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := watchcap.New(tt.perOp, tt.total)
			for i, op := range tt.opens {
				_, err := l.Acquire(op)
				if i == tt.refusedAt {
					if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), tt.wantInMessage) {
						t.Fatalf("open %d: %v, want RESOURCE_EXHAUSTED naming %q", i, err, tt.wantInMessage)
					}
					return
				}
				if err != nil {
					t.Fatalf("open %d: %v", i, err)
				}
			}
			if tt.refusedAt >= 0 {
				t.Fatal("no open was refused")
			}
		})
	}
}

func TestReleaseFreesTheSlotOnce(t *testing.T) {
	l := watchcap.New(1, 2)
	release, err := l.Acquire("a")
	if err != nil {
		t.Fatal(err)
	}
	release()
	release()
	if total, mine := l.Open("a"); total != 0 || mine != 0 {
		t.Fatalf("open %d/%d after release", total, mine)
	}
	if _, err := l.Acquire("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire("c"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third watch over a total of 2: %v", err)
	}
}
