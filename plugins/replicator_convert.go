package plugins

import (
	"time"

	replicatorv1 "github.com/plugdb/plugdb/proto/plugdb/replicator/v1"
	"github.com/plugdb/plugdb/replicators"
)

// statementToProto packs st's mutations into one blob (packed.go).
func statementToProto(st replicators.Statement) *replicatorv1.Statement {
	return &replicatorv1.Statement{
		Epoch:     st.Epoch,
		Mutations: appendMutations(make([]byte, 0, mutationsSize(st.Mutations)), st.Mutations),
	}
}

// statementFromProto unpacks a statement; its keys and values are sub-slices
// of the message's blob, which the receiver owns.
func statementFromProto(st *replicatorv1.Statement) (replicators.Statement, error) {
	muts, err := decodeMutations(st.GetMutations())
	if err != nil {
		return replicators.Statement{}, err
	}
	if len(muts) == 0 {
		muts = nil
	}
	return replicators.Statement{Epoch: st.GetEpoch(), Mutations: muts}, nil
}

func ackToProto(a replicators.Ack) replicatorv1.Ack   { return replicatorv1.Ack(a) }
func ackFromProto(a replicatorv1.Ack) replicators.Ack { return replicators.Ack(a) }

func peersToProto(peers []replicators.Peer) []*replicatorv1.Peer {
	out := make([]*replicatorv1.Peer, len(peers))
	for i, p := range peers {
		out[i] = &replicatorv1.Peer{Addr: p.Addr, Isr: p.ISR}
	}
	return out
}

func peersFromProto(peers []*replicatorv1.Peer) []replicators.Peer {
	if len(peers) == 0 {
		return nil
	}
	out := make([]replicators.Peer, len(peers))
	for i, p := range peers {
		out[i] = replicators.Peer{Addr: p.GetAddr(), ISR: p.GetIsr()}
	}
	return out
}

func statusToProto(st replicators.Status) *replicatorv1.StatusResponse {
	out := &replicatorv1.StatusResponse{
		Role: st.Role, Epoch: st.Epoch, LogStart: st.LogStart, LogEnd: st.LogEnd, Commit: st.Commit,
		Ack: ackToProto(st.Ack), Fallback: st.Fallback, InSync: int32(st.InSync), AckNeeds: int32(st.AckNeeds), ReplicaSet: int32(st.ReplicaSet),
	}
	for _, f := range st.Followers {
		out.Followers = append(out.Followers, &replicatorv1.FollowerStatus{
			Addr: f.Addr, Isr: f.ISR, InSync: f.InSync, Connected: f.Connected,
			PersistedLsn: f.PersistedLSN, AppliedLsn: f.AppliedLSN,
			LagStatements: f.LagStatements, LagTimeNanos: int64(f.LagTime), Error: f.Error,
		})
	}
	if l := st.LogSync; l.Count > 0 || len(l.Bounds) > 0 {
		out.LogSync = &replicatorv1.Latency{Bounds: l.Bounds, Counts: l.Counts, Count: l.Count, SumSeconds: l.Sum.Seconds()}
	}
	return out
}

func statusFromProto(st *replicatorv1.StatusResponse) replicators.Status {
	out := replicators.Status{
		Role: st.GetRole(), Epoch: st.GetEpoch(), LogStart: st.GetLogStart(), LogEnd: st.GetLogEnd(), Commit: st.GetCommit(),
		Ack: ackFromProto(st.GetAck()), Fallback: st.GetFallback(), InSync: int(st.GetInSync()), AckNeeds: int(st.GetAckNeeds()), ReplicaSet: int(st.GetReplicaSet()),
	}
	for _, f := range st.GetFollowers() {
		out.Followers = append(out.Followers, replicators.FollowerStatus{
			Addr: f.GetAddr(), ISR: f.GetIsr(), InSync: f.GetInSync(), Connected: f.GetConnected(),
			PersistedLSN: f.GetPersistedLsn(), AppliedLSN: f.GetAppliedLsn(),
			LagStatements: f.GetLagStatements(), LagTime: time.Duration(f.GetLagTimeNanos()), Error: f.GetError(),
		})
	}
	if l := st.GetLogSync(); l != nil {
		out.LogSync = replicators.Latency{Bounds: l.GetBounds(), Counts: l.GetCounts(), Count: l.GetCount(),
			Sum: time.Duration(l.GetSumSeconds() * float64(time.Second))}
	}
	return out
}

func tlsToProto(f replicators.TLSFiles) *replicatorv1.TLSFiles {
	if f == (replicators.TLSFiles{}) {
		return nil
	}
	return &replicatorv1.TLSFiles{Ca: f.CA, Cert: f.Cert, Key: f.Key}
}

func tlsFromProto(f *replicatorv1.TLSFiles) replicators.TLSFiles {
	return replicators.TLSFiles{CA: f.GetCa(), Cert: f.GetCert(), Key: f.GetKey()}
}
