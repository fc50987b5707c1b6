-- Writs exchanged for native credentials (see src/exchange). One row per writ and target: a
-- repeated exchange answers the credential kept here (sealed: encrypted under a key derived from
-- the approval key, bound to the row's id) rather than minting another. A row is `pending`
-- while the upstream is asked, `issued` once the credential is sealed here, and `withdrawn`
-- once revocation took it back upstream (Vault lease revoked, AWS sessions denied).
CREATE TABLE exchanges (
    id               TEXT PRIMARY KEY,
    writ_id          TEXT NOT NULL,
    agent            TEXT NOT NULL,
    task             TEXT NOT NULL,
    kind             TEXT NOT NULL,     -- aws | vault
    target           TEXT NOT NULL,     -- the configured role name
    scope            TEXT NOT NULL,     -- SHA-256 hex of what was asked
    state            TEXT NOT NULL,     -- pending | issued | withdrawn
    handle           TEXT,              -- Vault lease id; AWS: the assumed role ARN
    sealed           TEXT,              -- base64 of nonce || ciphertext
    sealing_kid      BIGINT,            -- the approval key the sealing key is derived from
    created_at       BIGINT NOT NULL,   -- unix seconds
    expires_at       BIGINT NOT NULL,   -- unix seconds: the credential's own end upstream
    writ_expires_at  BIGINT NOT NULL,   -- unix seconds
    withdrawn_at     BIGINT,
    withdraw_error   TEXT,              -- the last failure to withdraw, retried until it works
    deny_until       BIGINT,            -- AWS: the deny statement is needed until then
    deny_removed_at  BIGINT,
    UNIQUE (writ_id, kind, target)
);
CREATE INDEX exchanges_live ON exchanges (state, expires_at);
