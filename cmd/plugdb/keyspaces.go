package main

import (
	"bytes"
	"fmt"
	"text/tabwriter"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// keyspaceJSON is one keyspace in `plugdb status -o json`: its name, plugins
// (the replicator's options hold its ack mode) and partitions, as the
// top-level fields describe the keyspace asked for.
type keyspaceJSON struct {
	Name        string          `json:"name"`
	Engine      pluginJSON      `json:"engine"`
	Partitioner pluginJSON      `json:"partitioner"`
	Replicator  pluginJSON      `json:"replicator"`
	Partitions  []partitionJSON `json:"partitions"`
}

func keyspacesFromProto(ks []*plugdbv1.KeyspaceStatus) []keyspaceJSON {
	var out []keyspaceJSON
	for _, k := range ks {
		out = append(out, keyspaceJSON{Name: k.GetName(), Engine: pluginFromProto(k.GetEngine()),
			Partitioner: pluginFromProto(k.GetPartitioner()), Replicator: pluginFromProto(k.GetReplicator()),
			Partitions: statusFromProto(&plugdbv1.StatusResponse{Partitions: k.GetPartitions()}).Partitions})
	}
	return out
}

// writeKeyspacesText prints the keyspaces of a server that serves more than
// the default one, after the plugins line of `plugdb status`, e.g.
//
//	KEYSPACE  PARTITIONS  PARTITIONER      REPLICATOR                        ENGINE
//	default   2           hash (process)   statement (process; ack=semi-sync)  rowfile (process; sync=batch)
//	events    3           range (process)  statement (process; ack=async)      rowfile (process; sync=batch)
//
// (the table that follows lists the partitions of the keyspace asked for,
// the default one unless the request names another). Nothing is printed for
// one keyspace.
func writeKeyspacesText(buf *bytes.Buffer, ks []keyspaceJSON) {
	if len(ks) < 2 {
		return
	}
	tw := tabwriter.NewWriter(buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEYSPACE\tPARTITIONS\tPARTITIONER\tREPLICATOR\tENGINE")
	for _, k := range ks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", k.Name, len(k.Partitions), pluginText(k.Partitioner), pluginText(k.Replicator), pluginText(k.Engine))
	}
	tw.Flush()
	buf.WriteString("\n")
}
