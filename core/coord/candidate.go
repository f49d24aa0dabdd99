package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Roles of a replica.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// Member is a replica as its members znode describes it.
type Member struct {
	Addr       string `json:"addr"`
	Partition  int    `json:"partition"`
	Role       string `json:"role"`
	Epoch      uint64 `json:"epoch"`
	AppliedLSN uint64 `json:"applied_lsn"`
}

// LeaderInfo is the content of a partition's leader znode.
type LeaderInfo struct {
	Addr  string `json:"addr"`
	Epoch uint64 `json:"epoch"`
}

// CandidateConfig describes one replica taking part in its partition.
type CandidateConfig struct {
	// Partition is the replica's partition.
	Partition int
	// Addr is where clients and the router reach the replica.
	Addr string
	// Applied returns the replica's applied LSN, published in its members znode.
	Applied func() uint64
	// Publish is how often the members znode is refreshed (default 1s).
	Publish time.Duration
}

// Candidate registers a replica in its partition and runs for leader. A
// candidate watches only its predecessor in the election (no herd effect).
// It steps down the moment its session is in doubt, and after the session
// expires it registers and runs again under the new one.
type Candidate struct {
	c    *Client
	p    Paths
	cfg  CandidateConfig
	guid string // names this process's election node (a protected node)

	mu      sync.Mutex
	role    string
	epoch   uint64
	session int64 // the session the leadership belongs to
	changed chan struct{}
}

// NewCandidate returns a candidate for cfg; Run makes it take part.
func NewCandidate(c *Client, cfg CandidateConfig) *Candidate {
	if cfg.Publish <= 0 {
		cfg.Publish = time.Second
	}
	if cfg.Applied == nil {
		cfg.Applied = func() uint64 { return 0 }
	}
	var g [16]byte
	_, _ = rand.Read(g[:])
	return &Candidate{c: c, p: PathsOf(c.cfg), cfg: cfg, guid: hex.EncodeToString(g[:]), role: RoleFollower, changed: make(chan struct{})}
}

// Leader reports whether this replica may act as leader now — it won the
// election and its session lease holds — and its epoch.
func (k *Candidate) Leader() (epoch uint64, ok bool) {
	session, ok := k.c.Lease()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !ok || k.role != RoleLeader || k.session != session {
		return 0, false
	}
	return k.epoch, true
}

// Role returns the replica's role and the epoch it last knew.
func (k *Candidate) Role() (string, uint64) {
	if _, ok := k.Leader(); ok {
		k.mu.Lock()
		defer k.mu.Unlock()
		return RoleLeader, k.epoch
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return RoleFollower, k.epoch
}

// Changed returns a channel closed at the next role change.
func (k *Candidate) Changed() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.changed
}

func (k *Candidate) setRole(role string, epoch uint64, session int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.role == role && k.epoch == epoch && k.session == session {
		return
	}
	if role == RoleLeader {
		k.c.log.Info("elected leader", "partition", k.cfg.Partition, "addr", k.cfg.Addr, "epoch", epoch)
	} else if k.role == RoleLeader {
		k.c.log.Warn("stepped down", "partition", k.cfg.Partition, "addr", k.cfg.Addr, "epoch", k.epoch)
	}
	k.role, k.session = role, session
	if epoch > k.epoch {
		k.epoch = epoch
	}
	close(k.changed)
	k.changed = make(chan struct{})
}

// Run takes part until ctx ends, then withdraws (deletes its znodes).
func (k *Candidate) Run(ctx context.Context) error {
	go k.publish(ctx)
	for {
		err := k.runSession(ctx)
		k.setRole(RoleFollower, 0, 0)
		if ctx.Err() != nil {
			k.withdraw()
			return nil
		}
		if err != nil {
			k.c.log.Warn("election", "partition", k.cfg.Partition, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(k.c.cfg.SessionTimeout / 4):
			}
		}
	}
}

