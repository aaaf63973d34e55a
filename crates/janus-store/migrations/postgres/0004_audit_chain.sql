-- k8s-janus schema, version 4 (PostgreSQL): the tamper-evident audit chain (issue 17). Every audit event
-- gets `seq` (its place in the chain, 1, 2, 3, … without gaps), `hash` (SHA-256, hex, over the canonical
-- JSON form of its content and `prev_hash`) and `prev_hash` (the hash of the event before it, or 64 zeros
-- for the first). The format is in docs/security.md, "Tamper-evident audit log".
--
-- The canonical form is built by the application (one implementation for both databases), so rows
-- written by earlier versions are chained by the application on its first start after this migration,
-- in id order (and any row a not-yet-upgraded replica adds later is chained by the next insert, after
-- the rows already chained).
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE seq IS NULL;

-- The chain head: the last event chained, and the anchor (the last event retention deleted: the first
-- remaining event links to it). One row; every insert locks it (UPDATE … RETURNING, a row lock held to
-- the end of the transaction), which keeps the chain a single line across replicas.
CREATE TABLE audit_chain (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    anchor_seq BIGINT NOT NULL,
    anchor_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
        0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Still append-only, with one exception: a row without a place in the chain may be given one, once,
-- without any other column changing.
CREATE OR REPLACE FUNCTION janus_audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq IS NULL AND OLD.hash IS NULL AND OLD.prev_hash IS NULL
       AND NEW.seq IS NOT NULL AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
       AND (NEW.id, NEW.event_key, NEW.kind, NEW.at_us, NEW.actor, NEW.request, NEW.cluster, NEW.namespaces,
            NEW.details, NEW.recorded_us)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.event_key, OLD.kind, OLD.at_us, OLD.actor, OLD.request, OLD.cluster, OLD.namespaces,
            OLD.details, OLD.recorded_us)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
