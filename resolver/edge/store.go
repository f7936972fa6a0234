package main

import (
	"context"
	"errors"
	"log"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store reads the answers the node's database holds for its records: a row of the
// answers table (schemas/sql/0006_answers.sql) is written in the same transaction as
// its record, by a write here or by sync applying another node's block, with the
// bytes a worker would give. A read the cache does not hold is answered from it
// without a worker; an identifier with no row (unknown, not public, or spelled
// otherwise than its canonical form) goes to the workers, who know why.
type Store struct {
	pool    *pgxpool.Pool
	shed    *Shedder
	timeout time.Duration

	answered, missing, failed, refused atomic.Uint64
	lastLog                            atomic.Int64
}

func OpenStore(ctx context.Context, url string, conns int, shed *Shedder) (*Store, error) {
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	config.MaxConns = int32(conns)
	config.ConnConfig.RuntimeParams["application_name"] = "idres-edge"
	pool, err := pgxpool.NewWithConfig(ctx, config) // connects lazily
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, shed: shed, timeout: time.Second}, nil
}

// Answer is the stored answer for handle (a canonical identifier) and how long it may
// be kept; ok is false when there is none, or when the database is slow or away (the
// workers answer then, or refuse).
func (s *Store) Answer(handle string, now time.Time) (body []byte, ttl time.Duration, ok bool) {
	if !s.shed.Start(now) {
		s.refused.Add(1)
		return nil, 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	var relative, expiresAt *float64
	err := s.pool.QueryRow(ctx, "SELECT body, ttl, expires_at FROM answers WHERE handle = $1", handle).
		Scan(&body, &relative, &expiresAt)
	cancel()
	landed := time.Now()
	s.shed.Landed(landed.Sub(now), landed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		s.missing.Add(1)
		return nil, 0, false
	case err != nil:
		s.failed.Add(1)
		if last := s.lastLog.Load(); landed.Unix() > last && s.lastLog.CompareAndSwap(last, landed.Unix()) {
			log.Printf("idres-edge: reading an answer from the database failed (%v); the workers answer", err)
		}
		return nil, 0, false
	}
	s.answered.Add(1)
	// RFC 3651 §3.1: the shortest relative TTL, and no later than the earliest absolute
	left := math.Inf(1)
	if relative != nil {
		left = *relative
	}
	if expiresAt != nil {
		left = min(left, *expiresAt-float64(now.UnixNano())/1e9)
	}
	if left <= 0 || math.IsInf(left, 1) {
		return body, 0, true
	}
	return body, time.Duration(left * float64(time.Second)), true
}

func (s *Store) Close() { s.pool.Close() }
