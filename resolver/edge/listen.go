package main

import (
	"context"
	"encoding/json"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	changedChannel = "idres_changed" // sync/notices.py: a JSON array of identifiers, or "*"
	// sync/coherence.py: the directory changed; where an identifier is answered may
	// have too (a "not found" kept for a prefix now delegated elsewhere)
	directoryChannel = "idres_directory"
	everything       = "*"
	probeEvery       = 2 * time.Second // a quiet connection is probed this often
	readTimeout      = 2 * time.Second // a probe slower than this: the connection is lost
	maxBackoff       = 2 * time.Second
	directorySettle  = 2 * time.Second // how long after a directory notice the workers follow it
)

// Listen keeps the cache coherent with what the node applies, as each worker's
// listener does (sync/coherence.py): LISTEN on idres_changed, forget the identifiers
// each notice names. While it cannot listen, the cache holds nothing and keeps
// nothing; once it listens again it forgets once more (it may have missed changes).
func Listen(ctx context.Context, url string, caches ...*Cache) {
	var all Caches = caches
	listen(ctx, url, all)
}

// Caches are forgotten and invalidated together: one feed of changes serves them all.
type Caches []*Cache

func (cs Caches) Forget(listening bool) {
	for _, c := range cs {
		c.Forget(listening)
	}
}

func (cs Caches) Clear() {
	for _, c := range cs {
		c.Clear()
	}
}

func (cs Caches) Invalidate(keys []string) {
	for _, c := range cs {
		c.Invalidate(keys)
	}
}

func listen(ctx context.Context, url string, cache Caches) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := listenOnce(ctx, url, cache)
		cache.Forget(false)
		if ctx.Err() != nil {
			return
		}
		log.Printf("idres-edge: not hearing the node's changes (%v); caching nothing, trying again in %v", err, backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func listenOnce(ctx context.Context, url string, cache Caches) error {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.Connect(connectCtx, url)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET application_name = 'idres-edge'"); err != nil {
		return err
	}
	for _, channel := range []string{changedChannel, directoryChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
			return err
		}
	}
	cache.Forget(true) // from now on every change reaches us
	for {
		waitCtx, cancel := context.WithTimeout(ctx, probeEvery)
		note, err := conn.WaitForNotification(waitCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if waitCtx.Err() == nil {
				return err // the connection failed, not the wait
			}
			probeCtx, cancel := context.WithTimeout(ctx, readTimeout)
			_, err = conn.Exec(probeCtx, "SELECT 1")
			cancel()
			if err != nil {
				return err
			}
			continue
		}
		if note.Payload == everything || note.Channel == directoryChannel {
			cache.Forget(true)
			if note.Channel == directoryChannel {
				// the workers adopt the new directory when their own listener has read
				// it, a database trip after this notice: an answer one of them works
				// out meanwhile may follow the old one, and no notice names what it is
				// about. Forget once more when they surely have.
				time.AfterFunc(directorySettle, cache.Clear)
			}
			continue
		}
		var keys []string
		if err := json.Unmarshal([]byte(note.Payload), &keys); err != nil {
			log.Printf("idres-edge: a notice that is not a list of identifiers (%v); forgetting everything", err)
			cache.Forget(true)
			continue
		}
		cache.Invalidate(keys)
	}
}
