package main

import (
	"sync"
	"time"
)

// Shedder decides whether one more request may go to the workers. Past max under way,
// none; past floor, only while some request has come back within target in the last
// standing (CoDel, RFC 8289 §3: the minimum sojourn over an interval, so a burst
// passes and a standing queue does not). Below floor, always: a few slow requests
// (a write, a trip down the tree) are not a queue.
type Shedder struct {
	mu       sync.Mutex
	floor    int
	max      int
	target   time.Duration
	standing time.Duration
	inflight int
	quick    time.Time // the last forward within target, or when the queue was empty
}

func NewShedder(floor, max int, target, standing time.Duration) *Shedder {
	return &Shedder{floor: floor, max: max, target: target, standing: standing, quick: time.Now()}
}

// Start admits one more request and counts it under way, in one step (a burst
// cannot slip past max between a check and a count); false: refuse it.
func (s *Shedder) Start(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight >= s.max {
		return false
	}
	if s.inflight >= s.floor && now.Sub(s.quick) >= s.standing {
		return false
	}
	if s.inflight == 0 {
		s.quick = now
	}
	s.inflight++
	return true
}

func (s *Shedder) Landed(took time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if took <= s.target {
		s.quick = now
	}
}

func (s *Shedder) Inflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}
