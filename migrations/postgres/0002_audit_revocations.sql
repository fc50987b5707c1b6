-- The audit log: append-only, hash-chained (see src/audit). seq is the chain position,
-- gapless from 1; each hash covers the previous hash and the event's canonical encoding.
CREATE TABLE audit_events (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,  -- unix milliseconds
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    writ_id    TEXT,
    task       TEXT,
    agent      TEXT,
    reason     TEXT,
    details    TEXT NOT NULL,     -- JSON object, hashed exactly as stored
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_events_agent ON audit_events (agent, seq);
CREATE INDEX audit_events_task ON audit_events (task, seq);
CREATE INDEX audit_events_writ ON audit_events (writ_id, seq);
CREATE INDEX audit_events_action ON audit_events (action, seq);
CREATE INDEX audit_events_time ON audit_events (at_ms);
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Chain heads signed by the broker's root key, so an outside party can hold the log to them.
CREATE TABLE audit_checkpoints (
    seq          BIGINT NOT NULL,
    hash         TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    root_key_id  BIGINT NOT NULL,
    signature    TEXT NOT NULL,
    PRIMARY KEY (seq, root_key_id)
);

-- Revocations of writs, tasks and agents. seq orders the feed; it is reassigned when an entry
-- changes (a suspension lifted), under the same lock that orders the audit chain.
CREATE TABLE revocations (
    id            TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL UNIQUE,
    target        TEXT NOT NULL,   -- writ | task | agent
    value         TEXT NOT NULL,   -- the writ id, task name or agent
    revocation_id TEXT,            -- writ targets: the authority block's revocation id (hex)
    issued_until  BIGINT,         -- unix seconds; NULL for writs and for suspended agents
    expires_at    BIGINT,         -- unix seconds; NULL while open-ended
    reason        TEXT NOT NULL,
    revoked_by    TEXT NOT NULL,
    revoked_at    BIGINT NOT NULL,
    lifted_by     TEXT,
    lifted_at     BIGINT,
    lift_reason   TEXT
);
CREATE INDEX revocations_target ON revocations (target, value, seq);

-- Admin writs the broker issued (never the tokens): so they can be listed and revoked.
CREATE TABLE admin_writs (
    writ_id        TEXT PRIMARY KEY,
    principal      TEXT NOT NULL,
    roles          TEXT NOT NULL,   -- JSON array
    issued_by      TEXT NOT NULL,
    root_key_id    BIGINT NOT NULL,
    revocation_id  TEXT NOT NULL UNIQUE,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
