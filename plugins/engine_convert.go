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

func rowToProto(r engines.Row) *enginev1.Row {
	return &enginev1.Row{Key: r.Key, Value: r.Value, Lsn: r.LSN}
}

func rowFromProto(r *enginev1.Row) engines.Row {
	return engines.Row{Key: r.GetKey(), Value: r.GetValue(), LSN: r.GetLsn()}
}
