package runs

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/ids"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// AccountIDRE is the form of an AWS account id.
var AccountIDRE = regexp.MustCompile(`^\d{12}$`)

// serving returns the workers that can serve account tasks now: those not
// reporting themselves degraded (a worker whose AWS credentials do not work
// yet). Only a connected worker's live report counts; a worker that is
// offline is planned as before and gets its tasks when it returns.
func serving(workers []Agent, action string) ([]Agent, error) {
	var out []Agent
	var reasons []string
	for _, w := range workers {
		// Security-critical: what an agent says about itself is never a
		// reason to send it more; degraded only removes a worker from
		// consideration.
		if d := w.Facts.GetDegraded(); w.Connected && d != "" {
			reasons = append(reasons, fmt.Sprintf("%s: %s", w.ID, d))
			continue
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		return nil, refuse(ErrNoTargets, "every worker that offers %q is degraded and cannot act in AWS accounts now (%s); they retry on their own: "+
			"see `firebreak agents list`", action, strings.Join(reasons, "; "))
	}
	return out, nil
}

// accountTasks makes one task per (account, region) of an account-targeted
// run and gives each to a worker that can reach it: a worker living in the
// account if there is one, else the central workers in turn.
func (p *Planner) accountTasks(ctx context.Context, r *store.Run, workers []Agent) ([]*store.Task, error) {
	known, err := p.cfg.Store.ListAccounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the accounts: %w", err)
	}
	if len(known) == 0 {
		return nil, refuse(ErrNoTargets, "no accounts are known: run `firebreak accounts sync --management-account ID` first")
	}
	accounts, err := SelectAccounts(known, r.Accounts)
	if err != nil {
		return nil, refuseErr(ErrInvalidSelector, err)
	}
	sort.Slice(workers, func(i, j int) bool { return workers[i].ID < workers[j].ID })
	inAccount := map[string][]Agent{}
	for _, w := range workers {
		if acct := w.Facts.GetAccount(); acct != "" {
			inAccount[acct] = append(inAccount[acct], w)
		}
	}
	var tasks []*store.Task
	next := 0
	for _, a := range accounts {
		regions, err := selectRegions(a, r.Regions)
		if err != nil {
			return nil, refuseErr(ErrInvalidSelector, err)
		}
		for _, region := range regions {
			pool := inAccount[a.ID]
			if len(pool) == 0 {
				pool = workers
			}
			w := pool[next%len(pool)]
			next++
			tasks = append(tasks, &store.Task{ID: ids.New("tsk"), RunID: r.ID, Seq: len(tasks), AgentID: w.ID, Hostname: w.Hostname,
				Status: agentv1.TaskStatus_TASK_STATUS_PENDING, Account: a.ID, Region: region})
		}
	}
	if len(tasks) == 0 {
		return nil, refuse(ErrInvalidSelector, "accounts %q and regions %q select nothing", r.Accounts, r.Regions)
	}
	return tasks, nil
}

// SelectAccounts applies an accounts expression: "all", "ID,ID" or
// "ou=NAME-OR-ID" (an OU anywhere on the account's path).
func SelectAccounts(known []*store.Account, expr string) ([]*store.Account, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "all":
		return known, nil
	case strings.HasPrefix(expr, "ou="):
		ou := strings.TrimPrefix(expr, "ou=")
		if ou == "" {
			return nil, fmt.Errorf("--accounts ou= needs an OU name or id")
		}
		var out []*store.Account
		for _, a := range known {
			for _, part := range strings.Split(a.OUPath, "/") {
				if part == ou {
					out = append(out, a)
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no known account is in OU %q", ou)
		}
		return out, nil
	}
	byID := map[string]*store.Account{}
	for _, a := range known {
		byID[a.ID] = a
	}
	var out []*store.Account
	var unknown []string
	seen := map[string]bool{}
	for _, id := range strings.Split(expr, ",") {
		id = strings.TrimSpace(id)
		if !AccountIDRE.MatchString(id) {
			return nil, fmt.Errorf("--accounts %q: %q is not a 12-digit account id (or use all, or ou=NAME)", expr, id)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if a := byID[id]; a != nil {
			out = append(out, a)
		} else {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("accounts %s are not active members of the organisation (as of the last `firebreak accounts sync`)", strings.Join(unknown, ", "))
	}
	return out, nil
}

var regionNameRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)

func selectRegions(a *store.Account, expr string) ([]string, error) {
	switch expr = strings.TrimSpace(expr); expr {
	case "":
		// The worker's own region.
		return []string{""}, nil
	case "all":
		if len(a.Regions) == 0 {
			for _, u := range a.Unknown {
				if u.Field == "regions" {
					return nil, fmt.Errorf("account %s's enabled regions are unknown (%s): %s; or name the regions (--regions us-east-1,…), or leave --regions out to act in each worker's own region",
						a.ID, u.Reason, u.Remediation)
				}
			}
			return nil, fmt.Errorf("account %s has no known enabled regions", a.ID)
		}
		return a.Regions, nil
	}
	var out []string
	for _, r := range strings.Split(expr, ",") {
		r = strings.TrimSpace(r)
		if !regionNameRE.MatchString(r) {
			return nil, fmt.Errorf("--regions %q: %q is not a region name", expr, r)
		}
		// A region the account has not enabled cannot be acted in.
		if len(a.Regions) == 0 || slices.Contains(a.Regions, r) {
			out = append(out, r)
		}
	}
	return out, nil
}
