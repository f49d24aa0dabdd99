package coord

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"

	"github.com/go-zookeeper/zk"
)

// ErrPartitionInUse is wrapped by ForgetPartitions's error when a partition
// it should forget still has a node registered.
var ErrPartitionInUse = errors.New("partition still has nodes")

// ForgetPartitions removes the znodes of the keyspace's partitions numbered
// from on — those a move to fewer partitions retired — once none of their
// nodes is registered, and returns the partitions it removed. Their epoch and
// in-sync replica set would otherwise bar the nodes of a later move that
// adds those partitions again (a replica outside the recorded set may not
// lead). It refuses while a move is recorded, and fails, removing nothing
// more, at the first partition with a node still registered.
func ForgetPartitions(ctx context.Context, c *Client, from int) ([]int, error) {
	if from < 1 {
		return nil, fmt.Errorf("forget partitions from %d: allowed values are 1 or more", from)
	}
	p := PathsOf(c.cfg)
	var removed []int
	err := c.Do(ctx, func(conn *zk.Conn) error {
		removed = removed[:0] // Do may run fn again
		if ok, _, err := conn.Exists(p.Reshard()); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%w: forget retired partitions once it ends", ErrReshardRunning)
		}
		names, _, err := conn.Children(path.Dir(p.Partition(0)))
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		var parts []int
		for _, name := range names {
			if n, err := strconv.Atoi(name); err == nil && n >= from {
				parts = append(parts, n)
			}
		}
		slices.Sort(parts)
		for _, n := range parts {
			var members []string
			for _, dir := range []string{p.Members(n), p.Election(n)} {
				names, _, err := conn.Children(dir)
				if err != nil && !errors.Is(err, zk.ErrNoNode) {
					return err
				}
				members = append(members, names...)
			}
			if len(members) > 0 {
				return fmt.Errorf("partition %d: %w registered (%d): stop them first", n, ErrPartitionInUse, len(members))
			}
			if err := deleteTree(conn, p.Partition(n)); err != nil {
				return fmt.Errorf("remove partition %d's znodes: %w", n, err)
			}
			removed = append(removed, n)
		}
		return nil
	})
	return removed, err
}

// deleteTree deletes dir and everything under it.
func deleteTree(conn *zk.Conn, dir string) error {
	children, _, err := conn.Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, ch := range children {
		if err := deleteTree(conn, dir+"/"+ch); err != nil {
			return err
		}
	}
	if err := conn.Delete(dir, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("delete %s: %w", dir, err)
	}
	return nil
}
