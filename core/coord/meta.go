package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"

	"github.com/go-zookeeper/zk"
)

// Paths names the cluster's znodes.
type Paths struct{ base string }

// PathsOf returns the znodes of cfg's cluster, or of its keyspace
// cfg.Keyspace: a keyspace other than the default one lives under the
// cluster's keyspaces/NAME, with the same layout.
func PathsOf(cfg Config) Paths {
	if cfg.Keyspace != "" && cfg.Keyspace != "default" {
		return Paths{base: path.Join(cfg.Root, cfg.Cluster, "keyspaces", cfg.Keyspace)}
	}
	return Paths{base: path.Join(cfg.Root, cfg.Cluster)}
}

// Base is the cluster's znode.
func (p Paths) Base() string { return p.base }

// Meta is the cluster metadata znode.
func (p Paths) Meta() string { return p.base + "/meta" }

// Partition is partition n's znode.
func (p Paths) Partition(n int) string { return p.base + "/partitions/" + strconv.Itoa(n) }

// Epoch holds partition n's current epoch.
func (p Paths) Epoch(n int) string { return p.Partition(n) + "/epoch" }

// Leader is partition n's leader znode (ephemeral).
func (p Paths) Leader(n int) string { return p.Partition(n) + "/leader" }

// Members holds partition n's replicas (ephemeral children).
func (p Paths) Members(n int) string { return p.Partition(n) + "/members" }

// Election holds partition n's candidates (ephemeral sequential children).
func (p Paths) Election(n int) string { return p.Partition(n) + "/election" }

// ISR holds partition n's in-sync replica set (persistent, JSON ISRInfo),
// written by the partition's leaders.
func (p Paths) ISR(n int) string { return p.Partition(n) + "/isr" }

// PluginMeta is a plugin block as the cluster metadata records it.
type PluginMeta struct {
	Plugin  string            `json:"plugin"`
	Options map[string]string `json:"options,omitempty"`
}

// Meta is the cluster metadata (of one keyspace): its layout, written when
// the cluster is created and again by each reshard's flip (FlipReshard).
type Meta struct {
	Partitions  int        `json:"partitions"`
	Partitioner PluginMeta `json:"partitioner"`
	// Version numbers the layouts: 1 (or 0, before versions were recorded)
	// when created, one more at each reshard.
	Version uint64 `json:"version,omitempty"`
}

// ErrConflict is returned when a config disagrees with the cluster's metadata.
var ErrConflict = errors.New("config conflicts with the cluster's metadata")

// EnsureMeta creates the cluster's znodes and writes m as its metadata if the
// cluster is new; otherwise it checks that m matches what the cluster was
// created with and returns the recorded metadata. A cluster that was
// resharded (Version > 1) has the layout it was moved to: EnsureMeta returns
// it without comparing, and the caller uses it instead of m.
func EnsureMeta(ctx context.Context, c *Client, m Meta) (Meta, error) {
	p := PathsOf(c.cfg)
	data, err := json.Marshal(m)
	if err != nil {
		return Meta{}, err
	}
	err = c.Do(ctx, func(conn *zk.Conn) error {
		if err := createPath(conn, c.acl, p.base); err != nil {
			return err
		}
		for n := range m.Partitions {
			if err := createPartition(conn, c.acl, p, n); err != nil {
				return err
			}
		}
		if _, err := conn.Create(p.Meta(), data, 0, c.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %w", refused(p.Meta(), nil, err))
		}
		return nil
	})
	if err != nil {
		return Meta{}, fmt.Errorf("cluster %q metadata: %w", c.cfg.Cluster, err)
	}
	got, err := ReadMeta(ctx, c)
	if err != nil {
		return Meta{}, err
	}
	if got.LayoutVersion() > 1 {
		// Resharded: the recorded layout is the cluster's, whatever the
		// config it was created with says.
		return got, nil
	}
	if !SameLayout(got, m) {
		return got, fmt.Errorf("%w: cluster %q (ZooKeeper %s) was created with partitions=%d, partitioner=%s %v; this config has partitions=%d, partitioner=%s %v: use the cluster's settings, or another cluster name for a new cluster",
			ErrConflict, c.cfg.Cluster, p.Meta(), got.Partitions, got.Partitioner.Plugin, got.Partitioner.Options, m.Partitions, m.Partitioner.Plugin, m.Partitioner.Options)
	}
	return got, nil
}

// EnsurePartition creates partition n's znodes where missing, for a node of
// a partition the layout does not have yet (it joins before a reshard
// moves keys to it).
func EnsurePartition(ctx context.Context, c *Client, n int) error {
	p := PathsOf(c.cfg)
	err := c.Do(ctx, func(conn *zk.Conn) error { return createPartition(conn, c.acl, p, n) })
	if err != nil {
		return fmt.Errorf("partition %d's znodes: %w", n, err)
	}
	return nil
}

// createPartition creates partition n's znodes where missing, with acl.
func createPartition(conn *zk.Conn, acl []zk.ACL, p Paths, n int) error {
	for _, dir := range []string{p.Partition(n), p.Members(n), p.Election(n)} {
		if err := createPath(conn, acl, dir); err != nil {
			return err
		}
	}
	if _, err := conn.Create(p.Epoch(n), []byte("0"), 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("create %w", refused(p.Epoch(n), nil, err))
	}
	return nil
}

// ReadMeta reads the cluster metadata.
func ReadMeta(ctx context.Context, c *Client) (Meta, error) {
	m, _, err := readMeta(ctx, c, false)
	return m, err
}

// WatchMeta is ReadMeta that also returns a channel that fires at the
// metadata's next change (a reshard's flip) or removal, or the session's
// loss: the caller reads it again then, arming a new watch.
func WatchMeta(ctx context.Context, c *Client) (Meta, <-chan zk.Event, error) {
	return readMeta(ctx, c, true)
}

func readMeta(ctx context.Context, c *Client, arm bool) (Meta, <-chan zk.Event, error) {
	p := PathsOf(c.cfg)
	type result struct {
		data []byte
		w    <-chan zk.Event
	}
	res, err := call(ctx, c, func(conn *zk.Conn) (result, error) {
		if !arm {
			data, _, err := conn.Get(p.Meta())
			return result{data: data}, err
		}
		data, _, w, err := conn.GetW(p.Meta())
		return result{data, w}, err
	})
	if err != nil {
		return Meta{}, nil, fmt.Errorf("read cluster %q metadata %s: %w", c.cfg.Cluster, p.Meta(), err)
	}
	m, err := parseMeta(c, res.data)
	return m, res.w, err
}

func parseMeta(c *Client, data []byte) (Meta, error) {
	p := PathsOf(c.cfg)
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("read cluster %q metadata %s: %w", c.cfg.Cluster, p.Meta(), err)
	}
	return m, nil
}

// createPath creates dir and its parents (persistent, empty) where missing,
// with acl.
func createPath(conn *zk.Conn, acl []zk.ACL, dir string) error {
	if dir == "/" || dir == "" {
		return nil
	}
	if ok, _, err := conn.Exists(dir); err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	} else if ok {
		return nil
	}
	if err := createPath(conn, acl, path.Dir(dir)); err != nil {
		return err
	}
	if _, err := conn.Create(dir, nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("create %w", refused(dir, nil, err))
	}
	return nil
}
