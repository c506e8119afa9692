// Package eradicate is the domain service behind `firebreak eradicate`: it
// builds an eradication plan from what a case's scope found the attacker
// left (internal/eradplan), stores it with the case, reads it back for a
// run, judges a plan's verification, and runs a playbook's operation steps
// (scope, plan, eradicate, verify) through the same flows as the CLI
// (internal/eradflow).
package eradicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/eradplan"
	"github.com/firebreak-ir/firebreak/internal/ids"
)

// ErrNoScope is returned for a case whose scope found nothing to eradicate
// or that has no scope at all.
var ErrNoScope = errors.New("the case has no scope with attacker artifacts")

// ScopeReader gives a case's scope: the Scope section of its report.
type ScopeReader interface {
	// Report returns the case's report, or store.ErrNotFound.
	Report(ctx context.Context, caseID string) (*cases.Report, error)
}

// Config configures the service.
type Config struct {
	// Cases reads each case's scope.
	Cases ScopeReader
	// Plans stores the plans.
	Plans store.EradicationStore
	// Runs reads a plan's verify runs.
	Runs RunReader
	// Timeline records a verified eradication on the case.
	Timeline CaseTimeline
	// Accounts lists the organisation's accounts for a playbook's
	// credential-scope (the classifier flags trust and shares leaving
	// them); nil leaves the flag off.
	Accounts AccountLister
	// Notes adds a playbook's scope note to the case; needed by Operate.
	Notes CaseNotes
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock defaults to time.Now.
	Clock func() time.Time
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *Config) CheckAndSetDefaults() error {
	var missing []string
	if c.Cases == nil {
		missing = append(missing, "Cases")
	}
	if c.Plans == nil {
		missing = append(missing, "Plans")
	}
	if c.Runs == nil {
		missing = append(missing, "Runs")
	}
	if c.Timeline == nil {
		missing = append(missing, "Timeline")
	}
	if len(missing) > 0 {
		return fmt.Errorf("eradicate: missing %s", strings.Join(missing, ", "))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Service builds and keeps eradication plans.
type Service struct{ cfg Config }

// New returns the service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg}, nil
}

// Plan builds a plan from the case's scope and stores it. The case must
// exist and its scope must have found at least one artifact.
func (s *Service) Plan(ctx context.Context, caseID, actor string, opt eradplan.Options) (*eradplan.Plan, error) {
	r, err := s.cfg.Cases.Report(ctx, caseID)
	if err != nil {
		return nil, fmt.Errorf("reading case %s: %w", caseID, err)
	}
	if r.Scope == nil || len(r.Scope.Artifacts) == 0 {
		return nil, fmt.Errorf("case %s: %w: run `firebreak scope key … --case %s` first", caseID, ErrNoScope, caseID)
	}
	p := &eradplan.Plan{ID: ids.New("erp"), CaseID: caseID, CreatedAt: s.cfg.Clock().UTC(), CreatedBy: actor,
		TerminateInstances: opt.TerminateInstances, Steps: eradplan.Build(r.Scope.Artifacts, opt), Rescope: Rescopes(r.Scope)}
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding plan: %w", err)
	}
	if err := s.cfg.Plans.SaveEradicationPlan(ctx, &store.EradicationPlan{ID: p.ID, CaseID: caseID, CreatedAt: p.CreatedAt,
		CreatedBy: actor, Steps: len(p.Steps), PlanJSON: doc}); err != nil {
		return nil, fmt.Errorf("storing plan: %w", err)
	}
	s.cfg.Logger.InfoContext(ctx, "eradication plan built", "plan", p.ID, "case", caseID, "steps", len(p.Steps), "by", actor)
	return p, nil
}

// Get reads a stored plan, or store.ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (*eradplan.Plan, error) {
	sp, err := s.cfg.Plans.GetEradicationPlan(ctx, id)
	if err != nil {
		return nil, err
	}
	var p eradplan.Plan
	if err := json.Unmarshal(sp.PlanJSON, &p); err != nil {
		return nil, fmt.Errorf("plan %s is stored unreadable: %w", id, err)
	}
	return &p, nil
}

// List returns a case's plans, newest first, without their steps.
func (s *Service) List(ctx context.Context, caseID string) ([]*store.EradicationPlan, error) {
	return s.cfg.Plans.ListEradicationPlans(ctx, caseID)
}
