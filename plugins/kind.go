package plugins

import (
	"context"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/replicators"
)

// A kind's go-plugin GRPCPlugin and versioned plugin set, written once
// (kindPlugin, pluginSet), and the three kinds' instances of them. Each kind
// keeps only what is its own: its OpenFunc, its protocol version
// (handshake.go), the call registering its service (its kind's serve, next to
// its server) and its client's constructor (its kind's client, next to its
// client).

// kind is what the GRPCPlugin of a kind needs of it; O is the kind's OpenFunc.
// A kind is a struct{} type, so kindPlugin calls its methods on the zero value.
type kind[O any] interface {
	// serve registers the kind's service, serving what open opens (plugin side).
	serve(s *grpc.Server, open O, log hclog.Logger)
	// client returns the kind's client over conn (host side).
	client(conn *grpc.ClientConn) any
}

// kindPlugin is the go-plugin GRPCPlugin of kind K. A plugin process sets
// Open; the host leaves it nil and dispenses K's client. The exported plugin
// types (EnginePlugin, PartitionerPlugin, ReplicatorPlugin) are its instances.
type kindPlugin[O any, K kind[O]] struct {
	goplugin.NetRPCUnsupportedPlugin
	// Open opens the instance the plugin serves (plugin side only).
	Open O
	// Logger is handed to the instance (plugin side only).
	Logger hclog.Logger
}

// GRPCServer registers the kind's service (plugin side).
func (p *kindPlugin[O, K]) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	var k K
	k.serve(s, p.Open, p.Logger)
	return nil
}

// GRPCClient returns the kind's client over conn (host side).
func (p *kindPlugin[O, K]) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	var k K
	return k.client(conn), nil
}

// pluginSet is the versioned plugin set of kind K: protocol version to the one
// plugin, dispensed under the kind's name.
func pluginSet[O any, K kind[O]](version int, name Kind, open O, log hclog.Logger) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		version: {string(name): &kindPlugin[O, K]{Open: open, Logger: log}},
	}
}

// The kinds, as kindPlugin's K.
type (
	engineKind      struct{}
	partitionerKind struct{}
	replicatorKind  struct{}
)

// EnginePlugin, PartitionerPlugin and ReplicatorPlugin are the go-plugin
// GRPCPlugins of the three kinds. A plugin process sets Open; the host leaves
// it nil and dispenses the kind's client (*EngineClient, *PartitionerClient,
// *ReplicatorClient).
type (
	EnginePlugin      = kindPlugin[engines.OpenFunc, engineKind]
	PartitionerPlugin = kindPlugin[partitioners.OpenFunc, partitionerKind]
	ReplicatorPlugin  = kindPlugin[replicators.OpenFunc, replicatorKind]
)

var (
	_ goplugin.GRPCPlugin = (*EnginePlugin)(nil)
	_ goplugin.GRPCPlugin = (*PartitionerPlugin)(nil)
	_ goplugin.GRPCPlugin = (*ReplicatorPlugin)(nil)
)

// EnginePluginSet is the versioned plugin set for the engine kind.
func EnginePluginSet(open engines.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return pluginSet[engines.OpenFunc, engineKind](EngineProtocolVersion, KindEngine, open, log)
}

// PartitionerPluginSet is the versioned plugin set for the partitioner kind.
func PartitionerPluginSet(open partitioners.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return pluginSet[partitioners.OpenFunc, partitionerKind](PartitionerProtocolVersion, KindPartitioner, open, log)
}

// ReplicatorPluginSet is the versioned plugin set for the replicator kind.
func ReplicatorPluginSet(open replicators.OpenFunc, log hclog.Logger) map[int]goplugin.PluginSet {
	return pluginSet[replicators.OpenFunc, replicatorKind](ReplicatorProtocolVersion, KindReplicator, open, log)
}
