-- Handle.Net REST API sessions (Authorization: Handle sessionId="..."): opened by
-- POST /api/sessions with a nonce, authenticated once by a signature over that nonce
-- and the client's cnonce with an HS_PUBKEY, then a bearer token for that key until
-- it is ended or idle too long. Any of the node's processes may take any request of a
-- session, so they live here; registry/sessions.py expires and bounds them.
-- The id is kept only as its SHA-256: whoever reads this table cannot act as anyone.
-- UNLOGGED: after a crash the clients open sessions again, so no row is worth a WAL write.
CREATE UNLOGGED TABLE handle_sessions (
    id_hash      bytea PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    nonce        bytea,              -- NULL once a signature has used it
    signer       text,               -- index:handle, NULL until authenticated
    key_hash     bytea,              -- SHA-256 of that HS_PUBKEY: a new key ends the session
    opened_at    double precision NOT NULL,  -- seconds since the epoch
    used_at      double precision NOT NULL
);

CREATE INDEX handle_sessions_by_use ON handle_sessions (used_at);
