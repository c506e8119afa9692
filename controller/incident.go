package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"

	"google.golang.org/grpc"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/eradicate"
	"github.com/firebreak-ir/firebreak/controller/evidence"
	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/controller/playbookrun"
	"github.com/firebreak-ir/firebreak/controller/store"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// IncidentConfig configures the incident side of the controller: cases,
// playbooks and findings intake.
type IncidentConfig struct {
	// PlaybookDir holds playbook files (*.yaml) besides the built-in ones;
	// a file's playbook replaces a built-in one of the same name.
	PlaybookDir string
	// RulesFile maps findings to playbooks; its rules come before the
	// built-in rules.
	RulesFile string
	// NoDefaultRules leaves the built-in rules out.
	NoDefaultRules bool
	// EventsListen is the HOST:PORT of the HTTPS events endpoint
	// (POST /v1/events); empty serves none.
	EventsListen string
	// EventsSecretFile holds the shared secret an EventBridge API
	// destination sends in the X-Firebreak-Secret header; empty accepts
	// operator client certificates only.
	EventsSecretFile string
	// SQSQueue is the URL of an SQS queue to poll for finding events.
	SQSQueue string
	// SQSClient overrides the SQS client (tests, the lab); nil builds one
	// from the AWS SDK's standard environment.
	SQSClient intake.SQSAPI
}

// Incident is the incident side of a controller: cases, the playbook
// executor and the findings intake. Controller embeds it, so the lab and
// tests reach them as c.Cases, c.Playbooks and c.Intake.
type Incident struct {
	// Cases keeps the incident cases.
	Cases *cases.Service
	// Playbooks executes playbook runs.
	Playbooks *playbookrun.Executor
	// Intake takes findings in: Intake.Submit is the path of the events
	// endpoint, the SQS poller and `firebreak findings send`.
	Intake *intake.Intake

	parts incidentParts
}

// incidentParts are the unexported pieces the incident side runs.
type incidentParts struct {
	caseServer     *cases.Server
	eradicate      *eradicate.Server
	library        *playbookrun.Library
	playbookServer *playbookrun.Server
	eventsLis      net.Listener
	eventsTLS      *tls.Config
	eventsHandler  http.Handler
	sqs            *intake.SQSPoller
}

// playbookLibrary is the controller's one playbook library: the playbook
// executor, the intake and the readiness review read the same files.
func (c *Controller) playbookLibrary() *playbookrun.Library {
	if c.Incident.parts.library == nil {
		c.Incident.parts.library = &playbookrun.Library{Dir: c.cfg.Incident.PlaybookDir}
	}
	return c.Incident.parts.library
}

// buildIncident builds the cases, the playbook executor and the intake.
// It needs the store, the operator service and the dispatcher.
func (c *Controller) buildIncident(ctx context.Context) error {
	cfg := c.cfg.Incident
	var err error
	cfgCases := cases.Config{Store: c.Store, Runs: c.Store, Audit: c.Audit, Logger: c.cfg.Logger, Clock: c.cfg.Clock}
	if c.Evidence != nil {
		cfgCases.Evidence = evidenceCatalog{c.Evidence}
	}
	c.Cases, err = cases.New(cfgCases)
	if err != nil {
		return err
	}
	library := c.playbookLibrary()
	if _, err := library.List(); err != nil {
		return err
	}
	// The eradication service builds and judges plans, and runs the
	// playbooks' operation steps.
	plans, err := eradicate.New(eradicate.Config{Cases: c.Cases, Plans: c.Store, Runs: c.Store, Timeline: c.Cases, Accounts: c.Store, Notes: c.Cases,
		Logger: c.cfg.Logger, Clock: c.cfg.Clock})
	if err != nil {
		return err
	}
	// Playbooks are validated against the trusted action catalogue only.
	known := c.Actions.Descriptions()
	c.Playbooks, err = playbookrun.New(playbookrun.Config{Store: c.Store, Library: library, Cases: c.Cases, Planner: c.Planner,
		Actions: c.Operator, KnownActions: playbookrun.Catalog(known), Watcher: c.Dispatcher, RunStore: c.Store, Audit: c.Audit, Operations: plans,
		Logger: c.cfg.Logger, Clock: c.cfg.Clock, Rescan: c.leaseTTL() / 3})
	if err != nil {
		return err
	}
	c.Cases.SetActivePlaybookRuns(c.Playbooks.ActiveForCase)
	rules, err := intake.LoadRules(cfg.RulesFile, !cfg.NoDefaultRules)
	if err != nil {
		return fmt.Errorf("loading the finding rules: %w", err)
	}
	c.Intake, err = intake.New(intake.Config{Cases: c.Cases, Playbooks: c.Playbooks, Library: library, Rules: rules, Audit: c.Audit,
		Logger: c.cfg.Logger, Clock: c.cfg.Clock})
	if err != nil {
		return err
	}
	c.Incident.parts.caseServer = cases.NewServer(c.Cases, c.Intake)
	c.Incident.parts.eradicate = eradicate.NewServer(plans)
	c.Incident.parts.playbookServer = playbookrun.NewServer(c.Playbooks)
	if cfg.SQSQueue != "" {
		client := cfg.SQSClient
		if client == nil {
			if client, err = intake.NewSQSClient(ctx, cfg.SQSQueue); err != nil {
				return err
			}
		}
		if c.Incident.parts.sqs, err = intake.NewSQSPoller(intake.SQSConfig{QueueURL: cfg.SQSQueue, Client: client, Intake: c.Intake,
			Logger: c.cfg.Logger}); err != nil {
			return err
		}
	}
	return nil
}

