package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/partitioners"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// PartitionerPlugin is the go-plugin GRPCPlugin of the partitioner kind. A
// plugin process sets Open; the host leaves it nil and dispenses a
// *PartitionerClient.
type PartitionerPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Open opens the partitioner the plugin serves (plugin side only).
	Open partitioners.OpenFunc
	// Logger is handed to the partitioner (plugin side only).
	Logger hclog.Logger
}

var _ goplugin.GRPCPlugin = (*PartitionerPlugin)(nil)

// GRPCServer registers the partitioner service (plugin side).
func (p *PartitionerPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	partitionerv1.RegisterPartitionerServer(s, newPartitionerServer(p.Open, p.Logger))
	return nil
}

// GRPCClient returns a *PartitionerClient over conn (host side).
func (p *PartitionerPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewPartitionerClient(conn), nil
}

// PartitionerPluginSet is the versioned plugin set for the partitioner kind.
func PartitionerPluginSet(open partitioners.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		PartitionerProtocolVersion: {string(KindPartitioner): &PartitionerPlugin{Open: open, Logger: log}},
	}
}
