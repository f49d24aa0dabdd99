package plugins

import (
	"sync"

	"github.com/hashicorp/go-hclog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// served is what a kind's server holds (embedded): the kind's OpenFunc O, the
// logger, and the one instance the plugin process serves (T is the kind's
// interface; its nil means not yet opened), under a mutex. The host's open
// call (Open, or the partitioner's Configure) opens it, every later call gets
// it. The errors are FailedPrecondition, worded from what ("engine"), state
// ("open") and call ("Open").
type served[O, T any] struct {
	open O            // opens the instance
	log  hclog.Logger // handed to the instance

	what, state, call string
	none              bool // the plugin serves no T (open is nil)

	mu sync.Mutex
	v  T
}

// newServed returns a server's served: open (none says it is nil), and log
// (nil: a null logger).
func newServed[T, O any](open O, none bool, log hclog.Logger, what, state, call string) *served[O, T] {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &served[O, T]{open: open, log: log, what: what, state: state, call: call, none: none}
}

// get returns the opened instance, or FailedPrecondition if it is not yet.
func (s *served[O, T]) get() (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if any(s.v) == nil {
		return s.v, status.Errorf(codes.FailedPrecondition, "%s not %s: call %s first", s.what, s.state, s.call)
	}
	return s.v, nil
}

// peek returns the instance, nil if not yet opened.
func (s *served[O, T]) peek() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}

// openOnce opens the instance with open, once: FailedPrecondition if it is
// already opened or the plugin serves none. open's error (already a status)
// is returned as is, and the instance stays unopened.
func (s *served[O, T]) openOnce(open func() (T, error)) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero T
	if any(s.v) != nil {
		return zero, status.Errorf(codes.FailedPrecondition, "%s already %s: a plugin process serves one %s", s.what, s.state, s.what)
	}
	if s.none {
		return zero, status.Error(codes.FailedPrecondition, "plugin serves no "+s.what)
	}
	v, err := open()
	if err != nil {
		return zero, err
	}
	s.v = v
	return v, nil
}
