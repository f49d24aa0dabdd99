package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
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
	// Repl is the replica's replicator address ("" if it has none).
	Repl string `json:"repl,omitempty"`
}

// LeaderInfo is the content of a partition's leader znode.
type LeaderInfo struct {
	Addr  string `json:"addr"`
	Epoch uint64 `json:"epoch"`
	// Repl is the leader's replicator address ("" if it has none).
	Repl string `json:"repl,omitempty"`
}

// CandidateConfig describes one replica taking part in its partition.
type CandidateConfig struct {
	// Partition is the replica's partition.
	Partition int
	// Addr is where clients and the router reach the replica; it is also the
	// replica's identity in the members znodes and the in-sync replica set.
	Addr string
	// Repl is the replica's replicator address, published in its members
	// znode and, while it leads, in the leader znode ("" if none).
	Repl string
	// Unclean lets this replica become leader although it is not in the
	// partition's in-sync replica set, as a last resort: only when no in-sync
	// replica is running for leader. It then loses every write the previous
	// leader acknowledged that this replica never received, and the
	// in-sync set restarts as this replica alone. Without it (the default) a
	// partition whose in-sync replicas are all gone has no leader until one
	// of them returns.
	Unclean bool
	// Applied returns the replica's applied LSN, published in its members znode.
	Applied func() uint64
	// Publish is how often the members znode is refreshed (default 1s).
	Publish time.Duration
}

