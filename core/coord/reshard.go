package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
)

// Reshard is a move of a cluster's keyspace from one layout (partition count
// and partitioner) to another while it serves, recorded at Paths.Reshard
// from its start to its end. Nodes and routers watch it: its State says what
// each must do, and the flip to To is one ZooKeeper transaction that writes
// the metadata and the state together.
type Reshard struct {
	// From is the layout being left (the metadata when the move began), To
	// the layout moved to; To.Version is From.Version+1.
	From Meta `json:"from"`
	To   Meta `json:"to"`
	// State is where the move stands.
	State ReshardState `json:"state"`
	// Started is when the move began.
	Started time.Time `json:"started"`
}

// ReshardState is a step of a Reshard.
type ReshardState string

// The steps of a move, in order. A move in ReshardCopying or ReshardFenced
// may be aborted (the record is removed and From stays the layout); from
// ReshardFlipped on it can only go forward.
const (
	// ReshardCopying: writes go to the From owners; the rows whose owner
	// changes are copied to their To owners, which accept them from the
	// move only.
	ReshardCopying ReshardState = "copying"
	// ReshardFenced: the From owners refuse reads and writes of the keys
	// that move (a named, retryable error) while the last changes are
	// copied.
	ReshardFenced ReshardState = "fenced"
	// ReshardFlipped: the metadata is To; the From owners may delete the
	// rows they no longer own.
	ReshardFlipped ReshardState = "flipped"
)

// LayoutVersion is m's version: 1 for metadata written before versions
// were recorded.
func (m Meta) LayoutVersion() uint64 {
	if m.Version == 0 {
		return 1
	}
	return m.Version
}

// Reshard is the znode of the keyspace's move in progress (persistent JSON
// Reshard), absent when none runs.
func (p Paths) Reshard() string { return p.base + "/reshard" }

// FenceAcks holds, per partition, the epoch of the leader that has fenced
// the moving keys (persistent children named by partition).
func (p Paths) FenceAcks() string { return p.base + "/reshard-fenced" }

// FenceAck is partition n's fence acknowledgement.
func (p Paths) FenceAck(n int) string { return p.FenceAcks() + "/" + strconv.Itoa(n) }

// ErrReshardRunning is returned when a move is started while another runs.
var ErrReshardRunning = errors.New("a reshard is already running")

// ErrNoReshard is returned when there is no move to go on with.
var ErrNoReshard = errors.New("no reshard is running")

// BeginReshard records a move from the current metadata to the layout to
// (its Version is set): it creates the znodes of the partitions To adds and
// the Reshard record in ReshardCopying. It fails with ErrReshardRunning,
// naming the move, if one is recorded.
func BeginReshard(ctx context.Context, c *Client, to Meta) (Reshard, error) {
	p := PathsOf(c.cfg)
	from, err := ReadMeta(ctx, c)
	if err != nil {
		return Reshard{}, err
	}
	if cur, ok, err := ReadReshard(ctx, c); err != nil {
		return Reshard{}, err
	} else if ok {
		return cur, fmt.Errorf("%w: %s", ErrReshardRunning, cur)
	}
	to.Version = from.LayoutVersion() + 1
	r := Reshard{From: from, To: to, State: ReshardCopying, Started: time.Now().UTC().Truncate(time.Millisecond)}
	data, err := json.Marshal(r)
	if err != nil {
		return Reshard{}, err
	}
	err = c.Do(ctx, func(conn *zk.Conn) error {
		for n := from.Partitions; n < to.Partitions; n++ {
			if err := createPartition(conn, c.acl, p, n); err != nil {
				return err
			}
		}
		if err := createPath(conn, c.acl, p.FenceAcks()); err != nil {
			return err
		}
		if _, err := conn.Create(p.Reshard(), data, 0, c.acl); err != nil {
			if errors.Is(err, zk.ErrNodeExists) {
				return ErrReshardRunning
			}
			return fmt.Errorf("create %s: %w", p.Reshard(), err)
		}
		return nil
	})
	if err != nil {
		return Reshard{}, fmt.Errorf("begin reshard of cluster %q: %w", c.cfg.Cluster, err)
	}
	return r, nil
}

