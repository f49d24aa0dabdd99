package statement

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// goroutine the package starts has an owner that stops and waits for it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
