-- The answer anyone may read for each record this node holds (its public values, as
-- GET /api/handles/{id} gives them), written in the same transaction as the record by
-- every write and every apply (registry/store.py write_answers). The node's edge
-- (resolver/edge) serves a read it has not cached from here, without a worker. A
-- record with no public value has no row: the workers answer for it. ttl and
-- expires_at bound how long the edge may keep the answer (RFC 3651 §3.1: the shortest
-- relative TTL; the earliest absolute one, seconds since the epoch); NULL: none.
-- No foreign key: its check cost every registration an index probe, and the only
-- writers (write_answers, drop_unkept_answers) delete a row with its record.
CREATE TABLE answers (
    handle      text PRIMARY KEY,
    body        bytea NOT NULL,
    ttl         double precision,
    expires_at  double precision
);
