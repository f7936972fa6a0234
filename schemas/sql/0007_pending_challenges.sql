-- Challenges the Handle face has sent and not yet seen answered (RFC 3652 §3.5): an
-- administrative request is answered AUTHENTICATION_NEEDED with a nonce under a new
-- session id, and the client sends its signed answer on a new connection, which any
-- of the node's processes may take. registry/challenges.py takes a row once
-- (DELETE ... RETURNING), expires it and bounds how many wait.
-- UNLOGGED: a challenge lives a minute; after a crash its client asks again, so no
-- row is worth a WAL write.
CREATE UNLOGGED TABLE pending_challenges (
    session_id  bigint PRIMARY KEY CHECK (session_id BETWEEN 1 AND 4294967295),
    request     bytea NOT NULL,             -- the request as received, credential aside
    nonce       bytea NOT NULL,
    opened_at   double precision NOT NULL   -- seconds since the epoch
);

CREATE INDEX pending_challenges_by_age ON pending_challenges (opened_at);