// String names the move: "2 hash → 3 ring (copying)".
func (r Reshard) String() string {
	return fmt.Sprintf("v%d %d %s → v%d %d %s (%s, since %s)", r.From.LayoutVersion(), r.From.Partitions, r.From.Partitioner.Plugin,
		r.To.LayoutVersion(), r.To.Partitions, r.To.Partitioner.Plugin, r.State, r.Started.Format(time.RFC3339))
}

// ReadReshard returns the move in progress; ok is false when none runs.
func ReadReshard(ctx context.Context, c *Client) (r Reshard, ok bool, err error) {
	r, ok, _, err = readReshard(ctx, c, false)
	return r, ok, err
}

// WatchReshard is ReadReshard that also returns a channel that fires at the
// record's next creation, change or removal (or the session's loss).
func WatchReshard(ctx context.Context, c *Client) (r Reshard, ok bool, w <-chan zk.Event, err error) {
	return readReshard(ctx, c, true)
}

func readReshard(ctx context.Context, c *Client, arm bool) (Reshard, bool, <-chan zk.Event, error) {
	p := PathsOf(c.cfg)
	type result struct {
		data []byte
		w    <-chan zk.Event
	}
	res, err := call(ctx, c, func(conn *zk.Conn) (result, error) {
		data, w, err := getW(conn, p.Reshard(), arm)
		return result{data, w}, err
	})
	if err != nil {
		return Reshard{}, false, nil, fmt.Errorf("read %s: %w", p.Reshard(), err)
	}
	if res.data == nil {
		return Reshard{}, false, res.w, nil
	}
	var r Reshard
	if err := json.Unmarshal(res.data, &r); err != nil {
		return Reshard{}, false, res.w, fmt.Errorf("read %s: %w", p.Reshard(), err)
	}
	return r, true, res.w, nil
}

// SetReshardState moves the recorded move from state from to state to
// (ReshardCopying → ReshardFenced); it fails with ErrNoReshard when none runs
// and names the state found when it is not from. ReshardFlipped is set by
// FlipReshard only.
func SetReshardState(ctx context.Context, c *Client, from, to ReshardState) error {
	if to == ReshardFlipped {
		return errors.New("set reshard state: the flip is FlipReshard's")
	}
	return updateReshard(ctx, c, func(r *Reshard) ([]any, error) {
		if r.State != from {
			return nil, fmt.Errorf("reshard is %s, not %s", r.State, from)
		}
		r.State = to
		return nil, nil
	})
}

// FlipReshard makes the move's To the keyspace's metadata and marks the move
// ReshardFlipped, in one ZooKeeper transaction; it must be ReshardFenced
// (or already flipped: then it does nothing).
func FlipReshard(ctx context.Context, c *Client) error {
	p := PathsOf(c.cfg)
	return updateReshard(ctx, c, func(r *Reshard) ([]any, error) {
		switch r.State {
		case ReshardFlipped:
			return nil, errAlready
		case ReshardFenced:
		default:
			return nil, fmt.Errorf("reshard is %s: it flips once fenced", r.State)
		}
		r.State = ReshardFlipped
		meta, err := json.Marshal(r.To)
		if err != nil {
			return nil, err
		}
		return []any{&zk.SetDataRequest{Path: p.Meta(), Data: meta, Version: -1}}, nil
	})
}

// EndReshard removes the record of a flipped move, and its fence
// acknowledgements: the move is over.
func EndReshard(ctx context.Context, c *Client) error {
	return removeReshard(ctx, c, func(r Reshard) error {
		if r.State != ReshardFlipped {
			return fmt.Errorf("reshard is %s: it ends once flipped (or use abort)", r.State)
		}
		return nil
	})
}

// AbortReshard removes the record of a move that has not flipped: From stays
// the layout and the fences are lifted.
func AbortReshard(ctx context.Context, c *Client) error {
	return removeReshard(ctx, c, func(r Reshard) error {
		if r.State == ReshardFlipped {
			return errors.New("reshard has flipped: it can only go forward (plugdb reshard resumes it)")
		}
		return nil
	})
}

