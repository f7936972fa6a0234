package main

import (
	"sync"
	"sync/atomic"
)

// stored is one cached answer: what the workers said, kept until it expires or a
// change to its identifier (a NOTIFY on idres_changed) makes it old.
type stored struct {
	status  int
	body    []byte
	key     string // the canonical identifier whose change makes this answer old
	expires int64  // unix nanoseconds
}

// Cache holds answers by request target (the path and query exactly as the client
// sent them): a hit costs one map lookup, with no parsing of the identifier. The
// workers name each answer's identifier, so a change to it reaches every spelling.
//
// Coherence: an answer is taken only if no invalidation reached the edge between
// the moment its request was forwarded and the moment it came back (gen), and only
// while the edge listens. The workers read such an answer fresh (not from their own
// caches) after it was forwarded, so it is at least as new as every change the edge
// had heard of then; a change it may have missed bumps gen and the answer is passed
// on but not kept.
type Cache struct {
	mu        sync.RWMutex
	byTarget  map[string]stored
	byKey     map[string][]string
	gen       uint64
	listening bool
	max       int

	hits, fills, stale, evicted, invalidated atomic.Uint64
}

func NewCache(max int) *Cache {
	return &Cache{byTarget: map[string]stored{}, byKey: map[string][]string{}, max: max}
}

// Get is the answer cached for target, if it has not expired.
func (c *Cache) Get(target []byte, now int64) (stored, bool) {
	c.mu.RLock()
	s, ok := c.byTarget[string(target)] // no allocation: the compiler sees the lookup
	c.mu.RUnlock()
	if !ok || s.expires <= now {
		return stored{}, false
	}
	c.hits.Add(1)
	return s, true
}

// Gen is the generation to pass to Put for a request forwarded now, and whether an
// answer to it could be kept at all.
func (c *Cache) Gen() (uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen, c.listening && c.max > 0
}

// Put keeps an answer unless an invalidation came after gen. It reports whether it did.
func (c *Cache) Put(target string, s stored, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || !c.listening || c.max <= 0 {
		c.stale.Add(1)
		return false
	}
	if old, ok := c.byTarget[target]; ok {
		c.unindex(target, old.key)
	} else {
		for len(c.byTarget) >= c.max { // a random victim: Go's map order is random
			for victim, v := range c.byTarget {
				delete(c.byTarget, victim)
				c.unindex(victim, v.key)
				c.evicted.Add(1)
				break
			}
		}
	}
	c.byTarget[target] = s
	c.byKey[s.key] = append(c.byKey[s.key], target)
	c.fills.Add(1)
	return true
}

func (c *Cache) unindex(target, key string) {
	targets := c.byKey[key]
	for i, t := range targets {
		if t == target {
			targets[i] = targets[len(targets)-1]
			targets = targets[:len(targets)-1]
			break
		}
	}
	if len(targets) == 0 {
		delete(c.byKey, key)
	} else {
		c.byKey[key] = targets
	}
}

// Invalidate forgets every answer about keys (a commit changed them).
func (c *Cache) Invalidate(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, key := range keys {
		for _, target := range c.byKey[key] {
			delete(c.byTarget, target)
			c.invalidated.Add(1)
		}
		delete(c.byKey, key)
	}
}

// Forget drops everything: the edge stopped (or started again) listening, and cannot
// know what changed meanwhile. listening says whether answers may be kept from now.
func (c *Cache) Forget(listening bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.invalidated.Add(uint64(len(c.byTarget)))
	c.byTarget = map[string]stored{}
	c.byKey = map[string][]string{}
	c.listening = listening
}

// Clear drops everything and what is under way, and goes on keeping as before.
func (c *Cache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.invalidated.Add(uint64(len(c.byTarget)))
	c.byTarget = map[string]stored{}
	c.byKey = map[string][]string{}
}

// Len is the number of answers held.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byTarget)
}

// Listening is whether the edge hears the node's changes now.
func (c *Cache) Listening() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.listening
}
