package loader

import (
	"context"
	"time"
)

// restartBackoff is the wait after the failed restart attempt number
// attempt (1, 2, …) before the next one.
func restartBackoff(attempt int) time.Duration {
	return time.Duration(attempt) * 100 * time.Millisecond
}

// backoff waits restartBackoff(attempt), or until ctx ends (the plugin is
// closing); it reports whether the wait passed and restarting may go on.
func backoff(ctx context.Context, attempt int) bool {
	t := time.NewTimer(restartBackoff(attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// closeTimeout bounds a plugin's Close call: a plugin that does not answer
// in that time is killed all the same.
func (l *Loader) closeTimeout() time.Duration { return l.startTimeout() }
