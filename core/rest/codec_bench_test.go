package rest

import (
	"testing"

	"google.golang.org/protobuf/proto"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// benchMessages are the REST path's typical messages: a Get/Scan row and a Status.
var benchMessages = []struct {
	name string
	msg  proto.Message
}{
	{"KeyValue", &plugdbv1.KeyValue{Key: []byte("user:12345"), Value: []byte(`{"name":"Ada","langs":["en","fr"]}`), Lsn: 1 << 40}},
	{"KeyValueBinary", &plugdbv1.KeyValue{Key: []byte("blob:1"), Value: []byte{0xff, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Lsn: 7}},
	{"Status", &plugdbv1.StatusResponse{
		Cluster: "dev",
		Engine:  &plugdbv1.Plugin{Plugin: "rowfile", Mode: "plugin", Options: map[string]string{"sync": "batch", "dir": "/var/lib/plugdb"}},
		Partitions: []*plugdbv1.PartitionStatus{
			{Partition: 0, Epoch: 3, Replicas: []*plugdbv1.Replica{
				{Partition: 0, Addr: "10.0.0.1:7070", Role: "leader", Epoch: 3, AppliedLsn: 123456, Keys: 1000, Bytes: 1 << 20},
				{Partition: 0, Addr: "10.0.0.2:7070", Role: "follower", Epoch: 3, AppliedLsn: 123450, Keys: 999, Bytes: 1 << 20, Isr: true}}},
			{Partition: 1, Epoch: 2, Replicas: []*plugdbv1.Replica{
				{Partition: 1, Addr: "10.0.0.3:7070", Role: "leader", Epoch: 2, AppliedLsn: 654321, Keys: 2000, Bytes: 2 << 20}}},
		},
	}},
}

func BenchmarkMarshal(b *testing.B) {
	for _, bm := range benchMessages {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := (Marshaler{}).Marshal(bm.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	for _, bm := range benchMessages {
		data, err := Marshaler{}.Marshal(bm.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			m := bm.msg.ProtoReflect().New().Interface()
			for i := 0; i < b.N; i++ {
				if err := (Marshaler{}).Unmarshal(data, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
