-- k8s-janus schema, version 1 (SQLite). Times are microseconds since the Unix epoch (UTC) in *_us columns;
-- JSON values (namespaces, details, groups) are stored as text.

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    request TEXT,
    cluster TEXT,
    namespaces TEXT NOT NULL,
    details TEXT NOT NULL,
    recorded_us INTEGER NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at_us);
CREATE INDEX audit_events_request ON audit_events (request, id);
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

CREATE TABLE requests (
    name TEXT PRIMARY KEY,
    uid TEXT,
    requester TEXT NOT NULL,
    cluster TEXT NOT NULL,
    namespaces TEXT NOT NULL,
    reason TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    approved_by TEXT,
    decided_by TEXT,
    expires_us INTEGER,
    ended_us INTEGER,
    updated_us INTEGER NOT NULL,
    deleted_us INTEGER
);
CREATE INDEX requests_created ON requests (created_us);
CREATE INDEX requests_requester ON requests (requester, created_us);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_us INTEGER,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL
);

CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    display_name TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    groups_json TEXT NOT NULL,
    auth TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL
);
CREATE INDEX web_sessions_subject ON web_sessions (subject);
CREATE INDEX web_sessions_expires ON web_sessions (expires_us);

CREATE TABLE terminal_sessions (
    id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    user_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    namespace TEXT NOT NULL,
    pod TEXT NOT NULL,
    container TEXT NOT NULL,
    replica TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    ended_us INTEGER,
    end_reason TEXT,
    bytes_out INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX terminal_sessions_request ON terminal_sessions (request, started_us);
CREATE INDEX terminal_sessions_user ON terminal_sessions (user_name, started_us);
CREATE INDEX terminal_sessions_started ON terminal_sessions (started_us);

CREATE TABLE recordings (
    session_id TEXT PRIMARY KEY,
    data_gz BLOB NOT NULL,
    size_bytes INTEGER NOT NULL,
    stored_us INTEGER NOT NULL
);

CREATE TABLE command_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    line TEXT NOT NULL,
    line_lower TEXT NOT NULL,
    user_name TEXT NOT NULL,
    request TEXT NOT NULL
);
CREATE INDEX command_log_session ON command_log (session_id, id);

CREATE TABLE quick_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL,
    cluster TEXT NOT NULL,
    label TEXT NOT NULL,
    command TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX quick_commands_user ON quick_commands (user_name, cluster, id);
