-- Foundation: admin accounts, server-side sessions, first-run setup tokens, login attempts, audit log.
-- Portable schema (docs/architecture.md): TEXT ids, BIGINT epoch-ms times, BIGINT 0/1 flags.

CREATE TABLE admins (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    disabled       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_login_at  BIGINT
);

-- id is the SHA-256 of the cookie's session key, so a leaked table cannot be replayed as cookies.
-- No foreign key on admin_id: anonymous sessions (carrying only a CSRF token) have none.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    admin_id   TEXT,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_admin_id ON sessions (admin_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

CREATE TABLE login_attempts (
    id             TEXT PRIMARY KEY,
    username_lower TEXT NOT NULL,
    ip             TEXT NOT NULL,
    at             BIGINT NOT NULL,
    success        BIGINT NOT NULL
);
CREATE INDEX login_attempts_user_at ON login_attempts (username_lower, at);
CREATE INDEX login_attempts_ip_at ON login_attempts (ip, at);

-- Append-only: rows are inserted in the same transaction as the change they record, never updated.
CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    actor_name  TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT,
    target_id   TEXT,
    ip          TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL
);
CREATE INDEX audit_events_at_id ON audit_events (at, id);