// runSession registers and runs for leader under one session; it returns
// when the session is lost or in doubt (or on an error).
func (k *Candidate) runSession(ctx context.Context) (err error) {
	session, err := k.c.WaitSession(ctx)
	if err != nil {
		return err
	}
	op, cancel := k.c.SessionContext(ctx)
	defer cancel()
	defer func() {
		if op.Err() != nil {
			err = nil // the session changed under a call: not an error
		}
	}()
	if err := k.register(op, session); err != nil {
		return err
	}
	me, err := k.enter(op, session)
	if err != nil {
		return err
	}
	for {
		changed := k.c.Changed()
		if st, s, _ := k.c.State(); st != zk.StateHasSession || s != session {
			return nil // disconnected or expired: step down, run again
		}
		children, pred, err := k.position(op, me)
		if err != nil {
			return err
		}
		if children == nil {
			return fmt.Errorf("election node %s vanished", me)
		}
		var watch <-chan zk.Event
		if pred == "" {
			epoch, err := k.lead(op, session)
			if err != nil {
				return err
			}
			k.setRole(RoleLeader, epoch, session)
		} else {
			w, err := call(op, k.c, func(conn *zk.Conn) (<-chan zk.Event, error) {
				exists, _, w, err := conn.ExistsW(k.p.Election(k.cfg.Partition) + "/" + pred)
				if err != nil || !exists {
					return nil, err
				}
				return w, nil
			})
			if err != nil {
				return err
			}
			if w == nil {
				continue // gone already: look again
			}
			watch = w
			k.learnEpoch(op)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-watch: // nil while leader: then only a session change wakes us
		}
	}
}

// register creates the replica's members znode under session, replacing one
// left by this address's previous process.
func (k *Candidate) register(ctx context.Context, session int64) error {
	path := k.p.Members(k.cfg.Partition) + "/" + k.cfg.Addr
	data := k.memberData()
	return k.c.Do(ctx, func(conn *zk.Conn) error {
		for range 3 {
			_, err := conn.Create(path, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
			if err == nil {
				return nil
			}
			if !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("register %s: %w", path, err)
			}
			_, st, err := conn.Get(path)
			if errors.Is(err, zk.ErrNoNode) {
				continue
			}
			if err != nil {
				return fmt.Errorf("register %s: %w", path, err)
			}
			if st.EphemeralOwner == session {
				return nil // ours: created before a lost reply
			}
			// Left by a previous process at this address (only one process can
			// listen there), whose session has not expired yet.
			if err := conn.Delete(path, st.Version); err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
				return fmt.Errorf("register %s: remove stale node: %w", path, err)
			}
		}
		return fmt.Errorf("register %s: node keeps being re-created by another session", path)
	})
}

