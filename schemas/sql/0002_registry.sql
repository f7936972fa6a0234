-- The registry's write path: the node's outbound log (published by sync), request
-- idempotency, and the signatures already used (replay refusal, RFC 9421 §7.2.2).

-- Every accepted operation, appended in the same transaction as the data it changed.
CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    handle     text NOT NULL,
    version    bigint NOT NULL,
    op         text NOT NULL CHECK (op IN ('create', 'replace', 'delete')),
    payload    bytea NOT NULL,               -- deterministic CBOR (schemas.oplog)
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A retried write with the same Idempotency-Key gets the stored response.
CREATE TABLE idempotency (
    scope       text NOT NULL,               -- the signing key's id
    key         text NOT NULL,
    fingerprint bytea NOT NULL,              -- sha-256 of method, path, query and body
    status      smallint,                    -- NULL until the first request commits
    body        bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);

CREATE TABLE seen_signatures (
    digest     bytea PRIMARY KEY,            -- sha-256 of the signature bytes
    expires_at timestamptz NOT NULL
);
CREATE INDEX seen_signatures_by_expiry ON seen_signatures (expires_at);
