package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
)

// A partition of three replicas with semi-sync acks loses one node — its
// leader, then, after it returned, a follower — and takes every write through the router once a
// leader is in place; with two of three down a write fails at once, naming
// the counts; once the nodes return, every acknowledged write is there.
func TestThreeReplicasSurviveANodeLoss(t *testing.T) {
	t.Parallel()
	c := newReplicatedCluster(t, 1, 3, statementRepl("semi-sync"))
	st := c.waitInSync(0)
	if ps := partStatus(st, 0); ps.GetInSync() != 3 || ps.GetAckNeeds() != 2 {
		t.Fatalf("status: %d in sync, ack needs %d; want 3 and 2", ps.GetInSync(), ps.GetAckNeeds())
	}
	acked := map[string]string{}
	putAll := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			k, v := fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf("v%d", i)
			if _, err := c.put(k, v, 10*time.Second); err != nil {
				t.Fatalf("put %s (%d of %d in a row): %v\n%s", k, i+1, n, err, c.logs())
			}
			acked[k] = v
		}
	}
	putAll("before", 20)

	// kill -9 of the leader: a new leader, then 60 puts in a row all succeed.
	old, oldEpoch := c.leaderOf(st, 0)
	c.signalGroup(old, syscall.SIGKILL)
	<-c.nodes[old].done
	leader, _ := c.waitLeaderAfter(0, old, oldEpoch)
	putAll("after-leader-kill", 60)

	// The old leader returns as a follower; then kill -9 of a follower: the
	// leader and the other follower are a majority.
	c.startNode(old)
	c.waitInSync(0)
	follower := old
	c.signalGroup(follower, syscall.SIGKILL)
	<-c.nodes[follower].done
	putAll("after-follower-kill", 30)

	// And the other follower: one of three is left.
	var other string
	for _, a := range c.partitionNodes(0) {
		if a != old && a != leader {
			other = a
		}
	}
	c.signalGroup(other, syscall.SIGKILL)
	<-c.nodes[other].done
	c.waitFor("the dead followers out of the in-sync set", func() bool {
		st, err := c.status()
		return err == nil && partStatus(st, 0).GetInSync() == 1
	})

	// One of three left: a write fails at once, and says why.
	start := time.Now()
	_, err := c.put("alone", "x", 30*time.Second)
	if status.Code(err) != codes.Unavailable || !api.TooFewInSync(err) {
		t.Fatalf("put with one replica of three: %v, want Unavailable with reason %s", err, api.ReasonTooFewInSync)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "needs 2 of 3 replicas in sync") || !strings.Contains(msg, "1 are") {
		t.Fatalf("message %q does not give the counts", msg)
	}
	t.Logf("with one of three replicas a put failed after %v: %s", time.Since(start).Round(time.Millisecond), status.Convert(err).Message())

	// The nodes return and catch up; writes go on and nothing was lost.
	c.startNode(follower)
	c.startNode(other)
	c.waitInSync(0)
	putAll("after-return", 20)
	found, missing, wrong := c.readThroughRouter(acked)
	if len(missing) > 0 || len(wrong) > 0 {
		t.Fatalf("%d of %d acknowledged writes found; missing %v, wrong %v", found, len(acked), missing, wrong)
	}
	// Every replica comes to hold the same rows.
	c.waitFor("every replica holds the same rows", func() bool {
		var first map[string]string
		for _, a := range c.partitionNodes(0) {
			rows, err := scanNode(t, a)
			if err != nil || len(rows) < len(acked) {
				return false
			}
			if first == nil {
				first = rows
			} else if firstDiff(first, rows) != "none" {
				return false
			}
		}
		return true
	})
}