// enter finds or creates this session's election node and returns its name.
// The node's name carries the candidate's GUID (a protected node), so one
// created before a lost reply is found again rather than duplicated.
func (k *Candidate) enter(ctx context.Context, session int64) (string, error) {
	dir := k.p.Election(k.cfg.Partition)
	prefix := "_c_" + k.guid + "-n_"
	return call(ctx, k.c, func(conn *zk.Conn) (string, error) {
		for range 5 {
			children, _, err := conn.Children(dir)
			if err != nil {
				return "", fmt.Errorf("list %s: %w", dir, err)
			}
			for _, ch := range children {
				if !strings.HasPrefix(ch, prefix) {
					continue
				}
				_, st, err := conn.Exists(dir + "/" + ch)
				if err != nil {
					return "", err
				}
				if st != nil && st.EphemeralOwner == session {
					return ch, nil
				}
			}
			created, err := conn.Create(dir+"/"+prefix, []byte(k.cfg.Addr), zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
			if err == nil {
				return created[strings.LastIndexByte(created, '/')+1:], nil
			}
			if !errors.Is(err, zk.ErrConnectionClosed) {
				return "", fmt.Errorf("enter election %s: %w", dir, err)
			}
			// The reply was lost: the node may exist; look again.
		}
		return "", fmt.Errorf("enter election %s: connection keeps failing", dir)
	})
}

// seq returns an election node's sequence number.
func seq(name string) int64 {
	i := strings.LastIndex(name, "-n_")
	n, err := strconv.ParseInt(name[i+3:], 10, 64)
	if i < 0 || err != nil {
		return -1
	}
	return n
}

// position returns the election's candidates and the one just before me ("" if
// I am first); nil children if my node is gone.
func (k *Candidate) position(ctx context.Context, me string) ([]string, string, error) {
	children, err := call(ctx, k.c, func(conn *zk.Conn) ([]string, error) {
		children, _, err := conn.Children(k.p.Election(k.cfg.Partition))
		return children, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list election: %w", err)
	}
	sort.Slice(children, func(i, j int) bool { return seq(children[i]) < seq(children[j]) })
	for i, ch := range children {
		if ch == me {
			if i == 0 {
				return children, "", nil
			}
			return children, children[i-1], nil
		}
	}
	return nil, "", nil
}

// lead makes this replica the leader under session: it bumps the epoch with a
// versioned write and creates the leader znode, atomically.
func (k *Candidate) lead(ctx context.Context, session int64) (uint64, error) {
	return call(ctx, k.c, func(conn *zk.Conn) (uint64, error) {
		for range 10 {
			data, st, err := conn.Get(k.p.Epoch(k.cfg.Partition))
			if err != nil {
				return 0, fmt.Errorf("read epoch: %w", err)
			}
			cur, err := strconv.ParseUint(string(data), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("epoch znode %s holds %q: %w", k.p.Epoch(k.cfg.Partition), data, err)
			}
			next := cur + 1
			info, _ := json.Marshal(LeaderInfo{Addr: k.cfg.Addr, Epoch: next})
			_, err = conn.Multi(
				&zk.SetDataRequest{Path: k.p.Epoch(k.cfg.Partition), Data: []byte(strconv.FormatUint(next, 10)), Version: st.Version},
				&zk.CreateRequest{Path: k.p.Leader(k.cfg.Partition), Data: info, Acl: zk.WorldACL(zk.PermAll), Flags: zk.FlagEphemeral},
			)
			switch {
			case err == nil:
				return next, nil
			case errors.Is(err, zk.ErrBadVersion):
				continue // another writer bumped it: read again
			case errors.Is(err, zk.ErrNodeExists):
				// A leader znode left over: ours from an earlier term of this
				// session is removed; another session's goes with that session.
				_, lst, gerr := conn.Get(k.p.Leader(k.cfg.Partition))
				if gerr != nil {
					continue
				}
				if lst.EphemeralOwner == session {
					_ = conn.Delete(k.p.Leader(k.cfg.Partition), lst.Version)
					continue
				}
				return 0, fmt.Errorf("leader znode still held by session %#x", lst.EphemeralOwner)
			default:
				return 0, fmt.Errorf("take leadership: %w", err)
			}
		}
		return 0, errors.New("take leadership: epoch keeps changing")
	})
}

// learnEpoch records the partition's current epoch as a follower knows it.
func (k *Candidate) learnEpoch(ctx context.Context) {
	data, err := call(ctx, k.c, func(conn *zk.Conn) ([]byte, error) {
		data, _, err := conn.Get(k.p.Epoch(k.cfg.Partition))
		return data, err
	})
	if err != nil {
		return
	}
	if e, err := strconv.ParseUint(string(data), 10, 64); err == nil {
		k.mu.Lock()
		k.epoch = max(k.epoch, e)
		k.mu.Unlock()
	}
}

// memberData is the replica's members znode content now.
func (k *Candidate) memberData() []byte {
	role, epoch := k.Role()
	data, _ := json.Marshal(Member{Addr: k.cfg.Addr, Partition: k.cfg.Partition, Role: role, Epoch: epoch, AppliedLSN: k.cfg.Applied()})
	return data
}

// publish refreshes the members znode (role, epoch, applied LSN) on role
// changes and every cfg.Publish.
func (k *Candidate) publish(ctx context.Context) {
	path := k.p.Members(k.cfg.Partition) + "/" + k.cfg.Addr
	tick := time.NewTicker(k.cfg.Publish)
	defer tick.Stop()
	var last []byte
	for {
		changed := k.Changed()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-changed:
		}
		session, ok := k.c.Lease()
		if _, leads := k.Leader(); ok && !leads {
			op, cancel := context.WithTimeout(ctx, k.c.cfg.SessionTimeout/2)
			k.learnEpoch(op)
			cancel()
		}
		data := k.memberData()
		if !ok || string(data) == string(last) {
			continue
		}
		op, cancel := context.WithTimeout(ctx, k.c.cfg.SessionTimeout/2)
		err := k.c.Do(op, func(conn *zk.Conn) error {
			_, st, err := conn.Exists(path)
			if err != nil || st == nil || st.EphemeralOwner != session {
				return err // not registered under this session yet
			}
			_, err = conn.Set(path, data, -1)
			return err
		})
		cancel()
		if err == nil {
			last = data
		}
	}
}

// withdraw removes the replica's znodes (leader first) so another replica
// takes over without waiting for the session to expire.
func (k *Candidate) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), k.c.cfg.SessionTimeout)
	defer cancel()
	session, ok := k.c.Lease()
	if !ok {
		return
	}
	_ = k.c.Do(ctx, func(conn *zk.Conn) error {
		_, st, err := conn.Get(k.p.Leader(k.cfg.Partition))
		if err == nil && st.EphemeralOwner == session {
			_ = conn.Delete(k.p.Leader(k.cfg.Partition), st.Version)
		}
		dir := k.p.Election(k.cfg.Partition)
		children, _, _ := conn.Children(dir)
		for _, ch := range children {
			if strings.HasPrefix(ch, "_c_"+k.guid) {
				_ = conn.Delete(dir+"/"+ch, -1)
			}
		}
		_ = conn.Delete(k.p.Members(k.cfg.Partition)+"/"+k.cfg.Addr, -1)
		return nil
	})
}