// evidenceCatalog shows the evidence store's items, hashes and custody in
// case reports.
type evidenceCatalog struct{ s *evidence.Service }

// DescribeEvidence implements cases.EvidenceCatalog.
func (e evidenceCatalog) DescribeEvidence(ctx context.Context, ids []string) ([]*cases.Evidence, error) {
	var out []*cases.Evidence
	for _, id := range ids {
		it, err := e.s.GetItem(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		entries, chk, err := e.s.CheckItemCustody(ctx, it)
		if err != nil {
			return nil, err
		}
		ev := &cases.Evidence{ID: it.ID, Name: it.Name, SHA256: it.SHA256, Size: it.Size, TaskID: it.TaskID, RunID: it.RunID, AgentID: it.AgentID,
			Hostname: it.Hostname, CollectedAt: it.StoredAt, CustodyIntact: chk.OK}
		for _, ce := range entries {
			ev.Custody = append(ev.Custody, cases.CustodyEvent{At: ce.At, Actor: ce.Actor, Action: ce.Action, Detail: string(ce.Detail)})
		}
		out = append(out, ev)
	}
	return out, nil
}

// listenEvents binds the events endpoint, with the controller's serving
// certificate.
func (c *Controller) listenEvents(cert tls.Certificate) error {
	cfg := c.cfg.Incident
	if cfg.EventsListen == "" {
		return nil
	}
	var secret []byte
	if cfg.EventsSecretFile != "" {
		var err error
		if secret, err = intake.ReadSecretFile(cfg.EventsSecretFile); err != nil {
			return err
		}
	}
	lis, err := net.Listen("tcp", cfg.EventsListen)
	if err != nil {
		return fmt.Errorf("listening for events on %s: %w", cfg.EventsListen, err)
	}
	c.Incident.parts.eventsLis = lis
	c.Incident.parts.eventsTLS = intake.EventsTLS(c.CA, cert)
	c.Incident.parts.eventsHandler = c.Intake.Handler(intake.HandlerConfig{Operators: c.Store, Secret: secret, Logger: c.cfg.Logger})
	return nil
}

// EventsAddr is the address of the HTTPS events endpoint, empty when none
// is served.
func (c *Controller) EventsAddr() string {
	if c.Incident.parts.eventsLis == nil {
		return ""
	}
	return c.Incident.parts.eventsLis.Addr().String()
}

// withIncidentPolicy returns an operator policy with the incident
// services' methods added.
func withIncidentPolicy(p map[string]operatorv1.OperatorRole) map[string]operatorv1.OperatorRole {
	out := maps.Clone(p)
	maps.Copy(out, cases.Policy)
	maps.Copy(out, playbookrun.Policy)
	maps.Copy(out, eradicate.Policy)
	return out
}

// registerIncident registers the incident services.
func (c *Controller) registerIncident(s *grpc.Server) {
	operatorv1.RegisterCaseServiceServer(s, c.Incident.parts.caseServer)
	operatorv1.RegisterPlaybookServiceServer(s, c.Incident.parts.playbookServer)
	operatorv1.RegisterEradicationServiceServer(s, c.Incident.parts.eradicate)
}

// runIncident starts the events endpoint. The playbook executor and the
// SQS poller run once in the cluster, under their leases (see
// buildSingletons).
func (c *Controller) runIncident(run func(name string, f func(context.Context) error)) {
	if c.Incident.parts.eventsLis != nil {
		c.cfg.Logger.Info("serving findings", "events", "https://"+c.Incident.parts.eventsLis.Addr().String()+intake.EventsPath)
		run("events endpoint", func(ctx context.Context) error {
			return intake.Serve(ctx, c.Incident.parts.eventsLis, c.Incident.parts.eventsTLS, c.Incident.parts.eventsHandler, c.cfg.Logger)
		})
	}
}