// Candidate registers a replica in its partition and runs for leader. A
// candidate watches only its predecessor in the election (no herd effect).
// It steps down the moment its session is in doubt, and after the session
// expires it registers and runs again under the new one.
//
// Only a replica in the partition's in-sync replica set (the isr znode) may
// win: one first in line that is not in it (and not Unclean) steps aside —
// leaves the election and enters again at the back after a pause — so that an
// in-sync replica behind it wins. A partition with no isr znode yet is new:
// its first leader creates the set as itself alone.
type Candidate struct {
	c    *Client
	p    Paths
	cfg  CandidateConfig
	guid string // names this process's election node (a protected node)

	isrMu sync.Mutex // serializes SetISR
	aside string     // why the candidate last stepped aside (logged once); Run's goroutine only

	mu           sync.Mutex
	role         string
	epoch        uint64
	session      int64 // the session the leadership belongs to
	epochVersion int32 // the epoch znode's version set when this leader won
	isr          []string
	isrVersion   int32 // the isr znode's version after this leader's last write
	changed      chan struct{}
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
	published := make(chan struct{})
	go func() {
		defer close(published)
		k.publish(ctx)
	}()
	for {
		err := k.runSession(ctx)
		k.setRole(RoleFollower, 0, 0)
		if ctx.Err() != nil {
			<-published // it publishes nothing after the withdrawal
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
	leading := false           // this loop won under session and has not stepped down
	var epochW <-chan zk.Event // the leader's watch on the epoch znode
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
		switch {
		case pred == "" && leading:
			// Still first: check that no one bumped the epoch since we won
			// (our fence), and watch it.
			w, ours, err := k.checkEpoch(op, epochW == nil)
			if err != nil {
				return err
			}
			if w != nil {
				epochW = w
			}
			if !ours {
				k.c.log.Warn("the partition's epoch changed under its leader: stepping down", "partition", k.cfg.Partition, "addr", k.cfg.Addr, "path", k.p.Epoch(k.cfg.Partition))
				k.setRole(RoleFollower, 0, 0)
				leading, epochW = false, nil
				if me, err = k.stepAside(op, session, me, true); err != nil {
					return err
				}
				continue
			}
			watch = epochW
		case pred == "":
			w, err := k.lead(op, session)
			if errors.Is(err, errIneligible) {
				k.noteAside(w)
				if me, err = k.stepAside(op, session, me, false); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			k.aside = ""
			k.mu.Lock()
			k.epochVersion, k.isr, k.isrVersion = w.epochVersion, w.isr, w.isrVersion
			k.mu.Unlock()
			k.setRole(RoleLeader, w.epoch, session)
			if w.unclean != nil {
				k.c.log.Warn("unclean leader election: this replica was not in sync; writes the previous leader acknowledged that it never received are lost",
					"partition", k.cfg.Partition, "addr", k.cfg.Addr, "epoch", w.epoch, "previous_isr", strings.Join(w.unclean, ","))
			}
			leading = true
			continue // arm the epoch watch
		default:
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
		case <-watch: // the predecessor's node, or the leader's epoch
			if watch == epochW {
				epochW = nil // fired (a watch fires once): arm again
			}
		}
	}
}

// errIneligible is lead's answer when this candidate may not lead now.
var errIneligible = errors.New("not eligible to lead")

// noteAside logs, once per change, why the candidate steps aside.
func (k *Candidate) noteAside(w won) {
	isr := strings.Join(w.isr, ",")
	why := w.aside + "|" + isr
	if why == k.aside {
		return
	}
	k.aside = why
	if w.aside == asideWaitISR {
		k.c.log.Info("not in the in-sync replica set, and an in-sync replica is running: leaving leadership to it",
			"partition", k.cfg.Partition, "addr", k.cfg.Addr, "isr", isr)
		return
	}
	k.c.log.Warn("not in the in-sync replica set: stepping aside so that an in-sync replica can lead (start a replica with unclean election allowed to accept losing writes instead)",
		"partition", k.cfg.Partition, "addr", k.cfg.Addr, "isr", isr)
}

// stepAside leaves the election — deleting the election node me, and with
// leader the leader znode if this session holds it — waits a moment and
// enters again at the back of the line. It returns the new election node.
func (k *Candidate) stepAside(ctx context.Context, session int64, me string, leader bool) (string, error) {
	err := k.c.Do(ctx, func(conn *zk.Conn) error {
		if leader {
			_, st, err := conn.Get(k.p.Leader(k.cfg.Partition))
			if err == nil && st.EphemeralOwner == session {
				err = conn.Delete(k.p.Leader(k.cfg.Partition), st.Version)
			}
			if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrBadVersion) {
				return fmt.Errorf("remove leader znode: %w", err)
			}
		}
		if err := conn.Delete(k.p.Election(k.cfg.Partition)+"/"+me, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("leave election: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	// The pause lets the replicas behind take their turn; its jitter keeps
	// two ineligible replicas from stepping aside in lockstep.
	pause := stepAsidePause + mrand.N(stepAsidePause)
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(pause):
	}
	return k.enter(ctx, session)
}

// stepAsidePause is the least time an ineligible candidate stays out of the
// election after stepping aside (at most twice that).
const stepAsidePause = 500 * time.Millisecond

// checkEpoch reports whether the epoch znode still has the version this leader
// set when it won; with arm it also returns a watch on it.
func (k *Candidate) checkEpoch(ctx context.Context, arm bool) (<-chan zk.Event, bool, error) {
	k.mu.Lock()
	want := k.epochVersion
	k.mu.Unlock()
	type result struct {
		w  <-chan zk.Event
		st *zk.Stat
	}
	r, err := call(ctx, k.c, func(conn *zk.Conn) (result, error) {
		if arm {
			_, st, w, err := conn.GetW(k.p.Epoch(k.cfg.Partition))
			return result{w, st}, err
		}
		_, st, err := conn.Get(k.p.Epoch(k.cfg.Partition))
		return result{nil, st}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("check epoch: %w", err)
	}
	return r.w, r.st.Version == want, nil
}

// register creates the replica's members znode under session, replacing one
// left by this address's previous process.
func (k *Candidate) register(ctx context.Context, session int64) error {
	path := k.p.Members(k.cfg.Partition) + "/" + k.cfg.Addr
	data := k.memberData()
	return k.c.Do(ctx, func(conn *zk.Conn) error {
		for range 3 {
			_, err := conn.Create(path, data, zk.FlagEphemeral, k.c.acl)
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
			created, err := conn.Create(dir+"/"+prefix, []byte(k.cfg.Addr), zk.FlagEphemeral|zk.FlagSequence, k.c.acl)
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

// won is the outcome of lead: the term won, or (with errIneligible) why not.
type won struct {
	epoch        uint64
	epochVersion int32
	isr          []string // the set written; if ineligible, the set that excludes us
	isrVersion   int32
	unclean      []string // won uncleanly: the in-sync set this replica was not in
	aside        string   // if ineligible: asideNotISR or asideWaitISR
}

// Why a candidate steps aside.
const (
	asideNotISR  = "not in the in-sync replica set"
	asideWaitISR = "an in-sync replica is running"
)

// lead makes this replica the leader under session, if it is eligible: in the
// in-sync replica set, or Unclean with no in-sync replica running. In one
// transaction it bumps the epoch with a versioned write, creates the leader
// znode and writes the in-sync set in the new epoch (created as this replica
// alone for a new partition; after an unclean election, this replica alone;
// otherwise kept) with a versioned write, so that the set it judged
// eligibility by is the one it takes over.
func (k *Candidate) lead(ctx context.Context, session int64) (won, error) {
	epochPath, leaderPath, isrPath := k.p.Epoch(k.cfg.Partition), k.p.Leader(k.cfg.Partition), k.p.ISR(k.cfg.Partition)
	return call(ctx, k.c, func(conn *zk.Conn) (won, error) {
		for range 10 {
			data, st, err := conn.Get(epochPath)
			if err != nil {
				return won{}, fmt.Errorf("read epoch: %w", err)
			}
			cur, err := strconv.ParseUint(string(data), 10, 64)
			if err != nil {
				return won{}, fmt.Errorf("epoch znode %s holds %q: %w", epochPath, data, err)
			}
			w := won{epoch: cur + 1, epochVersion: st.Version + 1}

			var isrOp any
			idata, ist, err := conn.Get(isrPath)
			switch {
			case errors.Is(err, zk.ErrNoNode): // a new partition
				w.isr, w.isrVersion = []string{k.cfg.Addr}, 0
				isrOp = &zk.CreateRequest{Path: isrPath, Acl: k.c.acl}
			case err != nil:
				return won{}, fmt.Errorf("read in-sync replicas: %w", err)
			default:
				var prev ISRInfo
				if err := json.Unmarshal(idata, &prev); err != nil {
					return won{}, fmt.Errorf("in-sync replicas znode %s holds %q: %w", isrPath, idata, err)
				}
				w.isr, w.isrVersion = isrSet(prev.Members, k.cfg.Addr), ist.Version+1
				if !prev.Contains(k.cfg.Addr) {
					w.isr, w.aside = slices.Clone(prev.Members), asideNotISR
					if !k.cfg.Unclean {
						return w, errIneligible
					}
					running, err := k.isrRunning(conn, prev.Members)
					if err != nil {
						return won{}, err
					}
					if running {
						w.aside = asideWaitISR
						return w, errIneligible
					}
					w.aside, w.unclean, w.isr = "", w.isr, []string{k.cfg.Addr}
				}
				isrOp = &zk.SetDataRequest{Path: isrPath, Version: ist.Version}
			}
			isrData, _ := json.Marshal(ISRInfo{Epoch: w.epoch, Members: w.isr})
			switch op := isrOp.(type) {
			case *zk.CreateRequest:
				op.Data = isrData
			case *zk.SetDataRequest:
				op.Data = isrData
			}

			info, _ := json.Marshal(LeaderInfo{Addr: k.cfg.Addr, Epoch: w.epoch, Repl: k.cfg.Repl})
			_, err = conn.Multi(
				&zk.SetDataRequest{Path: epochPath, Data: []byte(strconv.FormatUint(w.epoch, 10)), Version: st.Version},
				&zk.CreateRequest{Path: leaderPath, Data: info, Acl: k.c.acl, Flags: zk.FlagEphemeral},
				isrOp,
			)
			switch {
			case err == nil:
				return w, nil
			case errors.Is(err, zk.ErrBadVersion):
				continue // another writer bumped the epoch or rewrote the set: read again
			case errors.Is(err, zk.ErrNodeExists):
				// A leader znode left over (or the isr znode just created):
				// ours from an earlier term of this session is removed;
				// another session's goes with that session.
				_, lst, gerr := conn.Get(leaderPath)
				if gerr != nil {
					continue
				}
				if lst.EphemeralOwner == session {
					_ = conn.Delete(leaderPath, lst.Version)
					continue
				}
				return won{}, fmt.Errorf("leader znode still held by session %#x", lst.EphemeralOwner)
			default:
				return won{}, fmt.Errorf("take leadership: %w", err)
			}
		}
		return won{}, errors.New("take leadership: epoch keeps changing")
	})
}

// isrRunning reports whether a replica of the in-sync set isr is running for
// leader (has an election node, whose content is its address).
func (k *Candidate) isrRunning(conn *zk.Conn, isr []string) (bool, error) {
	dir := k.p.Election(k.cfg.Partition)
	children, _, err := conn.Children(dir)
	if err != nil {
		return false, fmt.Errorf("list %s: %w", dir, err)
	}
	for _, ch := range children {
		data, _, err := conn.Get(dir + "/" + ch)
		if errors.Is(err, zk.ErrNoNode) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("read %s/%s: %w", dir, ch, err)
		}
		if slices.Contains(isr, string(data)) {
			return true, nil
		}
	}
	return false, nil
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
	data, _ := json.Marshal(Member{Addr: k.cfg.Addr, Partition: k.cfg.Partition, Role: role, Epoch: epoch, AppliedLSN: k.cfg.Applied(), Repl: k.cfg.Repl})
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
