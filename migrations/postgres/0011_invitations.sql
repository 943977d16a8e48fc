-- Invitations by email and end-user registration.
-- A user's invitation state is kept on the user row ('none', 'invited', 'registered') so the Users page
-- filters on it with an index; the history is the invitations table.
ALTER TABLE directory_users ADD COLUMN invitation_state TEXT NOT NULL DEFAULT 'none';
ALTER TABLE directory_users ADD COLUMN invited_at BIGINT;
ALTER TABLE directory_users ADD COLUMN registered_at BIGINT;
-- Local users who registered without an IdP set a password (argon2id).
ALTER TABLE directory_users ADD COLUMN password_hash TEXT;
CREATE INDEX directory_users_invitation ON directory_users (invitation_state, upn_lower, id);

-- One row per invitation sent. Only the SHA-256 of the link's token is stored.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    mail_id     TEXT,
    used_at     BIGINT,
    revoked_at  BIGINT,
    replaced_at BIGINT
);
CREATE INDEX invitations_user ON invitations (user_id, created_at);
CREATE INDEX invitations_created ON invitations (created_at, id);

-- The invitation template and the registration settings (one row, id 'default').
CREATE TABLE invitation_settings (
    id                   TEXT PRIMARY KEY,
    subject              TEXT NOT NULL,
    text_body            TEXT NOT NULL,
    html_body            TEXT NOT NULL,
    lifetime_days        BIGINT NOT NULL,
    pin_length           BIGINT NOT NULL,
    pin_lifetime_minutes BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- One-time enrollment PINs handed out at registration (hash only).
CREATE TABLE enrollment_pins (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    pin_hash   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX enrollment_pins_user ON enrollment_pins (user_id, created_at);

-- Registration page hits with a bad token, per address, for rate limiting.
CREATE TABLE registration_attempts (
    id TEXT PRIMARY KEY,
    ip TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX registration_attempts_ip ON registration_attempts (ip, at);
