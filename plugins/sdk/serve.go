package sdk

import (
	"context"
	"net"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/test/bufconn"

	"github.com/firebreak-ir/firebreak/internal/rpcbuf"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Serve runs the action as a go-plugin plugin process. It is the whole body
// of a plugin's main function and returns when the agent stops the plugin.
// Logs go to stderr as JSON; stdout belongs to the go-plugin handshake.
func Serve(a Action) {
	name, version := "plugin", ""
	if d, err := a.Describe(context.Background()); err == nil {
		name, version = d.GetName(), d.GetVersion()
	}
	// The agent passes its telemetry environment on (and its own identity
	// in OTEL_RESOURCE_ATTRIBUTES). Spans are flushed when the agent stops
	// the plugin, within the grace go-plugin gives before it kills.
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "firebreak-plugin-" + name, Version: version})
	if err == nil {
		defer tel.Shutdown()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: a}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(TraceFilter))), experimental.BufferPool(rpcbuf.Shared))
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       name,
			Output:     os.Stderr,
			JSONFormat: true,
			Level:      hclog.Info,
		}),
	})
}

// ServeInMemory serves a built-in action over the same gRPC contract as a
// plugin process, through an in-memory connection. The returned stop
// function closes the connection and the server.
func ServeInMemory(a Action) (*Client, func(), error) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(experimental.BufferPool(rpcbuf.Shared))
	pluginv1.RegisterActionPluginServiceServer(srv, &server{action: a})
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///builtin",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()), experimental.WithBufferPool(rpcbuf.Shared))
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	stop := func() {
		_ = conn.Close()
		srv.Stop()
	}
	return NewClient(pluginv1.NewActionPluginServiceClient(conn)), stop, nil
}
