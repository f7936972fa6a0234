-- What a node's sync process tells its serving workers (sync/coherence.py). Both
-- tables are UNLOGGED: rewritten often, and rebuilt by the sync process at each
-- start (it reads the directory topic again from its beginning), so a crash that
-- empties them loses nothing.

-- One row: the follower's state that decides "current" (sync/notices.py), the sync
-- metrics text, and a beat that grows with each rewrite (every 0.5 s).
CREATE UNLOGGED TABLE sync_status (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    beat        bigint NOT NULL,
    view        text NOT NULL,
    metrics     text NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);

-- The delegations the sync process adopted from the directory topic, in order.
CREATE UNLOGGED TABLE sync_directory (
    seq         bigserial PRIMARY KEY,
    digest      bytea NOT NULL UNIQUE,
    delegation  bytea NOT NULL,
    adopted_at  timestamptz NOT NULL DEFAULT now()
);
