-- Records after the Handle model: one row per identifier, one row per value,
-- and an append-only version history that outlives deletes.

CREATE TABLE identifiers (
    handle      text PRIMARY KEY,            -- canonical form (schemas.identifiers.parse)
    scheme      text NOT NULL,
    routing_key text NOT NULL,               -- e.g. handle:88.100.1, gs1:6901234567892
    version     bigint NOT NULL CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Listing a prefix walks this index in order (text_pattern_ops serves LIKE 'p%').
CREATE INDEX identifiers_by_routing_key ON identifiers (routing_key text_pattern_ops, handle);

-- A lookup by identifier is one probe of the primary key: (handle, idx) keeps a
-- record's values adjacent in the index, so one range scan returns all of them.
CREATE TABLE handle_values (
    handle    text NOT NULL REFERENCES identifiers (handle) ON DELETE CASCADE,
    idx       integer NOT NULL CHECK (idx > 0),
    type      text NOT NULL,
    format    text NOT NULL,
    data      bytea NOT NULL,                -- UTF-8 / raw bytes; CBOR for admin, vlist
    ttl       integer NOT NULL CHECK (ttl >= 0),
    ttl_type  smallint NOT NULL CHECK (ttl_type IN (0, 1)),
    ts        bigint NOT NULL,               -- seconds since the epoch
    perms     smallint NOT NULL CHECK (perms BETWEEN 0 AND 15),
    refs      bytea NOT NULL,                -- deterministic CBOR [[handle, index], ...]
    PRIMARY KEY (handle, idx)
);

CREATE TABLE history (
    handle   text NOT NULL,
    version  bigint NOT NULL CHECK (version > 0),
    op       text NOT NULL CHECK (op IN ('create', 'replace', 'delete')),
    actor    text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    changes  jsonb NOT NULL,                 -- [{"index": 1, "type": "URL", "change": "added"}]
    record   bytea,                          -- deterministic CBOR after the change; NULL once deleted
    PRIMARY KEY (handle, version)
);
