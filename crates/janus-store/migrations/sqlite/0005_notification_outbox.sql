-- k8s-janus schema, version 5 (SQLite): notification delivery (issue 17). See docs/notifications.md,
-- "Delivery".
--
-- notification_cursor: the last audit `seq` turned into outbox rows (one row, created by the first
-- producer at the chain head then, so existing history is not sent).
CREATE TABLE notification_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);

-- notification_outbox: one row per (event, sink). `delivery_key` (`<event key>/<sink>`) is also the
-- idempotency key sent with the delivery. `state`: pending, sent or dead. A sender claims a due pending
-- row by setting claimed_by and claimed_until; a claim that expires (a crash) makes the row due again.
-- `since_us` starts the dead-letter clock (creation, or a manual retry).
CREATE TABLE notification_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_key TEXT NOT NULL UNIQUE,
    sink TEXT NOT NULL,
    event_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    event_at_us INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    since_us INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_us INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until_us INTEGER,
    sent_us INTEGER,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX notification_outbox_due ON notification_outbox (state, next_attempt_us);
