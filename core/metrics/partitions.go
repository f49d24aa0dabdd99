package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugdb/plugdb/core/coord"
)

// Topology is a keyspace's partitions as ZooKeeper shows them: what
// coord.Topology keeps.
type Topology interface {
	Partitions() int
	Partition(n int) coord.View
	Changed() <-chan struct{}
}

// Session is a ZooKeeper client's state: what coord.Client reports.
type Session interface {
	State() (zk.State, int64, time.Time)
}

// Keyspace is one keyspace a process watches in ZooKeeper: the router
// watches every partition of each of its keyspaces, a node its own
// partition.
type Keyspace struct {
	// Name is the keyspace's name ("default" for the top-level one).
	Name string
	// Topology returns the keyspace's current topology (the router's may be
	// replaced by a reshard); nil while there is none.
	Topology func() Topology
	// Session is the keyspace's ZooKeeper client.
	Session Session
	// Partition is the one partition to watch (a node's); -1: every one.
	Partition int
	// OnLeaderChange, if set, hears of each leader change Watch counts.
	OnLeaderChange func(LeaderChange)
}

// LeaderChange is a partition's leader change as Watch saw it: another
// node or a new epoch.
type LeaderChange struct {
	Keyspace  string
	Partition int
	From, To  string // the old and the new leader's addresses
	FromEpoch uint64
	Epoch     uint64 // the new leader's
}

// Partitions exposes what ZooKeeper says of the partitions of some
// keyspaces, and whether their sessions are up:
//
//	plugdb_partition_has_leader{keyspace,partition}           1 if the partition has a leader
//	plugdb_partition_leader_epoch{keyspace,partition}         the leader's epoch
//	plugdb_partition_isr_size{keyspace,partition}             replicas in the in-sync set
//	plugdb_partition_members{keyspace,partition}              registered replicas
//	plugdb_partition_leader_changes_total{keyspace,partition} leader changes seen (Watch)
//	plugdb_zookeeper_session_up{keyspace}                      1 while the client has a session
//	plugdb_zookeeper_session_state{keyspace,state}             1 for the client's state, 0 for the others
type Partitions struct {
	keyspaces []Keyspace
	changes   *prometheus.CounterVec

	hasLeader, epoch, isr, members, sessionUp, sessionState *prometheus.Desc
}

// sessionStates are the states plugdb_zookeeper_session_state lists.
var sessionStates = []zk.State{zk.StateDisconnected, zk.StateConnecting, zk.StateConnected, zk.StateHasSession, zk.StateExpired, zk.StateAuthFailed}

// stateName is a zk.State as a label value: "has_session", "connecting", ….
func stateName(s zk.State) string {
	name := strings.TrimPrefix(s.String(), "State")
	var b strings.Builder
	for i, r := range name {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NewPartitions registers the partition and session families of keyspaces
// with reg.
func NewPartitions(reg prometheus.Registerer, keyspaces ...Keyspace) (*Partitions, error) {
	labels := []string{"keyspace", "partition"}
	p := &Partitions{
		keyspaces: keyspaces,
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "partition_leader_changes_total",
			Help: "Changes of the partition's leader (a new leader or epoch) seen in ZooKeeper since the process started."}, labels),
		hasLeader: prometheus.NewDesc(Namespace+"_partition_has_leader", "1 if the partition has a leader in ZooKeeper, 0 if not.", labels, nil),
		epoch:     prometheus.NewDesc(Namespace+"_partition_leader_epoch", "The epoch of the partition's leader (0: none yet).", labels, nil),
		isr:       prometheus.NewDesc(Namespace+"_partition_isr_size", "Replicas in the partition's in-sync set, as its leader recorded it.", labels, nil),
		members:   prometheus.NewDesc(Namespace+"_partition_members", "Replicas of the partition registered in ZooKeeper.", labels, nil),
		sessionUp: prometheus.NewDesc(Namespace+"_zookeeper_session_up", "1 while the keyspace's ZooKeeper client has a session, 0 if not.", []string{"keyspace"}, nil),
		sessionState: prometheus.NewDesc(Namespace+"_zookeeper_session_state", "The ZooKeeper client's state: 1 for the current one, 0 for the others.",
			[]string{"keyspace", "state"}, nil),
	}
	if err := reg.Register(p.changes); err != nil {
		return nil, err
	}
	if err := reg.Register(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Describe implements prometheus.Collector.
func (p *Partitions) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.hasLeader, p.epoch, p.isr, p.members, p.sessionUp, p.sessionState} {
		ch <- d
	}
}

