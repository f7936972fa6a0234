-- What a node found departing from its signed chains (sync/repair.py): a record
-- changed behind the registry's back, found by verify, by the node's continuous check
-- (sync/audit.py) or while building a proof, and whether it was rewritten from the
-- chain. Counted in /metrics (idres_integrity_findings_total).
CREATE TABLE integrity_findings (
    id        bigserial PRIMARY KEY,
    handle    text NOT NULL,
    found_at  timestamptz NOT NULL DEFAULT now(),
    found_by  text NOT NULL CHECK (found_by IN ('verify', 'audit', 'proof')),
    problem   text NOT NULL,
    repaired  boolean NOT NULL
);

-- A private value its holder could not restore from the chain (the chain carries only
-- its commitment, and the stored value no longer opens it): taken out of
-- handle_values so that it is served to no one, and kept here for the operator, who
-- restores the true value from a backup with a write.
CREATE TABLE withheld_values (
    handle      text NOT NULL,
    idx         integer NOT NULL,
    type        text NOT NULL,
    format      text NOT NULL,
    data        bytea NOT NULL,
    ttl         integer NOT NULL,
    ttl_type    smallint NOT NULL,
    ts          bigint NOT NULL,
    perms       smallint NOT NULL,
    refs        bytea NOT NULL,
    salt        bytea,
    withheld_at timestamptz NOT NULL DEFAULT now()
);
