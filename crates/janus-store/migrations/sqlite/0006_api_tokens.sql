-- k8s-janus schema, version 6 (SQLite): personal API tokens (issue 18). See docs/security.md, "API tokens
-- and CLI sessions".
--
-- api_tokens: one row per personal API token. Only the SHA-256 of the token is stored (id_hash); the
-- display id (prefix and the first 8 secret characters) names it in lists and revocation. The owner's
-- admin flag and groups are a snapshot taken at creation (OIDC and proxy owners have no account row to
-- re-check). A revoked row stays for the record; `revoked_us` set means unusable.
CREATE TABLE api_tokens (
    id_hash TEXT PRIMARY KEY,
    display_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    auth TEXT NOT NULL CHECK (auth IN ('local', 'oidc', 'proxy')),
    display_name TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    groups_json TEXT NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    last_used_us INTEGER,
    last_used_ip TEXT,
    revoked_us INTEGER,
    revoked_by TEXT
);
CREATE INDEX api_tokens_owner ON api_tokens (owner, created_us);
