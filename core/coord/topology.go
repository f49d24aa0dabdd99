package coord

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// View is what the router knows of one partition.
type View struct {
	// Partition is the partition's number.
	Partition int
	// Leader is the leader's address, replicator address and epoch; Addr is
	// empty while there is none.
	Leader LeaderInfo
	// Members are the registered replicas, by address.
	Members []Member
	// ISR is the in-sync replica set (member addresses, sorted); nil before the
	// partition's first leader.
	ISR []string
	// ISREpoch is the epoch of the leader that wrote ISR.
	ISREpoch uint64
	// Read is when the view was read from ZooKeeper; zero if never.
	Read time.Time
}

// Followers returns the members other than the leader.
func (v View) Followers() []Member {
	var out []Member
	for _, m := range v.Members {
		if m.Addr != v.Leader.Addr {
			out = append(out, m)
		}
	}
	return out
}

// Topology keeps a view of every partition, refreshed by ZooKeeper watches on
// the leader, members and isr znodes, after every reconnect, and on request.
type Topology struct {
	c       *Client
	p       Paths
	kicks   []chan struct{}
	stop    context.CancelFunc // ends the watchers (Close)
	watches sync.WaitGroup     // the watchers, one per partition

	mu      sync.Mutex
	views   []View
	changed chan struct{}
}

// WatchTopology starts watching partitions partitions until ctx ends or
// Close is called; Close waits for the watchers to return.
func WatchTopology(ctx context.Context, c *Client, partitions int) *Topology {
	ctx, stop := context.WithCancel(ctx)
	t := &Topology{c: c, p: PathsOf(c.cfg), views: make([]View, partitions), changed: make(chan struct{}), stop: stop}
	for n := range partitions {
		t.views[n].Partition = n
		t.kicks = append(t.kicks, make(chan struct{}, 1))
	}
	for n := range partitions {
		t.watches.Go(func() { t.watch(ctx, n) })
	}
	return t
}

// Close stops watching and waits for the watchers to return. The views keep
// their last state.
func (t *Topology) Close() {
	t.stop()
	t.watches.Wait()
}

// Partition returns partition n's current view.
func (t *Topology) Partition(n int) View {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.views[n]
	v.Members = slices.Clone(v.Members)
	v.ISR = slices.Clone(v.ISR)
	return v
}

// Partitions is the number of partitions watched.
func (t *Topology) Partitions() int { return len(t.views) }

// Changed returns a channel closed at the next change of any view.
func (t *Topology) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// Refresh asks for partition n to be read again (say, after a node answered
// "not leader"); it does not wait.
func (t *Topology) Refresh(n int) {
	select {
	case t.kicks[n] <- struct{}{}:
	default:
	}
}

// watches are a partition's armed ZooKeeper watches; nil when not armed.
type watches struct{ leader, members, isr <-chan zk.Event }

// watch keeps partition n's view. Each watch is armed once and re-armed only
// after it fired; a refresh on request reads without adding watches.
func (t *Topology) watch(ctx context.Context, n int) {
	var armed watches
	for {
		if _, err := t.c.WaitSession(ctx); err != nil {
			return
		}
		changed := t.c.Changed()
		op, cancel := context.WithTimeout(ctx, t.c.cfg.SessionTimeout)
		v, w, err := t.read(op, n, armed)
		cancel()
		if err == nil {
			armed = w
			t.set(n, v)
		} else if ctx.Err() == nil {
			t.c.log.Debug("read topology", "partition", n, "error", err)
		}
		var retry <-chan time.Time
		if err != nil {
			retry = time.After(t.c.cfg.SessionTimeout / 4)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			// After a reconnect the watches stand (go-zookeeper sets them
			// again); after an expiry they fired with an error: re-arm.
		case <-armed.leader:
			armed.leader = nil
		case <-armed.members:
			armed.members = nil
		case <-armed.isr:
			armed.isr = nil
		case <-t.kicks[n]:
		case <-retry:
		}
	}
}

// read reads partition n, arming the watches that armed lacks; it returns the
// view and the watches now armed.
func (t *Topology) read(ctx context.Context, n int, armed watches) (View, watches, error) {
	type result struct {
		v View
		w watches
	}
	r, err := call(ctx, t.c, func(conn *zk.Conn) (result, error) {
		v, w := View{Partition: n}, armed
		data, lw, err := getW(conn, t.p.Leader(n), w.leader == nil)
		if err != nil {
			return result{}, err
		}
		if lw != nil {
			w.leader = lw
		}
		if len(data) > 0 {
			if err := json.Unmarshal(data, &v.Leader); err != nil {
				return result{}, err
			}
		}
		data, iw, err := getW(conn, t.p.ISR(n), w.isr == nil)
		if err != nil {
			return result{}, err
		}
		if iw != nil {
			w.isr = iw
		}
		if len(data) > 0 {
			var info ISRInfo
			if err := json.Unmarshal(data, &info); err != nil {
				return result{}, err
			}
			v.ISR, v.ISREpoch = info.Members, info.Epoch
		}
		var names []string
		if w.members == nil {
			names, _, w.members, err = conn.ChildrenW(t.p.Members(n))
		} else {
			names, _, err = conn.Children(t.p.Members(n))
		}
		if err != nil {
			return result{}, err
		}
		slices.Sort(names)
		for _, name := range names {
			data, _, err := conn.Get(t.p.Members(n) + "/" + name)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				return result{}, err
			}
			var m Member
			if json.Unmarshal(data, &m) != nil || m.Addr == "" {
				m = Member{Addr: strings.TrimSpace(name), Partition: n}
			}
			v.Members = append(v.Members, m)
		}
		v.Read = time.Now()
		return result{v, w}, nil
	})
	return r.v, r.w, err
}

// getW reads the znode at path, nil if it does not exist; with arm it also
// returns a watch that fires when the znode is created, changed or deleted.
func getW(conn *zk.Conn, path string, arm bool) ([]byte, <-chan zk.Event, error) {
	var data []byte
	var w <-chan zk.Event
	var err error
	if arm {
		var ok bool
		ok, _, w, err = conn.ExistsW(path)
		if err == nil && ok {
			data, _, err = conn.Get(path)
		}
	} else {
		data, _, err = conn.Get(path)
	}
	if errors.Is(err, zk.ErrNoNode) {
		err = nil
	}
	return data, w, err
}

func (t *Topology) set(n int, v View) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.views[n] = v
	close(t.changed)
	t.changed = make(chan struct{})
}
