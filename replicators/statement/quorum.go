package statement

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/plugdb/plugdb/replicators"
)

// setSizeLocked is the partition's replica set size: the configured one, or
// the replicas this leader knows of when it is larger (or not configured).
func (r *Replicator) setSizeLocked() int {
	return max(r.replicas, len(r.peers)+1)
}

// quorumLocked is how many replicas, the leader included, a semi-sync or
// sync write needs: min_insync, or else a majority of the replica set and at
// least two (a copy besides the leader's).
func (r *Replicator) quorumLocked() int {
	if r.cfg.minInsync > 0 {
		return r.cfg.minInsync
	}
	return max(2, r.setSizeLocked()/2+1)
}

// inSyncLocked is the number of in-sync replicas, the leader included.
func (r *Replicator) inSyncLocked() int {
	n := 1
	for _, f := range r.peers {
		if f.isr {
			n++
		}
	}
	return n
}

// hopelessLocked reports whether mode cannot be met for now: fewer replicas
// are in sync, or followers catching up on a live stream, than it needs.
// Such a write fails at once rather than after ack_timeout.
func (r *Replicator) hopelessLocked(mode replicators.Ack) bool {
	if mode != replicators.AckSemiSync && mode != replicators.AckSync {
		return false
	}
	n := 1
	for _, f := range r.peers {
		if f.isr || f.connected {
			n++
		}
	}
	return n < r.quorumLocked()
}

// shortErrLocked says why a write in mode cannot be acknowledged now.
func (r *Replicator) shortErrLocked(lsn uint64, mode replicators.Ack) error {
	q := r.quorumLocked()
	how := "a majority, and at least 2"
	if r.cfg.minInsync > 0 {
		how = fmt.Sprintf("min_insync %d", r.cfg.minInsync)
	}
	hint := ""
	if q > 1 {
		hint = "; the statement replicator's option min_insync: 1 lets the leader acknowledge alone, at the risk of losing writes on failover"
	}
	return fmt.Errorf("partition %d: ack %s needs %d of %d replicas in sync (%s) and %d are (the leader and %s); lsn %d is in the leader's log and commits only if a replica catches up%s: %w",
		r.part, mode, q, r.setSizeLocked(), how, r.inSyncLocked(), r.inSyncNamesLocked(), lsn, hint, replicators.ErrTooFewInSync)
}

// inSyncNamesLocked lists the in-sync followers, or says there are none.
func (r *Replicator) inSyncNamesLocked() string {
	var names []string
	for addr, f := range r.peers {
		if f.isr {
			names = append(names, addr)
		}
	}
	if len(names) == 0 {
		return "no follower"
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// metLocked reports whether lsn meets mode: async, the leader's log;
// semi-sync, the logs of quorum replicas (the leader and in-sync followers);
// sync, the logs of every in-sync replica, and of at least quorum.
func (r *Replicator) metLocked(lsn uint64, mode replicators.Ack) bool {
	if r.persisted < lsn {
		return false
	}
	switch mode {
	case replicators.AckSemiSync:
		n := 1
		for _, f := range r.peers {
			if f.isr && f.persisted >= lsn {
				n++
			}
		}
		return n >= r.quorumLocked()
	case replicators.AckSync:
		for _, f := range r.peers {
			if f.isr && f.persisted < lsn {
				return false
			}
		}
		return r.inSyncLocked() >= r.quorumLocked()
	}
	return true
}

// commitPointLocked is the highest LSN that meets mode.
func (r *Replicator) commitPointLocked(mode replicators.Ack) uint64 {
	switch mode {
	case replicators.AckSemiSync:
		// The quorum-th highest persisted LSN among the in-sync replicas.
		lsns := []uint64{r.persisted}
		for _, f := range r.peers {
			if f.isr {
				lsns = append(lsns, min(f.persisted, r.persisted))
			}
		}
		q := r.quorumLocked()
		if len(lsns) < q {
			return 0
		}
		slices.Sort(lsns)
		return lsns[len(lsns)-q]
	case replicators.AckSync:
		if r.inSyncLocked() < r.quorumLocked() {
			return 0
		}
		c := r.persisted
		for _, f := range r.peers {
			if f.isr {
				c = min(c, f.persisted)
			}
		}
		return c
	}
	return r.persisted
}
