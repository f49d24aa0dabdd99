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
	// Not a synchronisation: time for at least one check of the live parent,
	// which must not end the watch.
	time.Sleep(parentPoll + parentPoll/2)
	select {
	case <-ended:
		t.Fatal("exitWithParent returned while its parent lives and done is open")
	default:
	}
	close(done)
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("exitWithParent still runs after its done channel closed")
	}
}
