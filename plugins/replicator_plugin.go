package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// ReplicatorPlugin is the go-plugin GRPCPlugin of the replicator kind. A
// plugin process sets Open; the host leaves it nil and dispenses a
// *ReplicatorClient.
type ReplicatorPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Open opens the replicator the plugin serves (plugin side only).
	Open replicators.OpenFunc
	// Logger is handed to the replicator (plugin side only).
	Logger hclog.Logger
}

var _ goplugin.GRPCPlugin = (*ReplicatorPlugin)(nil)

// GRPCServer registers the replicator service (plugin side).
func (p *ReplicatorPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	replicatorv1.RegisterReplicatorServer(s, newReplicatorServer(p.Open, p.Logger))
	return nil
}

// GRPCClient returns a *ReplicatorClient over conn (host side).
func (p *ReplicatorPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewReplicatorClient(conn), nil
}

// ReplicatorPluginSet is the versioned plugin set for the replicator kind.
func ReplicatorPluginSet(open replicators.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ReplicatorProtocolVersion: {string(KindReplicator): &ReplicatorPlugin{Open: open, Logger: log}},
	}
}
