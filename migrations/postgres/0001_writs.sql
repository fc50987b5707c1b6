-- Every issued writ, recorded before it is returned to the agent.
CREATE TABLE writs (
    writ_id        TEXT PRIMARY KEY,
    agent          TEXT NOT NULL,
    task           TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    rights         TEXT NOT NULL,     -- JSON array of {resource, operations}
    services       TEXT NOT NULL,     -- JSON array of service names
    root_key_id    BIGINT NOT NULL,
    revocation_id  TEXT NOT NULL UNIQUE, -- hex revocation id of the authority block
    issued_at      BIGINT NOT NULL,  -- unix seconds
    expires_at     BIGINT NOT NULL   -- unix seconds
);
CREATE INDEX writs_agent ON writs (agent, expires_at);
CREATE INDEX writs_task ON writs (task, expires_at);
CREATE INDEX writs_expiry ON writs (expires_at);
