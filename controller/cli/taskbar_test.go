package cli

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// TestTaskBarLastFrameIsWhole draws runs' counts in quick succession and
// checks that what is left on the line shows the count and the text of
// the same moment, and that end clears it.
func TestTaskBarLastFrameIsWhole(t *testing.T) {
	counts := func(pending, running, succeeded, failed uint32) *operatorv1.RunCounts {
		return &operatorv1.RunCounts{Targets: pending + running + succeeded + failed, Pending: pending, Running: running, Succeeded: succeeded, Failed: failed}
	}
	frame := regexp.MustCompile(`pending (\d+) · running (\d+) · succeeded (\d+) · failed (\d+) · cancelled 0 · offline 0[^(]*\((\d+)/(\d+)\)`)
	for _, tt := range []struct {
		name  string
		steps []*operatorv1.RunCounts
		want  string // the last frame's "done/targets"
	}{
		{"done at once", []*operatorv1.RunCounts{counts(0, 0, 6, 2)}, "8/8"},
		{"under way", []*operatorv1.RunCounts{counts(8, 0, 0, 0), counts(4, 2, 2, 0)}, "0/8"},
		{"to the end", []*operatorv1.RunCounts{counts(8, 0, 0, 0), counts(4, 2, 2, 0), counts(0, 1, 6, 1), counts(0, 0, 6, 2)}, "8/8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			bar := &taskBar{w: &buf}
			for _, c := range tt.steps {
				bar.draw(c)
			}
			out := buf.String()
			line := out[strings.LastIndex(out, "\r")+1:]
			m := frame.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("the line left is %q, not a frame", line)
			}
			if got := m[5] + "/" + m[6]; got != tt.want {
				t.Fatalf("the last frame %q shows %s, want %s", line, got, tt.want)
			}
			// Count and text agree: done is succeeded + failed here.
			if s, f := mustAtoi(t, m[3]), mustAtoi(t, m[4]); m[5] != "0" && m[5] != strconv.Itoa(s+f) {
				t.Fatalf("the last frame %q: the count and the text disagree", line)
			}
			bar.end()
			if !strings.HasSuffix(buf.String(), "\r\033[K") {
				t.Fatalf("end did not clear the line: %q", buf.String())
			}
		})
	}
	var buf bytes.Buffer
	(&taskBar{w: &buf}).end()
	if buf.Len() != 0 {
		t.Fatalf("end of a bar never drawn wrote %q", buf.String())
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
