package failoverbench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/firebreak-ir/firebreak/internal/assembly/fleetbench"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/plugins/noop"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// FleetOptions configures Fleet.
type FleetOptions struct {
	// Controllers is how many controller processes to run (at least 2).
	Controllers int
	// Agents is how many simulated agents to run.
	Agents int
	// Store is a postgres:// URL of an empty database; empty starts a
	// throwaway PostgreSQL.
	Store string
	// Executable is the firebreak binary the controllers run (default:
	// this process's own).
	Executable string
	// Progress receives one line per step (default: discarded).
	Progress io.Writer
}

// Fleet is `firebreak bench fleet --controllers N`: the cluster of Run
// (controller processes on one PostgreSQL, simulated agents spread over
// them), with no kill. One noop run over every agent is created through
// the first controller, which owns it; the tasks for the agents the others
// hold go through the routing between controllers, and their results come
// back the same way. It is timed from the run's creation, through the
// owner's WatchRun stream as an operator sees it, to the last result
// stored. The result has bench fleet's fields; controller_rss_bytes is the
// sum over the controllers.
func Fleet(ctx context.Context, fo FleetOptions) (res *fleetbench.Result, err error) {
	o := Options{Controllers: fo.Controllers, Agents: fo.Agents, Rounds: 1, Delay: time.Millisecond, Store: fo.Store,
		Executable: fo.Executable, Progress: fo.Progress}
	if err := o.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, finish, err := newBench(o, "firebreak-fleet-cluster-")
	if err != nil {
		return nil, err
	}
	defer func() { finish(err) }()
	up, stop, err := b.start(ctx, noop.Action{})
	if err != nil {
		return nil, err
	}
	defer stop()
	res = &fleetbench.Result{Agents: o.Agents, Action: "noop", ConnectAllMS: up.connectAllMS, SimulatedAgents: true,
		Controllers: o.Controllers, Store: "postgres"}
	for _, r := range up.rss {
		res.ControllerRSSBytes += r
	}
	res.ControllerRSSIdleBytes = up.rssIdle
	res.ControllerRSSPerAgentBytes = fleetbench.PerAgent(res.ControllerRSSBytes, res.ControllerRSSIdleBytes, o.Agents)

	creds, err := pki.LoadCreds(b.creds)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		return nil, err
	}
	owner := b.ctls[0]
	conn, err := grpc.NewClient("passthrough:///"+owner.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := operatorv1.NewOperatorServiceClient(conn)
	fmt.Fprintf(o.Progress, "one noop run over %d agents through %s…\n", o.Agents, owner.name)
	runStart := time.Now()
	created, err := client.CreateRun(ctx, &operatorv1.CreateRunRequest{Action: "noop", Selector: "all", Deadline: durationpb.New(5 * time.Minute)})
	if err != nil {
		return nil, fmt.Errorf("creating the run: %w", err)
	}
	res.CreateRunMS = ms(time.Since(runStart))
	watch, err := client.WatchRun(ctx, &operatorv1.WatchRunRequest{RunId: created.GetRun().GetId()})
	if err != nil {
		return nil, fmt.Errorf("watching the run: %w", err)
	}
	done := map[string]time.Duration{}
	record := func(t *operatorv1.Task) {
		if fleetbench.IsFinal(t.GetStatus()) {
			if _, ok := done[t.GetId()]; !ok {
				done[t.GetId()] = time.Since(runStart)
				if t.GetStatus() != agentv1.TaskStatus_TASK_STATUS_SUCCEEDED {
					res.Errors++
				}
			}
		}
	}
	for {
		m, err := watch.Recv()
		if err != nil {
			return nil, fmt.Errorf("watching the run: %w", err)
		}
		if t := m.GetTask(); t != nil {
			record(t)
			continue
		}
		for _, t := range m.GetSnapshot().GetTasks() {
			record(t)
		}
		if d := m.GetDone(); d != nil {
			for _, t := range d.GetTasks() {
				record(t)
			}
			break
		}
	}
	res.DispatchToAllDoneMS = ms(time.Since(runStart))
	lat := make([]time.Duration, 0, len(done))
	for _, d := range done {
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.P50MS, res.P99MS = ms(fleetbench.Percentile(lat, 50)), ms(fleetbench.Percentile(lat, 99))
	res.Errors += o.Agents - len(done)
	return res, nil
}
