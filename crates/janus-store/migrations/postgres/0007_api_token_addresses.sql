-- k8s-janus schema, version 7: the client addresses each personal API token was used from (issue 18
-- review). `token.new_address` is audited on the first use from an address the token has not used
-- before, not on every change of address (a NAT pool alternating addresses would write an event per
-- request). Only the most recently seen 32 addresses per token are kept (pruned on insert).
CREATE TABLE api_token_addresses (
    id_hash TEXT NOT NULL REFERENCES api_tokens (id_hash) ON DELETE CASCADE,
    address TEXT NOT NULL,
    first_us BIGINT NOT NULL,
    last_us BIGINT NOT NULL,
    PRIMARY KEY (id_hash, address)
);
