-- Requests for human approval (see src/approval). rights start as requested_rights and only
-- shrink as approvers narrow them; the elevated writ carries them once collected (writ_id).
CREATE TABLE approval_requests (
    id                TEXT PRIMARY KEY,
    agent             TEXT NOT NULL,
    issuer            TEXT NOT NULL,
    subject           TEXT NOT NULL,
    task              TEXT NOT NULL,
    requested_rights  TEXT NOT NULL,   -- JSON array of {resource, operations}
    rights            TEXT NOT NULL,   -- JSON array, as narrowed
    services          TEXT NOT NULL,   -- JSON array
    ttl               BIGINT NOT NULL,   -- seconds, of the elevated writ
    justification     TEXT NOT NULL,
    policy            TEXT NOT NULL,
    approvers         TEXT NOT NULL,   -- JSON array of approver specs
    quorum            BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,   -- unix seconds
    expires_at        BIGINT NOT NULL,   -- unix seconds: a pending request expires then
    status            TEXT NOT NULL,   -- pending | approved | denied | expired
    decided_at        BIGINT,
    writ_id           TEXT UNIQUE,     -- the elevated writ, once collected (at most one)
    notify_status     TEXT NOT NULL,   -- none | pending | delivered | failed
    notify_attempts   BIGINT NOT NULL
);
CREATE INDEX approval_requests_status ON approval_requests (status, expires_at);
CREATE INDEX approval_requests_agent ON approval_requests (agent, status);
CREATE INDEX approval_requests_created ON approval_requests (created_at);

-- One decision per approver and request: approving twice can never count twice.
CREATE TABLE approval_decisions (
    request_id   TEXT NOT NULL REFERENCES approval_requests (id),
    approver     TEXT NOT NULL,
    via          TEXT NOT NULL,    -- admin_writ | login
    verdict      TEXT NOT NULL,    -- approve | deny
    reason       TEXT NOT NULL,
    narrowed_to  TEXT,             -- JSON array of rights, when this approver narrowed
    decided_at   BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
);

-- Sessions of approvers logged in to the approval page. The cookie is a random secret; only its
-- SHA-256 is stored, so a copy of the database opens no session.
CREATE TABLE approver_sessions (
    id_hash      TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    groups       TEXT NOT NULL,    -- JSON array of the login's groups
    issuer       TEXT NOT NULL,    -- the login provider's issuer URL
    subject      TEXT NOT NULL,
    approver     BIGINT NOT NULL,    -- 1 when the login maps to the approver role
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX approver_sessions_expiry ON approver_sessions (expires_at);
CREATE INDEX approver_sessions_principal ON approver_sessions (principal, created_at);
