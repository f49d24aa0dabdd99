package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/replicators"
)

// Replica is a node's replica: its role in the election and its
// replicator's status, read at each scrape.
type Replica struct {
	// Keyspace and Partition name the replica's partition.
	Keyspace  string
	Partition int
	// Role returns the replica's role (coord.RoleLeader or
	// coord.RoleFollower) and the epoch it last knew.
	Role func() (string, uint64)
	// Status returns the replicator's status: the followers' lag (on a
	// leader) and the log's fsync latencies, which the replicator, a plugin
	// process, counts itself.
	Status func(ctx context.Context) (replicators.Status, error)
}

// statusTimeout bounds the replicator's Status call of one scrape.
const statusTimeout = 2 * time.Second

// replicaCollector exposes a Replica:
//
//	plugdb_replica_is_leader{keyspace,partition}                             1 on the leader, 0 on a follower
//	plugdb_replica_epoch{keyspace,partition}                                 the epoch the replica last knew
//	plugdb_replication_in_sync_replicas{keyspace,partition}                  leader: in-sync replicas, itself included
//	plugdb_replication_lag_statements{keyspace,partition,follower}           leader: statements a follower has yet to persist
//	plugdb_replication_lag_seconds{keyspace,partition,follower}              leader: how long the oldest of them has waited
//	plugdb_replication_log_fsync_duration_seconds{keyspace,partition}        the statement log's fsyncs (histogram)
type replicaCollector struct {
	r                                     Replica
	isLeader, epoch, inSync, lag, lagTime *prometheus.Desc
	fsync                                 *prometheus.Desc
}

// RegisterReplica registers r's families with reg.
func RegisterReplica(reg prometheus.Registerer, r Replica) error {
	labels := []string{"keyspace", "partition"}
	follower := []string{"keyspace", "partition", "follower"}
	c := &replicaCollector{
		r:        r,
		isLeader: prometheus.NewDesc(Namespace+"_replica_is_leader", "1 if this replica leads its partition, 0 if it follows.", labels, nil),
		epoch:    prometheus.NewDesc(Namespace+"_replica_epoch", "The partition's epoch as this replica last knew it.", labels, nil),
		inSync: prometheus.NewDesc(Namespace+"_replication_in_sync_replicas",
			"On the leader: the replicas in sync, the leader included, as its replicator counts them.", labels, nil),
		lag: prometheus.NewDesc(Namespace+"_replication_lag_statements",
			"On the leader: statements the follower (its replicator's address) has yet to persist.", follower, nil),
		lagTime: prometheus.NewDesc(Namespace+"_replication_lag_seconds",
			"On the leader: how long the oldest statement the follower has yet to persist has waited.", follower, nil),
		fsync: prometheus.NewDesc(Namespace+"_replication_log_fsync_duration_seconds",
			"Latency of the replicator's statement log fsyncs (the commit point), as the replicator plugin counts them.", labels, nil),
	}
	return reg.Register(c)
}

// Describe implements prometheus.Collector.
func (c *replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.isLeader, c.epoch, c.inSync, c.lag, c.lagTime, c.fsync} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *replicaCollector) Collect(ch chan<- prometheus.Metric) {
	ks, part := c.r.Keyspace, strconv.Itoa(c.r.Partition)
	role, epoch := c.r.Role()
	leads := role == coord.RoleLeader
	ch <- prometheus.MustNewConstMetric(c.isLeader, prometheus.GaugeValue, boolValue(leads), ks, part)
	ch <- prometheus.MustNewConstMetric(c.epoch, prometheus.GaugeValue, float64(epoch), ks, part)
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	st, err := c.r.Status(ctx)
	cancel()
	if err != nil {
		return // a replicator plugin that restarts: its figures come back with it
	}
	if l := st.LogSync; len(l.Bounds) > 0 {
		buckets := make(map[float64]uint64, len(l.Bounds))
		for i, b := range l.Bounds {
			if i < len(l.Counts) {
				buckets[b] = l.Counts[i]
			}
		}
		ch <- prometheus.MustNewConstHistogram(c.fsync, l.Count, l.Sum.Seconds(), buckets, ks, part)
	}
	if !leads {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.inSync, prometheus.GaugeValue, float64(st.InSync), ks, part)
	for _, f := range st.Followers {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(f.LagStatements), ks, part, f.Addr)
		ch <- prometheus.MustNewConstMetric(c.lagTime, prometheus.GaugeValue, f.LagTime.Seconds(), ks, part, f.Addr)
	}
}
