package e2e_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/internal/pgtest"
	"github.com/firebreak-ir/firebreak/test/e2e"
)

// readinessHistory is `readiness history --json`.
type readinessHistory []struct {
	ID          string    `json:"id"`
	GeneratedAt time.Time `json:"generated_at"`
	Score       int       `json:"score"`
	CreatedBy   string    `json:"created_by"`
}

// waitScheduledReview waits until c lists a stored review and returns the
// history.
func waitScheduledReview(t *testing.T, c *e2e.Controller) readinessHistory {
	t.Helper()
	var h readinessHistory
	e2e.WaitFor(t, 90*time.Second, "the scheduled readiness review to be stored", func() bool {
		h = nil
		c.MustJSON(t, &h, 0, "readiness", "history")
		return len(h) > 0
	})
	return h
}

// TestReadinessEvery: a controller started with --readiness-every reviews
// readiness on its own, with no operator asking, and stores the report
// (`readiness history` shows it, by controller:readiness). Two controllers
// of a cluster with the same schedule store one review per period between
// them: the review is a leased singleton. When the controller holding the
// lease is killed, the other takes the schedule over where it stood: the
// next review comes a period after the last one, not at the takeover, and
// again only once.
func TestReadinessEvery(t *testing.T) {
	b := e2e.Build(t)
	t.Run("one controller", func(t *testing.T) {
		c := e2e.StartController(t, b, e2e.ControllerOptions{Args: []string{"--readiness-every", "1m"}})
		h := waitScheduledReview(t, c)
		if len(h) != 1 || h[0].CreatedBy != "controller:readiness" || h[0].ID == "" || h[0].Score <= 0 || h[0].Score >= 100 {
			t.Fatalf("history %+v, want one review by controller:readiness", h)
		}
	})
	t.Run("a cluster runs it once per period", func(t *testing.T) {
		dsn := pgtest.New(t)
		evidence := s3Evidence(t)
		root := t.TempDir()
		pkiDir := filepath.Join(root, "pki")
		initCluster(t, b, pkiDir)
		var ctls []*e2e.Controller
		for _, name := range []string{"controller-a", "controller-b"} {
			ctls = append(ctls, startClusterController(t, b, name, filepath.Join(root, name), pkiDir, "--store", dsn, "--evidence", evidence,
				"--lease-ttl", "3s", "--readiness-every", "1m"))
		}
		started := time.Now()
		h := waitScheduledReview(t, ctls[0])
		// Both controllers were up and due (no stored review) from the
		// start; give the one without the lease several lease TTLs to
		// show it would not run the review too.
		if wait := 15*time.Second - time.Since(started); wait > 0 {
			time.Sleep(wait)
		}
		for _, c := range ctls {
			var again readinessHistory
			c.MustJSON(t, &again, 0, "readiness", "history")
			if len(again) != 1 || again[0].ID != h[0].ID || again[0].CreatedBy != "controller:readiness" {
				t.Fatalf("history through %s: %+v; want the one review %s", c.Addr, again, h[0].ID)
			}
		}

		// The second period, across the death of the lease's holder.
		var cs []controllerJSON
		ctls[0].MustJSON(t, &cs, 0, "controllers", "list")
		holder := -1
		for _, e := range cs {
			if slices.Contains(e.Leases, "readiness-schedule") {
				holder = slices.IndexFunc(ctls, func(c *e2e.Controller) bool { return c.Addr == e.Address })
			}
		}
		if holder < 0 {
			t.Fatalf("no controller of %+v holds the readiness-schedule lease", cs)
		}
		survivor := ctls[1-holder]
		ctls[holder].Kill()
		killed := time.Now()
		var second readinessHistory
		e2e.WaitFor(t, 2*time.Minute, "the second scheduled review, from the survivor", func() bool {
			second = nil
			survivor.MustJSON(t, &second, 0, "readiness", "history")
			return len(second) > 1
		})
		// Newest first. The survivor was due a period after the first
		// review, not when it took the lease (a few seconds after the
		// kill); a second is left for the two clocks to differ.
		gap := second[0].GeneratedAt.Sub(second[1].GeneratedAt)
		if len(second) != 2 || second[1].ID != h[0].ID || second[0].CreatedBy != "controller:readiness" || gap < time.Minute-time.Second {
			t.Fatalf("history after the kill: %+v; want the first review %s and one more a period (1m) after it", second, h[0].ID)
		}
		if takeover := second[0].GeneratedAt.Sub(killed); takeover < 0 {
			t.Fatalf("the second review (%s) predates the kill (%s)", second[0].GeneratedAt, killed)
		}
		time.Sleep(10 * time.Second)
		var third readinessHistory
		survivor.MustJSON(t, &third, 0, "readiness", "history")
		if len(third) != 2 {
			t.Fatalf("history 10 s after the second review: %+v; want still two", third)
		}
		t.Logf("reviews %s and %s, %s apart; the lease's holder was killed %s after the first", h[0].ID, second[0].ID, gap.Round(time.Millisecond),
			killed.Sub(second[1].GeneratedAt).Round(time.Millisecond))
	})
}

// TestDrillRecordFeedsReadiness: `lab drill --record` sends the drill's
// outcome to the controller of the operator credential, which audits it,
// and the controller's readiness review reports when each scenario last
// passed, with its score.
func TestDrillRecordFeedsReadiness(t *testing.T) {
	b := e2e.Build(t)
	c := e2e.StartController(t, b, e2e.ControllerOptions{})
	var drill struct {
		Scenario    string `json:"scenario"`
		Contained   bool   `json:"contained"`
		Score       int    `json:"score"`
		DrillRecord string `json:"drill_record"`
	}
	c.MustJSON(t, &drill, 0, "lab", "drill", "public-bucket", "--simulated", "--record")
	if !drill.Contained || drill.Score <= 0 || !strings.HasPrefix(drill.DrillRecord, "drl") {
		t.Fatalf("drill %+v", drill)
	}
	var report struct {
		Checks []struct{ ID, Status, Evidence, Remediation string } `json:"checks"`
	}
	c.MustJSON(t, &report, 0, "readiness")
	i := slices.IndexFunc(report.Checks, func(ch struct{ ID, Status, Evidence, Remediation string }) bool { return ch.ID == "process.drills" })
	if i < 0 {
		t.Fatalf("no process.drills check in %+v", report.Checks)
	}
	ch := report.Checks[i]
	passed := fmt.Sprintf("public-bucket: passed %s (0 days ago), score %d/100, playbook s3-public-exposure, recorded by operator:", time.Now().UTC().Format("2006-01-02"), drill.Score)
	if ch.Status != "warn" || !strings.Contains(ch.Evidence, passed) || !strings.Contains(ch.Evidence, "never drilled: ec2-compromise, leaked-key-orgwide") ||
		!strings.Contains(ch.Remediation, "firebreak lab drill SCENARIO --record") {
		t.Fatalf("process.drills: %+v; want warn with %q", ch, passed)
	}
	if audit := c.CLI(t, "audit", "list", "--json").Stdout; !strings.Contains(audit, "drill.record") || !strings.Contains(audit, drill.DrillRecord) {
		t.Fatalf("the record is not audited:\n%s", audit)
	}
}
