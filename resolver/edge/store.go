package main

import (
	"context"
	"errors"
	"log"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Store reads the answers the node's database holds for its records: a row of the
// answers table (schemas/sql/0006_answers.sql) is written in the same transaction as
// its record, by a write here or by sync applying another node's block, with the
// bytes a worker would give. A read the cache does not hold is answered from it
// without a worker; an identifier with no row (unknown, not public, or spelled
// otherwise than its canonical form) goes to the workers, who know why.
//
// Reads that arrive together share a query: each of a few connections takes what is
// waiting (up to maxBatch) and asks for all of it with one ANY($1). A query a read
// costs the edge a write, a wakeup of the database and a read (perf: 30% of the
// edge's core at 6,000 reads/s went to them); batched, they are shared.
type Store struct {
	url     string
	queue   chan *lookup
	shed    *Shedder
	timeout time.Duration

	answered, missing, failed, refused, queries atomic.Uint64
	lastLog                                     atomic.Int64
}

const (
	maxBatch = 64
	byHandle = "SELECT handle, body, ttl, expires_at FROM answers WHERE handle = ANY($1)"
)

type lookup struct {
	handle string
	reply  chan found
}

type found struct {
	body                []byte
	relative, expiresAt *float64
	ok                  bool // a row
	err                 error
}

var lookups = sync.Pool{New: func() any { return &lookup{reply: make(chan found, 1)} }}

// OpenStore starts conns readers of the answers table at url; they connect when
// first needed, and again after a failure.
func OpenStore(ctx context.Context, url string, conns int, shed *Shedder) *Store {
	s := &Store{url: url, queue: make(chan *lookup, 4096), shed: shed, timeout: time.Second}
	for range conns {
		go s.read(ctx)
	}
	return s
}

// Answer is the stored answer for handle (a canonical identifier, valid UTF-8: Serve
// refuses any other target, and PostgreSQL's text would refuse the whole batch) and
// how long it may be kept; ok is false when there is none, or when the database is slow or away (the
// workers answer then, or refuse).
func (s *Store) Answer(handle string, now time.Time) (body []byte, ttl time.Duration, ok bool) {
	if !s.shed.Start(now) {
		s.refused.Add(1)
		return nil, 0, false
	}
	l := lookups.Get().(*lookup)
	l.handle = handle
	var f found
	select {
	case s.queue <- l:
		f = <-l.reply // every lookup taken is answered, within the query's timeout
	default:
		f = found{err: errQueueFull}
	}
	lookups.Put(l)
	landed := time.Now()
	s.shed.Landed(landed.Sub(now), landed)
	switch {
	case f.err != nil:
		s.failed.Add(1)
		if last := s.lastLog.Load(); landed.Unix() > last && s.lastLog.CompareAndSwap(last, landed.Unix()) {
			log.Printf("idres-edge: reading answers from the database failed (%v); the workers answer", f.err)
		}
		return nil, 0, false
	case !f.ok:
		s.missing.Add(1)
		return nil, 0, false
	}
	s.answered.Add(1)
	// RFC 3651 §3.1: the shortest relative TTL, and no later than the earliest absolute
	left := math.Inf(1)
	if f.relative != nil {
		left = *f.relative
	}
	if f.expiresAt != nil {
		left = min(left, *f.expiresAt-float64(now.UnixNano())/1e9)
	}
	if left <= 0 || math.IsInf(left, 1) {
		return f.body, 0, true
	}
	return f.body, time.Duration(left * float64(time.Second)), true
}

type storeError string

func (e storeError) Error() string { return string(e) }

const errQueueFull = storeError("too many reads waiting for the database")

// read serves the queue on one connection until ctx ends.
func (s *Store) read(ctx context.Context) {
	var conn *pgx.Conn
	var downUntil time.Time
	batch := make([]*lookup, 0, maxBatch)
	names := make([]string, 0, maxBatch)
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-ctx.Done():
			for { // the edge stops: whoever still waits is told so
				select {
				case l := <-s.queue:
					l.reply <- found{err: ctx.Err()}
				default:
					return
				}
			}
		case first := <-s.queue:
			batch = append(batch[:0], first)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case l := <-s.queue:
				batch = append(batch, l)
			default:
				break more
			}
		}
		if conn == nil && time.Now().After(downUntil) {
			connectCtx, cancel := context.WithTimeout(ctx, s.timeout)
			c, err := pgx.Connect(connectCtx, s.url)
			cancel()
			if err != nil {
				downUntil = time.Now().Add(time.Second) // meanwhile, fail at once
				fail(batch, err)
				continue
			}
			conn = c
		}
		if conn == nil {
			fail(batch, storeError("the database is not reachable"))
			continue
		}
		names = names[:0]
		for _, l := range batch {
			names = append(names, l.handle)
		}
		if err := s.query(ctx, conn, names, batch); err != nil {
			var refused *pgconn.PgError
			if !errors.As(err, &refused) { // not the database's answer: the connection is gone
				conn.Close(context.Background())
				conn = nil
				downUntil = time.Now().Add(100 * time.Millisecond)
			}
			fail(batch, err)
		}
	}
}

func (s *Store) query(ctx context.Context, conn *pgx.Conn, names []string, batch []*lookup) error {
	qctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	s.queries.Add(1)
	rows, err := conn.Query(qctx, byHandle, names)
	if err != nil {
		return err
	}
	got := make(map[string]found, len(batch))
	for rows.Next() {
		var handle string
		var f found
		if err := rows.Scan(&handle, &f.body, &f.relative, &f.expiresAt); err != nil {
			rows.Close()
			return err
		}
		f.ok = true
		got[handle] = f
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, l := range batch {
		l.reply <- got[l.handle] // no row: not ok, no error
	}
	return nil
}

func fail(batch []*lookup, err error) {
	for _, l := range batch {
		l.reply <- found{err: err}
	}
}
