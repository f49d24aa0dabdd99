package main

import (
	"bytes"
	"fmt"
	"text/tabwriter"

	"github.com/plugdb/plugdb/core/api"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// keyspaceJSON is one keyspace in `plugdb status -o json` (as in GET
// /v1/status): its name, plugins and partitions, as the top-level fields
// describe the keyspace asked for.
type keyspaceJSON struct {
	Name        string          `json:"name"`
	Engine      pluginJSON      `json:"engine"`
	Partitioner pluginJSON      `json:"partitioner"`
	Replicator  pluginJSON      `json:"replicator"`
	Partitions  []partitionJSON `json:"partitions"`
	// LayoutVersion is the keyspace's layout version; Reshard its move in
	// progress, if any (docs/resharding.md).
	LayoutVersion uint64       `json:"layout_version,omitempty"`
	Reshard       *reshardJSON `json:"reshard,omitempty"`
}

// reshardJSON is a keyspace's move in progress.
type reshardJSON struct {
	State           string `json:"state"`
	FromPartitions  uint32 `json:"from_partitions"`
	FromPartitioner string `json:"from_partitioner"`
	ToPartitions    uint32 `json:"to_partitions"`
	ToPartitioner   string `json:"to_partitioner"`
	Started         string `json:"started"`
}

func reshardFromProto(r *plugdbv1.ReshardStatus) *reshardJSON {
	if r == nil {
		return nil
	}
	return &reshardJSON{State: r.GetState(), FromPartitions: r.GetFromPartitions(), FromPartitioner: r.GetFromPartitioner(),
		ToPartitions: r.GetToPartitions(), ToPartitioner: r.GetToPartitioner(), Started: r.GetStarted()}
}

func keyspacesFromProto(ks []*plugdbv1.KeyspaceStatus) []keyspaceJSON {
	out := []keyspaceJSON{}
	for _, k := range ks {
		out = append(out, keyspaceJSON{
			Name:          k.GetName(),
			Engine:        pluginFromProto(k.GetEngine()),
			Partitioner:   pluginFromProto(k.GetPartitioner()),
			Replicator:    pluginFromProto(k.GetReplicator()),
			Partitions:    partitionsFromProto(k.GetPartitions()),
			LayoutVersion: k.GetLayoutVersion(),
			Reshard:       reshardFromProto(k.GetReshard()),
		})
	}
	return out
}

// writeKeyspacesText prints the keyspaces part of `plugdb status`, after the
// cluster line: for a server of several keyspaces a table of them,
//
//	KEYSPACE  PARTITIONS  PARTITIONER      REPLICATOR                          ENGINE
//	default   2           hash (process)   statement (process; ack=semi-sync)  rowfile (process; sync=batch)
//	events    3           range (process)  statement (process; ack=async)      memory (process)
//
// and then, whatever their number, the line naming the keyspace that the rest
// of the output describes (keyspace; "" is the default one), and its move
// to another layout while one runs:
//
//	keyspace: default
//	reshard: fenced, 2 partitions (hash) → 3 (hash), since 2026-12-06T14:00:00Z
//
// Nothing for a server that lists no keyspaces.
func writeKeyspacesText(buf *bytes.Buffer, ks []keyspaceJSON, keyspace string) error {
	if len(ks) == 0 {
		return nil
	}
	if len(ks) > 1 {
		buf.WriteString("\n")
		tw := tabwriter.NewWriter(buf, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEYSPACE\tPARTITIONS\tPARTITIONER\tREPLICATOR\tENGINE")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", orDash(k.Name), len(k.Partitions),
				pluginText(k.Partitioner), pluginText(k.Replicator), pluginText(k.Engine))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		buf.WriteString("\n")
	}
	if keyspace == "" {
		keyspace = api.DefaultKeyspace
	}
	fmt.Fprintf(buf, "keyspace: %s\n", keyspace)
	for _, k := range ks {
		if k.Name == keyspace && k.Reshard != nil {
			r := k.Reshard
			fmt.Fprintf(buf, "reshard: %s, %d partitions (%s) → %d (%s), since %s\n",
				r.State, r.FromPartitions, r.FromPartitioner, r.ToPartitions, r.ToPartitioner, r.Started)
		}
	}
	return nil
}
