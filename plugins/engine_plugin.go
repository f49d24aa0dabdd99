package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/engines"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// EnginePlugin is the go-plugin GRPCPlugin of the engine kind. A plugin process
// sets Open; the host leaves it nil and dispenses an *EngineClient.
type EnginePlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Open opens the engine the plugin serves (plugin side only).
	Open engines.OpenFunc
	// Logger is handed to the engine (plugin side only).
	Logger hclog.Logger
}

var _ goplugin.GRPCPlugin = (*EnginePlugin)(nil)

// GRPCServer registers the engine service (plugin side).
func (p *EnginePlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	enginev1.RegisterEngineServer(s, newEngineServer(p.Open, p.Logger))
	return nil
}

// GRPCClient returns an *EngineClient over conn (host side).
func (p *EnginePlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return &EngineClient{rpc: enginev1.NewEngineClient(conn)}, nil
}

// EnginePluginSet is the versioned plugin set for the engine kind.
func EnginePluginSet(open engines.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		EngineProtocolVersion: {string(KindEngine): &EnginePlugin{Open: open, Logger: log}},
	}
}
