package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// PluginName is the single plugin kind every Firebreak plugin binary serves.
const PluginName = "action"

// Handshake is the go-plugin handshake shared by the agent and every plugin.
// The cookie is not a security measure: it only stops a plugin binary from
// being run by hand by mistake. Integrity comes from the manifest checksum.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "FIREBREAK_PLUGIN",
	MagicCookieValue: "4f0c7e2a-response-action",
}

// PluginMap is the go-plugin plugin set for the agent's side: it only ever
// dispenses ActionClients.
var PluginMap = map[string]plugin.Plugin{PluginName: &GRPCPlugin{}}

// GRPCPlugin adapts an Action to go-plugin's gRPC transport. Impl is set on
// the plugin's side and unused on the agent's.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the action served by a plugin process.
	Impl Action
}

// GRPCServer registers the action's gRPC service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterActionPluginServiceServer(s, &server{action: p.Impl})
	return nil
}

// GRPCClient returns the agent-side client for the action.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(pluginv1.NewActionPluginServiceClient(c)), nil
}
