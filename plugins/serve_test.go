package plugins

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestExitWithParentEndsWithServe: the host watch stops when Serve returns.
func TestExitWithParentEndsWithServe(t *testing.T) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		exitWithParent(hclog.NewNullLogger(), done)
	}()
	time.Sleep(parentPoll + parentPoll/2) // at least one check of a live parent
	close(done)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("exitWithParent still runs after its done channel closed")
	}
}