// views returns the partitions k watches, with their views.
func (k Keyspace) views() []coord.View {
	if k.Topology == nil {
		return nil
	}
	t := k.Topology()
	if t == nil {
		return nil
	}
	if k.Partition >= 0 {
		if k.Partition >= t.Partitions() {
			return nil
		}
		return []coord.View{t.Partition(k.Partition)}
	}
	out := make([]coord.View, t.Partitions())
	for n := range out {
		out[n] = t.Partition(n)
	}
	return out
}

// Collect implements prometheus.Collector.
func (p *Partitions) Collect(ch chan<- prometheus.Metric) {
	for _, k := range p.keyspaces {
		for _, v := range k.views() {
			part := strconv.Itoa(v.Partition)
			ch <- prometheus.MustNewConstMetric(p.hasLeader, prometheus.GaugeValue, boolValue(v.Leader.Addr != ""), k.Name, part)
			ch <- prometheus.MustNewConstMetric(p.epoch, prometheus.GaugeValue, float64(v.Leader.Epoch), k.Name, part)
			ch <- prometheus.MustNewConstMetric(p.isr, prometheus.GaugeValue, float64(len(v.ISR)), k.Name, part)
			ch <- prometheus.MustNewConstMetric(p.members, prometheus.GaugeValue, float64(len(v.Members)), k.Name, part)
		}
		if k.Session == nil {
			continue
		}
		st, _, _ := k.Session.State()
		ch <- prometheus.MustNewConstMetric(p.sessionUp, prometheus.GaugeValue, boolValue(st == zk.StateHasSession), k.Name)
		for _, s := range sessionStates {
			ch <- prometheus.MustNewConstMetric(p.sessionState, prometheus.GaugeValue, boolValue(st == s), k.Name, stateName(s))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// watchEvery bounds the wait between two looks at a topology when it
// signals no change (the router's is replaced by a reshard).
const watchEvery = time.Second

// Watch counts leader changes (plugdb_partition_leader_changes_total) until
// ctx ends: every time a partition's leader address or epoch differs from
// the one last seen, once a leader was seen. It returns when ctx ends.
func (p *Partitions) Watch(ctx context.Context) {
	var wg sync.WaitGroup
	for _, k := range p.keyspaces {
		if k.Topology != nil {
			wg.Go(func() { p.watch(ctx, k) })
		}
	}
	wg.Wait()
}

func (p *Partitions) watch(ctx context.Context, k Keyspace) {
	type leader struct {
		addr  string
		epoch uint64
	}
	seen := map[int]leader{}
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		var changed <-chan struct{}
		if t := k.Topology(); t != nil {
			changed = t.Changed()
		}
		for _, v := range k.views() {
			part := strconv.Itoa(v.Partition)
			p.changes.WithLabelValues(k.Name, part) // the series exists from the start
			now := leader{v.Leader.Addr, v.Leader.Epoch}
			if now.addr == "" {
				continue
			}
			if last, ok := seen[v.Partition]; ok && last != now {
				p.changes.WithLabelValues(k.Name, part).Inc()
				if k.OnLeaderChange != nil {
					k.OnLeaderChange(LeaderChange{Keyspace: k.Name, Partition: v.Partition, From: last.addr, FromEpoch: last.epoch, To: now.addr, Epoch: now.epoch})
				}
			}
			seen[v.Partition] = now
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// Health says whether every watched partition has a leader and every
// session is up: nil if so, otherwise an error naming what is missing.
func (p *Partitions) Health(context.Context) error {
	var errs []error
	for _, k := range p.keyspaces {
		if k.Session != nil {
			if st, _, _ := k.Session.State(); st != zk.StateHasSession {
				errs = append(errs, fmt.Errorf("keyspace %s: no ZooKeeper session (%s)", k.Name, stateName(st)))
				continue
			}
		}
		views := k.views()
		if len(views) == 0 {
			errs = append(errs, fmt.Errorf("keyspace %s: no topology yet", k.Name))
		}
		var leaderless []string
		for _, v := range views {
			if v.Leader.Addr == "" {
				leaderless = append(leaderless, strconv.Itoa(v.Partition))
			}
		}
		if len(leaderless) > 0 {
			errs = append(errs, fmt.Errorf("keyspace %s: no leader for partition %s", k.Name, strings.Join(leaderless, ", ")))
		}
	}
	return errors.Join(errs...)
}
