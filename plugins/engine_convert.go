package plugins

import (
	"github.com/plugdb/plugdb/engines"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

func capsToProto(c engines.Capabilities) *enginev1.Capabilities {
	return &enginev1.Capabilities{Durable: c.Durable, MaxKeySize: int64(c.MaxKeySize), MaxValueSize: int64(c.MaxValueSize)}
}

func capsFromProto(c *enginev1.Capabilities) engines.Capabilities {
	return engines.Capabilities{Durable: c.GetDurable(), MaxKeySize: int(c.GetMaxKeySize()), MaxValueSize: int(c.GetMaxValueSize())}
}

func ifacesToProto(i engines.Interfaces) *enginev1.Interfaces {
	return &enginev1.Interfaces{Scanner: i.Scanner, Snapshotter: i.Snapshotter, StatsReporter: i.StatsReporter, Flusher: i.Flusher}
}

// ifacesFromProto reads the interfaces of an OpenResponse; nil (a plugin
// built before optional interfaces) means all of them.
func ifacesFromProto(i *enginev1.Interfaces) engines.Interfaces {
	if i == nil {
		return engines.Interfaces{Scanner: true, Snapshotter: true, StatsReporter: true, Flusher: true}
	}
	return engines.Interfaces{Scanner: i.GetScanner(), Snapshotter: i.GetSnapshotter(), StatsReporter: i.GetStatsReporter(), Flusher: i.GetFlusher()}
}

func rowToProto(r engines.Row) *enginev1.Row {
	return &enginev1.Row{Key: r.Key, Value: r.Value, Lsn: r.LSN}
}

func rowFromProto(r *enginev1.Row) engines.Row {
	return engines.Row{Key: r.GetKey(), Value: r.GetValue(), LSN: r.GetLsn()}
}
