-- Sync (schemas/chain.py, sync/): the node's own chain cut from the outbox, the
-- chains it follows, where it stands in each, and what it could not apply.

-- Anchors of child blocks enter the outbox too (registry.store.append_outbox).
ALTER TABLE outbox DROP CONSTRAINT outbox_op_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_op_check
    CHECK (op IN ('create', 'replace', 'delete', 'anchor'));

-- Every block of every chain this node holds: its own and the ones it follows.
CREATE TABLE chain_blocks (
    chain      text NOT NULL,
    height     bigint NOT NULL CHECK (height > 0),
    hash       bytea NOT NULL,
    first_seq  bigint NOT NULL,
    last_seq   bigint NOT NULL,
    head       bytea NOT NULL,               -- the last entry's hash
    message    bytea NOT NULL,               -- the signed block as published
    cut_at     timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, height)
);

CREATE TABLE chain_entries (
    chain    text NOT NULL,
    seq      bigint NOT NULL CHECK (seq > 0),
    height   bigint NOT NULL,                -- the block that holds it
    kind     text NOT NULL CHECK (kind IN ('op', 'anchor')),
    handle   text NOT NULL,                  -- the identifier, or the anchored chain
    version  bigint NOT NULL,                -- the record version, or the anchored height
    hash     bytea NOT NULL,
    payload  bytea NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX chain_entries_by_handle ON chain_entries (handle, version);

-- How far this node's own chain has been published to the log.
CREATE TABLE sync_published (
    chain   text PRIMARY KEY,
    height  bigint NOT NULL
);

-- Where this node stands in each chain it follows; written in the same transaction
-- as the data a block carries, so a crash can neither skip nor repeat a block.
CREATE TABLE sync_positions (
    chain       text PRIMARY KEY,
    next_offset bigint NOT NULL,
    tip_offset  bigint NOT NULL,             -- where the last applied block was read
    height      bigint NOT NULL,
    block_hash  bytea NOT NULL,
    seq         bigint NOT NULL,
    head        bytea NOT NULL,
    cut_at      timestamptz,                 -- when the last applied block was cut
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages refused (undecodable, unsigned, broken link, unknown version), with why.
CREATE TABLE dead_letters (
    id        bigserial PRIMARY KEY,
    chain     text NOT NULL,
    log_offset bigint NOT NULL,
    reason    text NOT NULL,
    message   bytea NOT NULL,
    digest    bytea NOT NULL,                -- sha-256 of message: each kept once
    at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain, log_offset, digest)
);
