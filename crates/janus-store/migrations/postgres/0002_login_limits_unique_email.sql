-- k8s-janus schema, version 2 (PostgreSQL): failed-login counters per account and client address, and
-- at most one enabled account per email (case-insensitive).

-- Failed (and in-flight) password checks of one account from one client address. `failures` counts
-- reservations: a check reserves before argon2 runs and gives the reservation back when it succeeds.
CREATE TABLE login_failures (
    username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    client TEXT NOT NULL,
    failures BIGINT NOT NULL,
    locked_until_us BIGINT,
    updated_us BIGINT NOT NULL,
    PRIMARY KEY (username, client)
);
CREATE INDEX login_failures_updated ON login_failures (updated_us);

-- The account-wide counter (`users.failed_logins`) counts in windows of the lockout duration: this is
-- when the current window started (NULL: none yet). It has its own column because `updated_us` changes
-- with every edit of the account, which must not keep old failures alive.
ALTER TABLE users ADD COLUMN failures_window_start_us BIGINT;

-- Older versions let two accounts share an email, and with it the requests and sessions of that email.
-- Nothing is deleted or renamed: of the enabled accounts sharing an email, one stays enabled — an admin
-- if one of them is (the oldest admin), else the oldest — so no install loses its only admin; the others
-- are disabled, each with an audit event naming the account kept. Their sessions end.
-- The table lock keeps a replica that still runs the old version from adding a duplicate meanwhile.
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;

CREATE TEMP TABLE janus_duplicate_email ON COMMIT DROP AS
SELECT d.username, d.email, d.kept
FROM (SELECT u.username AS username, u.email AS email,
             (SELECT k.username FROM users k
               WHERE lower(k.email) = lower(u.email) AND NOT k.disabled
               ORDER BY k.is_admin DESC, k.created_us, k.username LIMIT 1) AS kept
      FROM users u
      WHERE NOT u.disabled) d
WHERE d.username <> d.kept;

INSERT INTO audit_events (event_key, kind, at_us, actor, request, cluster, namespaces, details, recorded_us)
SELECT 'migration/2/duplicate-email/' || username, 'user.changed',
       (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT, 'system', NULL, NULL, '[]',
       json_build_object('username', username, 'email', email, 'disabled', true, 'keptAccount', kept,
                         'reason', 'another enabled account has the same email (case-insensitive); '
                                   || 'an admin account, else the oldest, was kept enabled')::TEXT,
       (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
FROM janus_duplicate_email;

UPDATE users SET disabled = TRUE, updated_us = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT
WHERE username IN (SELECT username FROM janus_duplicate_email);

DELETE FROM web_sessions WHERE lower(subject) IN (SELECT lower(email) FROM janus_duplicate_email);

-- Disabled accounts may keep a duplicate email (nothing is lost); enabling one then fails. New accounts
-- are checked against every account, enabled or not, when they are created.
CREATE UNIQUE INDEX users_email_unique ON users (lower(email)) WHERE NOT disabled;
CREATE INDEX users_email_lower ON users (lower(email));
