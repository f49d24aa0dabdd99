package router

import (
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/plugdb/plugdb/core/partition"
)

// sessions hands out the request ids of writes that come without one. A
// partition keeps one row per client id with its latest seq and refuses a
// lower seq, so a client id must carry one write at a time: each write takes
// a session (a client id of its own with its next seq) for as long as it
// runs, retries included, and gives it back. The pool grows to the router's
// peak of concurrent writes; the client ids start with a random prefix per
// router process.
type sessions struct {
	prefix string

	mu   sync.Mutex
	free []*session
	made int
}

// session is one client id of the router and the last seq it used.
type session struct {
	client string
	seq    uint64
}

func newSessions() *sessions {
	return &sessions{prefix: "router-" + rand.Text()}
}

// take returns a session not in use, with the request id of its next write.
func (s *sessions) take() (*session, partition.RequestID) {
	s.mu.Lock()
	var x *session
	if n := len(s.free); n > 0 {
		x, s.free = s.free[n-1], s.free[:n-1]
	} else {
		x = &session{client: fmt.Sprintf("%s-%d", s.prefix, s.made)}
		s.made++
	}
	s.mu.Unlock()
	x.seq++
	return x, partition.RequestID{Client: x.client, Seq: x.seq}
}

// put gives a session back once its write is answered.
func (s *sessions) put(x *session) {
	s.mu.Lock()
	s.free = append(s.free, x)
	s.mu.Unlock()
}
