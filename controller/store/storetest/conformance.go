// Package storetest is the conformance suite every store.Store
// implementation passes.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Run runs the suite; open returns a fresh, empty store per subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	now := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)

	t.Run("agents", func(t *testing.T) {
		s := open(t)
		a := &store.Agent{ID: "a1", Role: "host", Hostname: "web-1", EnrolledAt: now, LastSeen: now, CertSerial: "ab", CertNotAfter: now.Add(time.Hour),
			Facts:   &agentv1.AgentFacts{Hostname: "web-1", Labels: map[string]string{"env": "prod"}},
			Plugins: []*agentv1.PluginInfo{{Sha256: "00ff", Description: &pluginv1.ActionDescription{Name: "sysinfo", Version: "1.0.0"}}}}
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAgent(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Hostname != "web-1" || got.Facts.GetLabels()["env"] != "prod" || len(got.Plugins) != 1 ||
			got.Plugins[0].GetDescription().GetName() != "sysinfo" || !got.EnrolledAt.Equal(now) {
			t.Fatalf("agent round trip: %+v", got)
		}
		if _, err := s.GetAgent(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing agent: %v", err)
		}
		later := now.Add(time.Minute)
		if err := s.TouchAgents(ctx, map[string]time.Time{"a1": later}); err != nil {
			t.Fatal(err)
		}
		// An older sighting never moves last_seen backwards.
		if err := s.TouchAgents(ctx, map[string]time.Time{"a1": now}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetAgent(ctx, "a1")
		if !got.LastSeen.Equal(later) {
			t.Fatalf("last seen %v, want %v", got.LastSeen, later)
		}
		// SetAgentFacts changes the facts only: a renewal's serial written
		// meanwhile stays.
		a.CertSerial = "cd"
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.SetAgentFacts(ctx, "a1", &agentv1.AgentFacts{Hostname: "web-1", Isolated: true, Labels: map[string]string{"env": "prod"}}); err != nil {
			t.Fatal(err)
		}
		got, _ = s.GetAgent(ctx, "a1")
		if !got.Facts.GetIsolated() || got.CertSerial != "cd" || got.Facts.GetLabels()["env"] != "prod" {
			t.Fatalf("after SetAgentFacts: isolated %v, serial %q, facts %v", got.Facts.GetIsolated(), got.CertSerial, got.Facts)
		}
		if err := s.SetAgentFacts(ctx, "nope", &agentv1.AgentFacts{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("SetAgentFacts of a missing agent: %v, want ErrNotFound", err)
		}
	})

	t.Run("agent lifecycle", func(t *testing.T) {
		s := open(t)
		a := &store.Agent{ID: "a1", Role: "host", Hostname: "web-1", EnrolledAt: now, LastSeen: now, CertSerial: "ab", CertNotAfter: now.Add(time.Hour),
			Facts: &agentv1.AgentFacts{Hostname: "web-1", InstanceId: "i-1"}}
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		a.Revoked, a.RevokedAt, a.RevokeReason = true, now.Add(time.Minute), "host compromised"
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAgent(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Revoked || !got.RevokedAt.Equal(a.RevokedAt) || got.RevokeReason != "host compromised" {
			t.Fatalf("lifecycle round trip: %+v", got)
		}
		other := &store.Agent{ID: "a2", Role: "host", Hostname: "web-2", EnrolledAt: now, LastSeen: now, CertSerial: "cd", CertNotAfter: now.Add(time.Hour),
			Facts: &agentv1.AgentFacts{Hostname: "web-2", InstanceId: "i-1", Account: "222222222222"}}
		if err := s.PutAgent(ctx, other); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			account, instance string
			want              []string
		}{
			{"", "i-1", []string{"a1"}},
			{"222222222222", "i-1", []string{"a2"}},
			{"", "i-2", nil},
			{"", "", nil},
		} {
			on, err := s.AgentsOnInstance(ctx, tc.account, tc.instance)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range on {
				ids = append(ids, a.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
				t.Fatalf("AgentsOnInstance(%q, %q) = %v, want %v", tc.account, tc.instance, ids, tc.want)
			}
		}
		if err := s.DeleteAgent(ctx, "a1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAgent(ctx, "a1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a deleted agent: %v", err)
		}
		if err := s.DeleteAgent(ctx, "a1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleting an absent agent: %v, want ErrNotFound", err)
		}
	})

	t.Run("agent terminated", func(t *testing.T) {
		s := open(t)
		a := &store.Agent{ID: "t1", Role: "host", Hostname: "web-1", EnrolledAt: now, LastSeen: now, CertSerial: "ab", CertNotAfter: now.Add(time.Hour),
			Facts: &agentv1.AgentFacts{Hostname: "web-1", InstanceId: "i-1", Account: "111111111111", Region: "us-east-1"}}
		if err := s.PutAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			at   time.Time
		}{
			{"not terminated", time.Time{}},
			{"terminated", now.Add(2 * time.Minute)},
			{"terminated again keeps the new time", now.Add(3 * time.Minute)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a.TerminatedAt = tc.at
				if err := s.PutAgent(ctx, a); err != nil {
					t.Fatal(err)
				}
				got, err := s.GetAgent(ctx, "t1")
				if err != nil {
					t.Fatal(err)
				}
				if got.Terminated() != !tc.at.IsZero() || !got.TerminatedAt.Equal(tc.at) {
					t.Fatalf("terminated_at round trip: got %v (terminated %v), want %v", got.TerminatedAt, got.Terminated(), tc.at)
				}
				all, err := s.ListAgents(ctx)
				if err != nil || len(all) != 1 || !all[0].TerminatedAt.Equal(tc.at) {
					t.Fatalf("ListAgents: %v, %v; want one agent terminated at %v", all, err, tc.at)
				}
			})
		}
		// Facts written later leave the termination as it is.
		if err := s.SetAgentFacts(ctx, "t1", &agentv1.AgentFacts{Hostname: "web-1", InstanceId: "i-1"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetAgent(ctx, "t1"); got == nil || !got.Terminated() {
			t.Fatalf("SetAgentFacts cleared the termination: %+v", got)
		}
	})

	t.Run("join tokens", func(t *testing.T) {
		s := open(t)
		tok := &store.JoinToken{Hash: "h", Role: "host", Uses: 2, UsesLeft: 2, ExpiresAt: now.Add(time.Hour), Labels: map[string]string{"env": "lab"}, CreatedAt: now}
		if err := s.CreateJoinToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			got, err := s.ConsumeJoinToken(ctx, "h", now)
			if err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
			if got.Labels["env"] != "lab" || got.UsesLeft != 1-i {
				t.Fatalf("use %d: %+v", i+1, got)
			}
		}
		if _, err := s.ConsumeJoinToken(ctx, "h", now); !errors.Is(err, store.ErrTokenExhausted) {
			t.Fatalf("third use: %v", err)
		}
		if _, err := s.ConsumeJoinToken(ctx, "unknown", now); !errors.Is(err, store.ErrTokenUnknown) {
			t.Fatalf("unknown: %v", err)
		}
		_ = s.CreateJoinToken(ctx, &store.JoinToken{Hash: "old", Role: "host", Uses: 1, UsesLeft: 1, ExpiresAt: now})
		if _, err := s.ConsumeJoinToken(ctx, "old", now); !errors.Is(err, store.ErrTokenExpired) {
			t.Fatalf("expired: %v", err)
		}
	})

	t.Run("enrollment with a join token", func(t *testing.T) {
		s := open(t)
		if err := s.CreateJoinToken(ctx, &store.JoinToken{Hash: "e", Role: "worker", Uses: 2, UsesLeft: 2, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		usesLeft := func() int {
			t.Helper()
			toks, err := s.ListJoinTokens(ctx)
			if err != nil || len(toks) != 1 {
				t.Fatalf("tokens: %+v, %v", toks, err)
			}
			return toks[0].UsesLeft
		}
		refused := errors.New("refused by build")
		tests := []struct {
			name      string
			hash      string
			build     func(*store.JoinToken) (*store.Agent, error)
			wantErr   error
			wantAgent string
			wantLeft  int
			wantFail  bool
		}{
			{name: "build refuses: no use spent, nothing stored", hash: "e", wantErr: refused, wantLeft: 2,
				build: func(*store.JoinToken) (*store.Agent, error) { return nil, refused }},
			{name: "the agent is stored with the use", hash: "e", wantAgent: "agt-e1", wantLeft: 1,
				build: func(tok *store.JoinToken) (*store.Agent, error) {
					return &store.Agent{ID: "agt-e1", Role: tok.Role, Hostname: "w1", Facts: &agentv1.AgentFacts{Hostname: "w1"}, EnrolledAt: now, LastSeen: now}, nil
				}},
			{name: "an agent that cannot be stored spends no use", hash: "e", wantLeft: 1, wantFail: true,
				build: func(tok *store.JoinToken) (*store.Agent, error) {
					// Facts that are not valid UTF-8 cannot be written.
					return &store.Agent{ID: "agt-e2", Role: tok.Role, Facts: &agentv1.AgentFacts{Hostname: "\xff"}, EnrolledAt: now, LastSeen: now}, nil
				}},
			{name: "an unknown token: build never runs", hash: "nope", wantErr: store.ErrTokenUnknown, wantLeft: 1,
				build: func(*store.JoinToken) (*store.Agent, error) {
					t.Fatal("build ran for an unknown token")
					return nil, nil
				}},
		}
		for _, tc := range tests {
			tok, a, err := s.EnrollWithToken(ctx, tc.hash, now, tc.build)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("%s: %v, want %v", tc.name, err, tc.wantErr)
			case tc.wantErr == nil && tc.wantAgent != "" && (err != nil || a.ID != tc.wantAgent || tok.UsesLeft != tc.wantLeft):
				t.Fatalf("%s: %+v, %+v, %v", tc.name, tok, a, err)
			case tc.wantFail && err == nil:
				t.Fatalf("%s: stored", tc.name)
			}
			if got := usesLeft(); got != tc.wantLeft {
				t.Fatalf("%s: %d uses left, want %d", tc.name, got, tc.wantLeft)
			}
			if tc.wantAgent != "" {
				if got, err := s.GetAgent(ctx, tc.wantAgent); err != nil || got.Role != "worker" {
					t.Fatalf("%s: stored agent %+v, %v", tc.name, got, err)
				}
			}
		}
		if all, err := s.ListAgents(ctx); err != nil || len(all) != 1 {
			t.Fatalf("agents stored: %d (%v), want only agt-e1", len(all), err)
		}
	})

	t.Run("join token revocation", func(t *testing.T) {
		s := open(t)
		hash := "0123456789abcdef0123456789abcdef"
		if err := s.CreateJoinToken(ctx, &store.JoinToken{Hash: hash, Role: "host", Uses: 3, UsesLeft: 3, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RevokeJoinToken(ctx, "ffffffffffffffff"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("revoking an unknown id: %v", err)
		}
		got, err := s.RevokeJoinToken(ctx, hash[:16])
		if err != nil || !got.Revoked || got.ID() != hash[:16] {
			t.Fatalf("revoke: %+v, %v", got, err)
		}
		if _, err := s.ConsumeJoinToken(ctx, hash, now); !errors.Is(err, store.ErrTokenRevoked) {
			t.Fatalf("using a revoked token: %v", err)
		}
		all, err := s.ListJoinTokens(ctx)
		if err != nil || len(all) != 1 || !all[0].Revoked || all[0].UsesLeft != 3 {
			t.Fatalf("list: %+v, %v", all, err)
		}
	})

	t.Run("runs and tasks", func(t *testing.T) {
		s := open(t)
		r := &store.Run{ID: "r1", Action: "sysinfo", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
			CreatedBy: "admin", CreatedAt: now, DeadlineAfter: time.Hour, MaxErrors: "10%", OnBehalfOf: "alice"}
		var tasks []*store.Task
		for i := 0; i < 3; i++ {
			tasks = append(tasks, &store.Task{ID: fmt.Sprintf("t%d", i), RunID: "r1", Seq: i, AgentID: fmt.Sprintf("a%d", i), Status: agentv1.TaskStatus_TASK_STATUS_PENDING})
		}
		if err := s.CreateRun(ctx, r, tasks); err != nil {
			t.Fatal(err)
		}
		tasks[1].Status = agentv1.TaskStatus_TASK_STATUS_SUCCEEDED
		tasks[1].OutputJSON = []byte(`{"ok":true}`)
		tasks[1].SignedTask = []byte{1, 2, 3}
		tasks[1].EvidenceIDs = []string{"e1", "e2"}
		tasks[1].FinishedAt = now
		r.Status = operatorv1.RunStatus_RUN_STATUS_SUCCEEDED
		r.FinishedAt = now
		if err := s.SaveTasks(ctx, []*store.Task{tasks[1]}, []*store.Run{r}); err != nil {
			t.Fatal(err)
		}
		gr, gt, err := s.GetRun(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if gr.Status != operatorv1.RunStatus_RUN_STATUS_SUCCEEDED || gr.MaxErrors != "10%" || gr.DeadlineAfter != time.Hour || gr.OnBehalfOf != "alice" || len(gt) != 3 {
			t.Fatalf("run %+v tasks %d", gr, len(gt))
		}
		if gt[1].Status != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED || !bytes.Equal(gt[1].SignedTask, []byte{1, 2, 3}) ||
			len(gt[1].EvidenceIDs) != 2 || string(gt[1].OutputJSON) != `{"ok":true}` {
			t.Fatalf("task %+v", gt[1])
		}
		active, _, err := s.ListActiveRuns(ctx)
		if err != nil || len(active) != 0 {
			t.Fatalf("active runs %v %v", active, err)
		}
		runs, err := s.ListRuns(ctx, 10)
		if err != nil || len(runs) != 1 {
			t.Fatalf("list runs %v %v", runs, err)
		}
		if err := s.AddApproval(ctx, &store.Approval{RunID: "r1", Operator: "bob", Approved: true, At: now}); err != nil {
			t.Fatal(err)
		}
		aps, err := s.ListApprovals(ctx, "r1")
		if err != nil || len(aps) != 1 || aps[0].Operator != "bob" {
			t.Fatalf("approvals %v %v", aps, err)
		}
	})

	t.Run("a large batch of tasks created and saved, read back equal", func(t *testing.T) { largeBatch(t, open(t), now) })

	t.Run("a large batch of last-seen times", func(t *testing.T) { lastSeenBatch(t, open(t), now) })

	t.Run("idempotency keys", func(t *testing.T) {
		s := open(t)
		mk := func(id, key string) *store.Run {
			return &store.Run{ID: id, Action: "sysinfo", Selector: "all", ParamsJSON: []byte(`{}`), Status: operatorv1.RunStatus_RUN_STATUS_RUNNING,
				CreatedBy: "playbook:p", CreatedAt: now, Reason: "the operator's text", IdempotencyKey: key}
		}
		task := func(id, runID string) []*store.Task {
			return []*store.Task{{ID: id, RunID: runID, AgentID: "a1", Status: agentv1.TaskStatus_TASK_STATUS_PENDING}}
		}
		if err := s.CreateRun(ctx, mk("k1", "pbrun:pbr_1:a"), task("k1t", "k1")); err != nil {
			t.Fatal(err)
		}
		// Runs without a key never collide.
		for _, id := range []string{"n1", "n2"} {
			if err := s.CreateRun(ctx, mk(id, ""), nil); err != nil {
				t.Fatalf("a second run without a key: %v", err)
			}
		}
		tests := []struct {
			name    string
			key     string
			wantRun string
			wantErr error
		}{
			{"the key's run", "pbrun:pbr_1:a", "k1", nil},
			{"an unused key", "pbrun:pbr_1:b", "", store.ErrNotFound},
			{"no key", "", "", store.ErrNotFound},
		}
		for _, tt := range tests {
			r, tasks, err := s.RunByIdempotencyKey(ctx, tt.key)
			if !errors.Is(err, tt.wantErr) || (tt.wantRun != "" && (r.ID != tt.wantRun || len(tasks) != 1 || r.IdempotencyKey != tt.key ||
				r.Reason != "the operator's text")) {
				t.Fatalf("%s: run %+v tasks %d err %v", tt.name, r, len(tasks), err)
			}
		}
		// A second run with a used key is refused, and nothing of it stored.
		if err := s.CreateRun(ctx, mk("k2", "pbrun:pbr_1:a"), task("k2t", "k2")); !errors.Is(err, store.ErrIdempotencyKeyUsed) {
			t.Fatalf("a second run with the key: %v, want ErrIdempotencyKeyUsed", err)
		}
		if _, _, err := s.GetRun(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the refused run was stored: %v", err)
		}
	})

	t.Run("audit chain", func(t *testing.T) {
		s := open(t)
		for i := 0; i < 5; i++ {
			if err := s.AppendAudit(ctx, &store.AuditRecord{At: now.Add(time.Duration(i)), Actor: "operator:admin", Action: "run.create", Subject: fmt.Sprint(i), Detail: []byte(`{"n":1}`)}); err != nil {
				t.Fatal(err)
			}
		}
		chk, err := s.VerifyAudit(ctx)
		if err != nil || !chk.OK || chk.Records != 5 {
			t.Fatalf("verify: %+v %v", chk, err)
		}
		recs, _ := s.ListAudit(ctx, 0, 10)
		if recs[0].PrevHash != store.GenesisHash || recs[1].PrevHash != recs[0].Hash {
			t.Fatal("records are not chained")
		}
		if err := s.AppendAudit(ctx, &store.AuditRecord{At: now, Actor: "x", Action: "y", Detail: []byte("{bad")}); err == nil {
			t.Fatal("invalid detail accepted")
		}
	})

	t.Run("accounts", func(t *testing.T) {
		s := open(t)
		in := []*store.Account{{ID: "111111111111", Name: "a", Status: "ACTIVE", OUPath: "r-1/ou-x", Regions: []string{"us-east-1", "eu-west-1"}, SyncedAt: now},
			{ID: "222222222222", Name: "b", Status: "ACTIVE", Regions: []string{}}}
		if err := s.ReplaceAccounts(ctx, in); err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceAccounts(ctx, in[:1]); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListAccounts(ctx)
		if err != nil || len(got) != 1 || got[0].OUPath != "r-1/ou-x" || len(got[0].Regions) != 2 || !got[0].SyncedAt.Equal(now) || len(got[0].Unknown) != 0 {
			t.Fatalf("accounts %+v %v", got, err)
		}
		// An account whose regions could not be read is kept, with why.
		gap := store.AccountUnknown{Field: "regions", Reason: "account:ListRegions: AccessDeniedException", Remediation: "enable trusted access"}
		in[1].Unknown = []store.AccountUnknown{gap}
		if err := s.ReplaceAccounts(ctx, in); err != nil {
			t.Fatal(err)
		}
		got, err = s.ListAccounts(ctx)
		if err != nil || len(got) != 2 || len(got[1].Unknown) != 1 || got[1].Unknown[0] != gap || len(got[0].Unknown) != 0 {
			t.Fatalf("accounts with what discovery could not learn %+v %v", got, err)
		}
	})

	t.Run("readiness reports", func(t *testing.T) {
		s := open(t)
		for i, score := range []int{40, 75, 90} {
			r := &store.ReadinessReport{ID: fmt.Sprintf("rdy-%d", i), GeneratedAt: now.Add(time.Duration(i) * time.Hour), Score: score, CreatedBy: "operator:root",
				ReportJSON: []byte(`{"score":` + fmt.Sprint(score) + `}`)}
			if err := s.SaveReadinessReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListReadinessReports(ctx, 2)
		if err != nil || len(got) != 2 || got[0].Score != 90 || got[1].Score != 75 || !got[0].GeneratedAt.Equal(now.Add(2*time.Hour)) || got[0].CreatedBy != "operator:root" {
			t.Fatalf("history %+v %v", got, err)
		}
	})

	t.Run("drill results", func(t *testing.T) {
		s := open(t)
		for i, d := range []*store.DrillResult{
			{Scenario: "ec2-compromise", Playbook: "ec2-instance-compromise", Contained: true, Score: 90, SimulatedHosts: true, TimeToContainMS: 4200},
			{Scenario: "public-bucket", Playbook: "s3-public-exposure", Contained: false, Score: 0},
			{Scenario: "ec2-compromise", Playbook: "ec2-instance-compromise", Contained: true, Score: 100},
		} {
			d.ID, d.RecordedAt, d.RecordedBy, d.ResultJSON = fmt.Sprintf("drl-%d", i), now.Add(time.Duration(i)*time.Hour), "operator:root", []byte(`{"score":1}`)
			if err := s.SaveDrillResult(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListDrillResults(ctx, now.Add(time.Hour), 10)
		if err != nil || len(got) != 2 || got[0].ID != "drl-2" || got[0].Score != 100 || !got[0].Contained || got[1].ID != "drl-1" || got[1].Contained ||
			got[1].Scenario != "public-bucket" || !got[1].RecordedAt.Equal(now.Add(time.Hour)) || got[0].RecordedBy != "operator:root" || got[0].ResultJSON != nil {
			t.Fatalf("drills since the second %+v %v", got, err)
		}
		got, err = s.ListDrillResults(ctx, time.Time{}, 1)
		if err != nil || len(got) != 1 || got[0].ID != "drl-2" {
			t.Fatalf("newest drill %+v %v", got, err)
		}
		got, err = s.ListDrillResults(ctx, now.Add(-time.Hour), 10)
		if err != nil || len(got) != 3 || !got[2].SimulatedHosts || got[2].TimeToContainMS != 4200 || got[2].Playbook != "ec2-instance-compromise" {
			t.Fatalf("every drill %+v %v", got, err)
		}
	})

	t.Run("attestation policy", func(t *testing.T) {
		s := open(t)
		if _, err := s.GetAttestPolicy(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("no policy yet: %v", err)
		}
		seed := &store.AttestPolicy{YAML: []byte("iid:\n  accounts: [all]\n"), Source: "seed.yaml", SetBy: "controller:c1", SetAt: now}
		if ok, err := s.SeedAttestPolicy(ctx, seed); err != nil || !ok || seed.Version != 1 {
			t.Fatalf("seed an empty store: %v %v %d", ok, err, seed.Version)
		}
		set := &store.AttestPolicy{YAML: []byte("sts: []\n"), Source: "p.yaml", SetBy: "operator:root", SetAt: now.Add(time.Minute)}
		if err := s.SetAttestPolicy(ctx, set); err != nil || set.Version != 2 {
			t.Fatalf("set: %v %d", err, set.Version)
		}
		// A controller restarted with its old file does not undo the set.
		if ok, err := s.SeedAttestPolicy(ctx, &store.AttestPolicy{YAML: []byte("old"), Source: "seed.yaml", SetBy: "controller:c2", SetAt: now}); err != nil || ok {
			t.Fatalf("seed over a stored policy: %v %v", ok, err)
		}
		got, err := s.GetAttestPolicy(ctx)
		if err != nil || got.Version != 2 || string(got.YAML) != "sts: []\n" || got.Source != "p.yaml" || got.SetBy != "operator:root" || !got.SetAt.Equal(now.Add(time.Minute)) {
			t.Fatalf("newest policy %+v %v", got, err)
		}
	})

	t.Run("eradication plans", func(t *testing.T) {
		s := open(t)
		for i, c := range []string{"case-a", "case-a", "case-b"} {
			p := &store.EradicationPlan{ID: fmt.Sprintf("plan-%d", i), CaseID: c, CreatedAt: now.Add(time.Duration(i) * time.Minute), CreatedBy: "operator:alice",
				Steps: i + 1, PlanJSON: []byte(fmt.Sprintf(`{"id":"plan-%d"}`, i))}
			if err := s.SaveEradicationPlan(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SaveEradicationPlan(ctx, &store.EradicationPlan{ID: "plan-0", CaseID: "case-b", CreatedAt: now, CreatedBy: "x", PlanJSON: []byte("{}")}); err == nil {
			t.Fatal("a second plan under a stored id was accepted")
		}
		got, err := s.GetEradicationPlan(ctx, "plan-1")
		if err != nil || got.CaseID != "case-a" || got.Steps != 2 || string(got.PlanJSON) != `{"id":"plan-1"}` || !got.CreatedAt.Equal(now.Add(time.Minute)) || got.CreatedBy != "operator:alice" {
			t.Fatalf("plan %+v %v", got, err)
		}
		if _, err := s.GetEradicationPlan(ctx, "plan-9"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing plan: %v", err)
		}
		list, err := s.ListEradicationPlans(ctx, "case-a")
		if err != nil || len(list) != 2 || list[0].ID != "plan-1" || list[1].ID != "plan-0" || list[0].PlanJSON != nil {
			t.Fatalf("case plans %+v %v", list, err)
		}
	})

	t.Run("meta", func(t *testing.T) {
		s := open(t)
		if _, err := s.GetMeta(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		_ = s.SetMeta(ctx, "k", "v1")
		_ = s.SetMeta(ctx, "k", "v2")
		if v, _ := s.GetMeta(ctx, "k"); v != "v2" {
			t.Fatalf("meta %q", v)
		}
		// Set-if-absent: the first writer's value stays, and each writer
		// learns it.
		if v, err := s.SetMetaIfAbsent(ctx, "id", "a"); err != nil || v != "a" {
			t.Fatalf("SetMetaIfAbsent on an absent key: %q %v", v, err)
		}
		if v, err := s.SetMetaIfAbsent(ctx, "id", "b"); err != nil || v != "a" {
			t.Fatalf("SetMetaIfAbsent on a set key: %q %v, want the first value", v, err)
		}
	})

	t.Run("leases", func(t *testing.T) { Leases(t, open) })
}
