package plugins

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// served is the one instance a plugin process serves (T is the kind's
// interface; its nil means not yet opened), under a mutex: the host's open
// call (Open, or the partitioner's Configure) opens it, every later call gets
// it. The errors are FailedPrecondition, worded from what ("engine"), state
// ("open") and call ("Open").
type served[T any] struct {
	what, state, call string
	none              bool // the plugin serves no T (its OpenFunc is nil)

	mu sync.Mutex
	v  T
}

// get returns the opened instance, or FailedPrecondition if it is not yet.
func (s *served[T]) get() (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if any(s.v) == nil {
		return s.v, status.Errorf(codes.FailedPrecondition, "%s not %s: call %s first", s.what, s.state, s.call)
	}
	return s.v, nil
}

// peek returns the instance, nil if not yet opened.
func (s *served[T]) peek() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}

// open opens the instance with open, once: FailedPrecondition if it is already
// opened or the plugin serves none. open's error (already a status) is
// returned as is, and the instance stays unopened.
func (s *served[T]) open(open func() (T, error)) (T, error) {
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
