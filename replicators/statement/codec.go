package statement

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/plugdb/plugdb/engines"
	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
)

// encode turns a statement into a log record stamped with the time now.
func encode(st replicators.Statement, now int64) (wal.Record, error) {
	ms := make([]*statementv1.Mutation, len(st.Mutations))
	for i, m := range st.Mutations {
		ms[i] = &statementv1.Mutation{Op: uint32(m.Op), Key: m.Key, Value: m.Value, Lsn: m.LSN}
	}
	payload, err := proto.Marshal(&statementv1.Mutations{Mutations: ms})
	if err != nil {
		return wal.Record{}, fmt.Errorf("encode statement %d..%d: %w", st.First(), st.Last(), err)
	}
	return wal.Record{Epoch: st.Epoch, First: st.First(), Last: st.Last(), Time: now, Payload: payload}, nil
}

// decode turns a log record back into its statement.
func decode(rec wal.Record) (replicators.Statement, error) {
	var ms statementv1.Mutations
	if err := proto.Unmarshal(rec.Payload, &ms); err != nil {
		return replicators.Statement{}, fmt.Errorf("decode statement %d..%d: %w", rec.First, rec.Last, err)
	}
	st := replicators.Statement{Epoch: rec.Epoch, Mutations: make([]engines.Mutation, len(ms.GetMutations()))}
	for i, m := range ms.GetMutations() {
		st.Mutations[i] = engines.Mutation{Op: engines.Op(m.GetOp()), Key: m.GetKey(), Value: m.GetValue(), LSN: m.GetLsn()}
	}
	if st.First() != rec.First || st.Last() != rec.Last {
		return replicators.Statement{}, fmt.Errorf("decode statement %d..%d: payload holds lsns %d..%d: %w", rec.First, rec.Last, st.First(), st.Last(), replicators.ErrInvalidArgument)
	}
	return st, nil
}

func toEntry(rec wal.Record) *statementv1.Entry {
	return &statementv1.Entry{Epoch: rec.Epoch, First: rec.First, Last: rec.Last, TimeUnixNano: rec.Time, Payload: rec.Payload}
}

func fromEntry(e *statementv1.Entry) wal.Record {
	return wal.Record{Epoch: e.GetEpoch(), First: e.GetFirst(), Last: e.GetLast(), Time: e.GetTimeUnixNano(), Payload: e.GetPayload()}
}

func toEpochs(es []wal.EpochStart) []*statementv1.EpochStart {
	out := make([]*statementv1.EpochStart, len(es))
	for i, e := range es {
		out[i] = &statementv1.EpochStart{Epoch: e.Epoch, Start: e.Start}
	}
	return out
}

func fromEpochs(es []*statementv1.EpochStart) []wal.EpochStart {
	out := make([]wal.EpochStart, len(es))
	for i, e := range es {
		out[i] = wal.EpochStart{Epoch: e.GetEpoch(), Start: e.GetStart()}
	}
	return out
}
