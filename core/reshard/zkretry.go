package reshard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/coord"
)

// zkRetryFor bounds how long a step of the move waits out a ZooKeeper
// connection that broke (the client reconnects, its session lives on).
const zkRetryFor = 30 * time.Second

// transient reports whether err is a broken ZooKeeper connection, after
// which the same request may succeed.
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer)
}

// zkRetry runs fn again while it fails on a broken ZooKeeper connection,
// for up to zkRetryFor.
func zkRetry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(zkRetryFor)
	for {
		err := fn()
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond): // the client reconnects
		}
	}
}

// advance moves the recorded move's state by step, through a broken
// connection: a step whose answer was lost may have been made, which the
// record, read again, says.
func (m *Mover) advance(ctx context.Context, to coord.ReshardState, step func() error) error {
	tried := false
	return zkRetry(ctx, func() error {
		if tried {
			if r, ok, err := coord.ReadReshard(ctx, m.Client); err != nil {
				return err
			} else if ok && r.State == to {
				return nil // the lost answer's step was made
			}
		}
		tried = true
		return step()
	})
}
