package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/errdefs"
)

// ErrNotLeader is returned by leader-only calls on a candidate that does not
// lead, or whose epoch is over (another replica took the partition). It is
// errdefs.ErrNotLeader.
var ErrNotLeader = errdefs.ErrNotLeader

// ISRInfo is the content of a partition's isr znode: the in-sync replicas (by
// member address, sorted; the leader always among them) and the epoch of the
// leader that wrote it.
type ISRInfo struct {
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members"`
}

// Contains reports whether addr is in the set.
func (i ISRInfo) Contains(addr string) bool { return slices.Contains(i.Members, addr) }

// ReadISR reads partition's in-sync replica set; ok is false when the
// partition has none yet (no leader has been elected since it was created).
func ReadISR(ctx context.Context, c *Client, partition int) (info ISRInfo, ok bool, err error) {
	p := PathsOf(c.cfg).ISR(partition)
	data, err := call(ctx, c, func(conn *zk.Conn) ([]byte, error) {
		data, _, err := conn.Get(p)
		return data, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return ISRInfo{}, false, nil
	}
	if err != nil {
		return ISRInfo{}, false, fmt.Errorf("read in-sync replicas %s: %w", p, err)
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return ISRInfo{}, false, fmt.Errorf("read in-sync replicas %s: %q: %w", p, data, err)
	}
	return info, true, nil
}

// isrSet returns members plus leader, without empties or duplicates, sorted.
func isrSet(members []string, leader string) []string {
	set := make([]string, 0, len(members)+1)
	set = append(set, leader)
	for _, m := range members {
		if m != "" {
			set = append(set, m)
		}
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// term is the leadership this candidate holds now.
type term struct {
	epoch        uint64
	session      int64
	epochVersion int32 // the epoch znode's version this leader set when it won
	isrVersion   int32 // the isr znode's version after this leader's last write
	isr          []string
}

// term returns the candidate's leadership, if it leads now (as Leader says).
func (k *Candidate) term() (term, bool) {
	session, ok := k.c.Lease()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !ok || k.role != RoleLeader || k.session != session {
		return term{}, false
	}
	return term{epoch: k.epoch, session: k.session, epochVersion: k.epochVersion, isrVersion: k.isrVersion, isr: k.isr}, true
}

// ISR returns the in-sync replica set this leader last wrote; nil when it does
// not lead.
func (k *Candidate) ISR() []string {
	t, ok := k.term()
	if !ok {
		return nil
	}
	return slices.Clone(t.isr)
}

// SetISR writes the partition's in-sync replica set: members (member
// addresses) plus this leader, which is added if missing. Only the leader may
// write it, and only in its own epoch: the write is one transaction with a
// check that the epoch znode still has the version this leader set when it
// won. It fails with ErrNotLeader when the candidate does not lead or its
// epoch is over.
func (k *Candidate) SetISR(ctx context.Context, members []string) error {
	k.isrMu.Lock()
	defer k.isrMu.Unlock()
	t, ok := k.term()
	if !ok {
		return fmt.Errorf("set in-sync replicas of partition %d on %s: %w", k.cfg.Partition, k.cfg.Addr, ErrNotLeader)
	}
	set := isrSet(members, k.cfg.Addr)
	data, err := json.Marshal(ISRInfo{Epoch: t.epoch, Members: set})
	if err != nil {
		return err
	}
	epochPath, isrPath := k.p.Epoch(k.cfg.Partition), k.p.ISR(k.cfg.Partition)
	type result struct {
		version   int32
		notLeader bool
	}
	r, err := call(ctx, k.c, func(conn *zk.Conn) (result, error) {
		version, create := t.isrVersion, false
		for range 3 {
			write := any(&zk.SetDataRequest{Path: isrPath, Data: data, Version: version})
			if create {
				write = &zk.CreateRequest{Path: isrPath, Data: data, Acl: k.c.acl}
			}
			_, err := conn.Multi(&zk.CheckVersionRequest{Path: epochPath, Version: t.epochVersion}, write)
			if err == nil {
				if create {
					return result{version: 0}, nil
				}
				return result{version: version + 1}, nil
			}
			if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrNodeExists) {
				return result{}, err
			}
			// Which check failed? The epoch's means another leader.
			ok, est, err := conn.Exists(epochPath)
			if err != nil {
				return result{}, err
			}
			if !ok || est.Version != t.epochVersion {
				return result{notLeader: true}, nil
			}
			// The epoch holds, so the isr znode changed under this leader: most
			// likely its own write whose reply was lost. Write over it only if
			// it is this epoch's.
			cur, ist, err := conn.Get(isrPath)
			if errors.Is(err, zk.ErrNoNode) {
				create = true
				continue
			}
			if err != nil {
				return result{}, err
			}
			var info ISRInfo
			if err := json.Unmarshal(cur, &info); err != nil || info.Epoch != t.epoch {
				return result{}, fmt.Errorf("%s was rewritten outside this leader (epoch %d): %q", isrPath, t.epoch, cur)
			}
			version, create = ist.Version, false
		}
		return result{}, fmt.Errorf("%s keeps changing", isrPath)
	})
	if err != nil {
		return fmt.Errorf("set in-sync replicas of partition %d: %w", k.cfg.Partition, err)
	}
	if r.notLeader {
		return fmt.Errorf("set in-sync replicas of partition %d on %s: epoch %d is over (%s changed): %w",
			k.cfg.Partition, k.cfg.Addr, t.epoch, epochPath, ErrNotLeader)
	}
	k.mu.Lock()
	if k.role == RoleLeader && k.session == t.session && k.epochVersion == t.epochVersion {
		k.isr, k.isrVersion = set, r.version
	}
	k.mu.Unlock()
	return nil
}
