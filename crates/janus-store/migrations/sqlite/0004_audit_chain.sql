-- k8s-janus schema, version 4 (SQLite): the tamper-evident audit chain (issue 17). Every audit event gets
-- `seq` (its place in the chain, 1, 2, 3, … without gaps), `hash` (SHA-256, hex, over the canonical JSON
-- form of its content and `prev_hash`) and `prev_hash` (the hash of the event before it, or 64 zeros for
-- the first). The format is in docs/security.md, "Tamper-evident audit log".
--
-- SQLite cannot compute SHA-256, so rows written by earlier versions are chained by the application on
-- its first start after this migration, in id order (and any row a not-yet-upgraded writer adds later is
-- chained by the next insert, after the rows already chained).
ALTER TABLE audit_events ADD COLUMN seq INTEGER;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE seq IS NULL;

-- The chain head: the last event chained, and the anchor (the last event retention deleted: the first
-- remaining event links to it). One row; every insert locks it, which keeps the chain a single line.
CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    anchor_seq INTEGER NOT NULL,
    anchor_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, last_seq, last_hash, anchor_seq, anchor_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
        0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Still append-only, with one exception: a row without a place in the chain may be given one, once,
-- without any other column changing.
DROP TRIGGER audit_events_append_only;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
WHEN OLD.seq IS NOT NULL OR OLD.hash IS NOT NULL OR OLD.prev_hash IS NOT NULL
    OR NEW.seq IS NULL OR NEW.hash IS NULL OR NEW.prev_hash IS NULL
    OR NEW.id IS NOT OLD.id OR NEW.event_key IS NOT OLD.event_key OR NEW.kind IS NOT OLD.kind
    OR NEW.at_us IS NOT OLD.at_us OR NEW.actor IS NOT OLD.actor OR NEW.request IS NOT OLD.request
    OR NEW.cluster IS NOT OLD.cluster OR NEW.namespaces IS NOT OLD.namespaces
    OR NEW.details IS NOT OLD.details OR NEW.recorded_us IS NOT OLD.recorded_us
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
