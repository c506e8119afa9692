package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/firebreak-ir/firebreak/controller/attest"
	"github.com/firebreak-ir/firebreak/controller/store"
)

// errTerminated closes the stream of an agent whose instance AWS reports
// terminated.
var errTerminated = errors.New("AWS reports the agent's instance terminated; the stream is closed")

// ForgetTerminated is why ForgetAgents and the terminated sweep forget an
// agent whose instance AWS reported terminated.
const ForgetTerminated = "terminated"

// stateTerminated is the EC2 instance state that marks an agent
// terminated. Only this state counts: an instance AWS no longer lists may
// be in another account or region than a token agent said, so "not found"
// proves nothing.
const stateTerminated = "terminated"

// TerminatedSweep is what one SweepTerminated did.
type TerminatedSweep struct {
	// Checked is how many agents' instances were looked up.
	Checked int
	// Terminated are the agents newly marked terminated.
	Terminated []string
	// Forgotten are the terminated agents forgotten, their period over.
	Forgotten []string
	// Failed is how many lookups failed (AWS unreachable, access denied);
	// those agents are looked up again at the next sweep.
	Failed int
	// LastError is the last lookup failure, for the log.
	LastError error
}

// SweepTerminated asks AWS, through instances (the EC2 API of each
// agent's account, as the responder role the workers use sees it), for
// the state of the instance each agent's certificate names, and marks
// terminated the agents whose instance AWS reports terminated: they are no
// longer offline, no run targets them, and their certificate is refused.
// Then, when forgetAfter is positive, it forgets the agents terminated for
// longer than forgetAfter; their runs, evidence and audit records stay.
// Both transitions are audited as the system's.
//
// Security-critical: the instance named is the one in the certificate the
// controller issued at enrollment (the agent's trusted facts), and its
// state is AWS's, never the agent's own word.
func (s *Service) SweepTerminated(ctx context.Context, instances attest.InstanceReader, forgetAfter time.Duration) (TerminatedSweep, error) {
	var sw TerminatedSweep
	all, err := s.Agents(ctx)
	if err != nil {
		return sw, err
	}
	now := s.cfg.Clock()
	for _, a := range all {
		if ctx.Err() != nil {
			return sw, ctx.Err()
		}
		if a.Terminated() {
			if forgetAfter > 0 && now.Sub(a.TerminatedAt) >= forgetAfter && !s.Connected(a.ID) {
				if err := s.Forget(ctx, a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return sw, err
				}
				s.cfg.Audit(ctx, "system", "agent.forget", a.ID, map[string]any{"hostname": a.Hostname, "why": ForgetTerminated,
					"instance_id": a.Facts.GetInstanceId(), "account": a.Facts.GetAccount(), "cert_serial": a.CertSerial,
					"terminated_at": a.TerminatedAt, "reason": "--forget-terminated-after " + forgetAfter.String()})
				sw.Forgotten = append(sw.Forgotten, a.ID)
			}
			continue
		}
		// A revoked agent stays revoked until an admin forgets it; the
		// terminated mark says nothing more about it.
		if a.Revoked {
			continue
		}
		account, region, instanceID := a.Facts.GetAccount(), a.Facts.GetRegion(), a.Facts.GetInstanceId()
		if account == "" || region == "" || instanceID == "" {
			continue
		}
		sw.Checked++
		in, err := instances.Instance(ctx, account, region, instanceID)
		if errors.Is(err, attest.ErrNoInstance) {
			continue
		}
		if err != nil {
			sw.Failed++
			sw.LastError = err
			continue
		}
		if in.State != stateTerminated {
			continue
		}
		if err := s.markTerminated(ctx, a.ID, in.State); err != nil {
			return sw, err
		}
		sw.Terminated = append(sw.Terminated, a.ID)
	}
	return sw, nil
}

// markTerminated records that AWS reports the agent's instance in state
// (terminated), closes a stream the agent still holds, and audits it.
func (s *Service) markTerminated(ctx context.Context, agentID, state string) error {
	// Read again: the agent may have been revoked or forgotten since the
	// sweep listed it.
	a, err := s.cfg.Store.GetAgent(ctx, agentID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if a.Terminated() || a.Revoked {
		return nil
	}
	a.TerminatedAt = s.cfg.Clock()
	if err := s.putAgent(ctx, a); err != nil {
		return err
	}
	// Security-critical: an instance AWS reports terminated runs no agent;
	// a stream on its certificate is held by someone else.
	closed := s.Disconnect(agentID, errTerminated)
	if n, ok := s.cfg.Dispatcher.(FactsNotifier); ok {
		n.AgentFactsChanged(agentID)
	}
	detail := map[string]any{"hostname": a.Hostname, "instance_id": a.Facts.GetInstanceId(), "account": a.Facts.GetAccount(),
		"region": a.Facts.GetRegion(), "instance_state": state, "source": "ec2:DescribeInstances", "closed_stream": closed}
	s.cfg.Audit(ctx, "system", "agent.terminated", agentID, detail)
	s.cfg.Logger.Info("agent marked terminated: AWS reports its instance terminated", "agent", agentID,
		"instance_id", a.Facts.GetInstanceId(), "account", a.Facts.GetAccount(), "closed_stream", closed)
	return nil
}

// RunTerminatedSweep sweeps every `every` until ctx ends, the first time
// one period after it starts (see SweepTerminated), logging a summary of
// the lookups that failed.
func (s *Service) RunTerminatedSweep(ctx context.Context, every time.Duration, instances attest.InstanceReader, forgetAfter time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sw, err := s.SweepTerminated(ctx, instances, forgetAfter)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.cfg.Logger.Warn("the terminated-instance sweep failed; it runs again", "every", every, "error", err)
		case sw.Failed > 0:
			s.cfg.Logger.Warn("the terminated-instance sweep could not read some instances from AWS; they are read again at the next sweep",
				"checked", sw.Checked, "failed", sw.Failed, "last_error", sw.LastError)
		}
	}
}