// AckFence records that partition n's leader of epoch has fenced the moving
// keys.
func AckFence(ctx context.Context, c *Client, n int, epoch uint64) error {
	p := PathsOf(c.cfg)
	data := []byte(strconv.FormatUint(epoch, 10))
	err := c.Do(ctx, func(conn *zk.Conn) error {
		_, err := conn.Set(p.FenceAck(n), data, -1)
		if errors.Is(err, zk.ErrNoNode) {
			_, err = conn.Create(p.FenceAck(n), data, 0, c.acl)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("partition %d: acknowledge fence: %w", n, err)
	}
	return nil
}

// FenceAcked returns the epoch of the last leader of partition n that
// acknowledged the fence; 0 if none did.
func FenceAcked(ctx context.Context, c *Client, n int) (uint64, error) {
	p := PathsOf(c.cfg)
	data, err := call(ctx, c, func(conn *zk.Conn) ([]byte, error) {
		data, _, err := getW(conn, p.FenceAck(n), false)
		return data, err
	})
	if err != nil || data == nil {
		return 0, err
	}
	return strconv.ParseUint(string(data), 10, 64)
}

// errAlready marks an update with nothing to do.
var errAlready = errors.New("already done")

// updateReshard reads the record, lets change change it (and add requests,
// zk.*Request values, to the same transaction) and writes it back if it was
// not changed since.
func updateReshard(ctx context.Context, c *Client, change func(*Reshard) ([]any, error)) error {
	p := PathsOf(c.cfg)
	err := c.Do(ctx, func(conn *zk.Conn) error {
		r, st, err := getReshard(conn, p)
		if err != nil {
			return err
		}
		more, err := change(&r)
		if err != nil {
			return err
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		ops := append([]any{&zk.SetDataRequest{Path: p.Reshard(), Data: data, Version: st.Version}}, more...)
		_, err = conn.Multi(ops...)
		return err
	})
	if errors.Is(err, errAlready) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reshard of cluster %q: %w", c.cfg.Cluster, err)
	}
	return nil
}

// getReshard reads the record and its stat; ErrNoReshard if there is none.
func getReshard(conn *zk.Conn, p Paths) (Reshard, *zk.Stat, error) {
	data, st, err := conn.Get(p.Reshard())
	if errors.Is(err, zk.ErrNoNode) {
		return Reshard{}, nil, ErrNoReshard
	}
	if err != nil {
		return Reshard{}, nil, err
	}
	var r Reshard
	if err := json.Unmarshal(data, &r); err != nil {
		return Reshard{}, nil, fmt.Errorf("read %s: %w", p.Reshard(), err)
	}
	return r, st, nil
}

// removeReshard deletes the record and the fence acknowledgements if check
// allows.
func removeReshard(ctx context.Context, c *Client, check func(Reshard) error) error {
	p := PathsOf(c.cfg)
	err := c.Do(ctx, func(conn *zk.Conn) error {
		r, st, err := getReshard(conn, p)
		if err != nil {
			return err
		}
		if err := check(r); err != nil {
			return err
		}
		acks, _, err := conn.Children(p.FenceAcks())
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		ops := []any{}
		for _, a := range acks {
			ops = append(ops, &zk.DeleteRequest{Path: p.FenceAcks() + "/" + a, Version: -1})
		}
		ops = append(ops, &zk.DeleteRequest{Path: p.Reshard(), Version: st.Version})
		_, err = conn.Multi(ops...)
		return err
	})
	if err != nil {
		return fmt.Errorf("reshard of cluster %q: %w", c.cfg.Cluster, err)
	}
	return nil
}

// SameLayout reports whether a and b place keys alike: same partition count,
// partitioner and options.
func SameLayout(a, b Meta) bool {
	return a.Partitions == b.Partitions && a.Partitioner.Plugin == b.Partitioner.Plugin && maps.Equal(a.Partitioner.Options, b.Partitioner.Options)
}
