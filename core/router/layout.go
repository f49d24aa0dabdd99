package router

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/partitioners"
)

// OpenFunc opens the partitioner that places keys under a layout (the
// keyspace's metadata), configured with its partition count and options.
type OpenFunc func(ctx context.Context, m coord.Meta) (partitioners.Partitioner, error)

// metaPoll is how often the router reads the keyspace's metadata again
// besides its watch, as a safety net.
const metaPoll = time.Second

// layout is one of the keyspace's layouts as the router serves it: the
// partitioner that places keys under it and the topology of its partitions.
// A request holds it (acquire/release) while it places keys or looks up a
// leader; once a newer layout replaces it and no request holds it, its
// partitioner and topology are closed.
type layout struct {
	meta    coord.Meta
	version uint64
	n       int
	part    partitioners.Partitioner
	top     *coord.Topology
	// followed is set on a layout the router moved to at a flip (not the
	// one it started with): a partition a request names that this layout
	// does not give its keys was computed under an older layout.
	followed bool
	// replaced is closed when a newer layout takes this one's place.
	replaced chan struct{}

	mu      sync.Mutex
	refs    int
	retired bool
	closed  bool
}

// openLayout opens m's partitioner and starts watching its partitions'
// topology until ctx ends or the layout is closed.
func openLayout(ctx context.Context, client *coord.Client, open OpenFunc, m coord.Meta) (*layout, error) {
	if m.Partitions < 1 {
		return nil, fmt.Errorf("layout v%d has %d partitions", m.LayoutVersion(), m.Partitions)
	}
	part, err := open(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("open the partitioner of layout v%d (%d partitions, %s): %w", m.LayoutVersion(), m.Partitions, m.Partitioner.Plugin, err)
	}
	return &layout{meta: m, version: m.LayoutVersion(), n: m.Partitions, part: part,
		top: coord.WatchTopology(ctx, client, m.Partitions), replaced: make(chan struct{})}, nil
}

// hold takes a reference to l unless it was retired.
func (l *layout) hold() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.retired {
		return false
	}
	l.refs++
	return true
}

// release drops a reference; the last one of a retired layout closes it.
func (l *layout) release() {
	l.mu.Lock()
	l.refs--
	last := l.retired && l.refs == 0 && !l.closed
	if last {
		l.closed = true
	}
	l.mu.Unlock()
	if last {
		l.close()
	}
}

// retire marks l replaced: it closes now if no request holds it, else when
// the last one lets it go.
func (l *layout) retire() {
	l.mu.Lock()
	l.retired = true
	last := l.refs == 0 && !l.closed
	if last {
		l.closed = true
	}
	l.mu.Unlock()
	if last {
		l.close()
	}
}

func (l *layout) close() {
	l.top.Close()
	l.part.Close()
}

// acquire returns the current layout, held: the caller releases it.
func (r *Router) acquire() *layout {
	for {
		l := r.cur.Load()
		if l.hold() {
			return l
		}
		if r.cur.Load() == l {
			// Retired but not replaced: the router is closed. The request
			// fails with what the closed partitioner and topology say.
			l.mu.Lock()
			l.refs++
			l.mu.Unlock()
			return l
		}
		// Replaced between the load and the hold: the next load sees the
		// newer one.
	}
}

// refreshMeta asks the router's layout follower to read the metadata now
// (a node said a key is another partition's); it does not wait.
func (r *Router) refreshMeta() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// follow keeps the router's layout the keyspace's: it reads the metadata
// with a watch (armed again after each event), every metaPoll too, and on
// refreshMeta, and installs each newer layout, until ctx ends.
func (r *Router) follow(ctx context.Context) {
	tick := time.NewTicker(metaPoll)
	defer tick.Stop()
	var armed <-chan zk.Event
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var (
			m   coord.Meta
			w   <-chan zk.Event
			err error
		)
		if armed == nil {
			m, w, err = coord.WatchMeta(rctx, r.client)
			armed = w
		} else {
			m, err = coord.ReadMeta(rctx, r.client)
		}
		if err == nil && m.LayoutVersion() > r.cur.Load().version {
			err = r.install(m)
		}
		cancel()
		if err != nil && ctx.Err() == nil && r.info.Logger != nil {
			r.info.Logger.Warn("follow the keyspace's layout", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-armed:
			armed = nil
		case <-r.kick:
		case <-tick.C:
		}
	}
}

// install opens layout m and makes it the router's; the one it replaces
// closes once no request holds it.
func (r *Router) install(m coord.Meta) error {
	l, err := openLayout(r.ctx, r.client, r.open, m)
	if err != nil {
		return err
	}
	l.followed = true
	old := r.cur.Swap(l)
	close(old.replaced)
	old.retire()
	if r.info.Logger != nil {
		r.info.Logger.Info("following the keyspace's new layout", "version", l.version, "partitions", l.n,
			"partitioner", m.Partitioner.Plugin, "was", fmt.Sprintf("v%d, %d partitions", old.version, old.n))
	}
	return nil
}

// placeAll returns the partition of keys under l; it fails, retryably, when
// they fall in more than one.
func placeAll(ctx context.Context, l *layout, keys [][]byte) (int, error) {
	out := make([]int, len(keys))
	if err := l.part.Locate(ctx, keys, out); err != nil {
		return 0, fmt.Errorf("partitioner: %w", err)
	}
	for _, p := range out[1:] {
		if p != out[0] {
			return 0, errLayoutChangedBatch
		}
	}
	return out[0], nil
}
