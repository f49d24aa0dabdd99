// Package plugins is plugdb's plugin SDK over hashicorp/go-plugin: the handshake,
// the GRPCPlugin types, the gRPC shims between the Go contracts (engines,
// partitioners, replicators) and their services in proto/, and Serve, the one call a
// plugin's main makes.
package plugins

import goplugin "github.com/hashicorp/go-plugin"

// Kind names a kind of plugin; it is the name a plugin set dispenses.
type Kind string

// The kinds of plugin plugdb loads.
const (
	KindEngine      Kind = "engine"
	KindPartitioner Kind = "partitioner"
	KindReplicator  Kind = "replicator"
)

// EngineProtocolVersion is the major version of the engine protocol
// (proto/plugdb/engine/v1). A plugin of another version is refused.
const EngineProtocolVersion = 1

// PartitionerProtocolVersion is the major version of the partitioner protocol
// (proto/plugdb/partitioner/v1). A plugin of another version is refused.
const PartitionerProtocolVersion = 1

// ReplicatorProtocolVersion is the major version of the replicator protocol
// (proto/plugdb/replicator/v1). A plugin of another version is refused.
const ReplicatorProtocolVersion = 1

// Handshake is shared by every plugdb plugin. The magic cookie is a UX check (it
// stops a plugin binary run by hand from waiting forever), not security.
var Handshake = goplugin.HandshakeConfig{
	MagicCookieKey:   "PLUGDB_PLUGIN",
	MagicCookieValue: "d3b6a8f0-plugdb-plugin",
}
