package ui

import (
	"sync"
	"time"
)

// Event is a leader change the router saw: partition Partition of Keyspace
// moved from the leader From (in FromEpoch) to To (in Epoch) at Time.
type Event struct {
	Time      time.Time `json:"time"`
	Keyspace  string    `json:"keyspace"`
	Partition int       `json:"partition"`
	From      string    `json:"from"`
	FromEpoch uint64    `json:"from_epoch"`
	To        string    `json:"to"`
	Epoch     uint64    `json:"epoch"`
}

// Events keeps the last few events, oldest dropped first. It is safe for
// concurrent use.
type Events struct {
	mu    sync.Mutex
	ring  []Event
	next  int   // where the next event goes once ring is full
	total int64 // events ever added
}

// DefaultEvents is how many events the router keeps for the page.
const DefaultEvents = 50

// NewEvents returns an empty Events that keeps the last capacity events
// (DefaultEvents if capacity < 1).
func NewEvents(capacity int) *Events {
	if capacity < 1 {
		capacity = DefaultEvents
	}
	return &Events{ring: make([]Event, 0, capacity)}
}

// Add records e.
func (s *Events) Add(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, e)
		return
	}
	s.ring[s.next] = e
	s.next = (s.next + 1) % len(s.ring)
}

// Recent returns the events kept, newest first, and how many were ever
// added.
func (s *Events) Recent() (events []Event, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, 0, len(s.ring))
	for i := range len(s.ring) {
		// Newest first: the one before next, going back.
		out = append(out, s.ring[(s.next-1-i+2*len(s.ring))%len(s.ring)])
	}
	return out, s.total
}
