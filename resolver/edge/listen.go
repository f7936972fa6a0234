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
)

// Listen keeps the cache coherent with what the node applies, as each worker's
// listener does (sync/coherence.py): LISTEN on idres_changed, forget the identifiers
// each notice names. While it cannot listen, the cache holds nothing and keeps
// nothing; once it listens again it forgets once more (it may have missed changes).
func Listen(ctx context.Context, url string, cache *Cache) {
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

func listenOnce(ctx context.Context, url string, cache *Cache) error {
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
