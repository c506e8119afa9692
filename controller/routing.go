package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/firebreak-ir/firebreak/controller/cluster"
	"github.com/firebreak-ir/firebreak/controller/route"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	clusterv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/cluster/v1"
)

// buildRouter builds the router between this controller and the others
// of its cluster. It dials them with a client certificate the cluster's
// CA issues to this controller's id, so only the controllers of the
// cluster can route tasks (auth.Policy.Controller).
func (c *Controller) buildRouter() (*route.Router, error) {
	var dial func(string) (route.Peer, error)
	if c.Store.Shared() {
		key, err := pki.NewKey()
		if err != nil {
			return nil, err
		}
		// The certificate lives as long as the process: a controller's id
		// is new at each start.
		cert, err := c.CA.IssueClientForKey(key.Public(), pki.Identity{Kind: pki.KindController, Name: c.id}, 10*365*24*time.Hour)
		if err != nil {
			return nil, fmt.Errorf("issuing the controller's peer certificate: %w", err)
		}
		tlsCert := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
		creds := credentials.NewTLS(pki.ClientTLS(c.CA.Pool(), func() (*tls.Certificate, error) { return tlsCert, nil }))
		dial = func(addr string) (route.Peer, error) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
				grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 5 * time.Second}))
			if err != nil {
				return nil, err
			}
			return peerConn{PeerServiceClient: clusterv1.NewPeerServiceClient(conn), conn: conn}, nil
		}
	}
	return route.New(route.Config{ID: c.id, Store: c.Store, Dial: dial, LiveWithin: cluster.LiveWithin,
		Logger: c.cfg.Logger, Clock: c.cfg.Clock})
}

// peerConn is a PeerService client with its connection.
type peerConn struct {
	clusterv1.PeerServiceClient
	conn *grpc.ClientConn
}

func (p peerConn) Close() error { return p.conn.Close() }

// peerAddress is the address the other controllers dial: the configured
// one, or the listener's with an unspecified host replaced by this
// machine's first non-loopback address.
func peerAddress(configured string, lis net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(lis.String())
	if err != nil {
		return lis.String()
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return lis.String()
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return lis.String()
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return net.JoinHostPort(n.IP.String(), port)
		}
	}
	return lis.String()
}

// adoptRuns is the run-resumption singleton (cluster.LeaseRuns): while it
// holds the lease it claims, every heartbeat, the active runs whose owner's
// heartbeat stopped, and its dispatcher drives them from then on. The claim
// is fenced by the lease and conditional on the owner it read.
func (c *Controller) adoptRuns(ctx context.Context) error {
	t := time.NewTicker(cluster.HeartbeatEvery)
	defer t.Stop()
	for {
		n, err := c.Dispatcher.Adopt(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.cfg.Logger.Warn("adopting the runs of stopped controllers failed; trying again", "error", err)
		case n > 0:
			telemetry.RouteCorrected("run", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
