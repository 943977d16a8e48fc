-- Outgoing mail: the SMTP settings (one row), the outbox the worker delivers from, and the delivery state
-- behind the "Invitation mail is failing" notification. Portable types only (see docs/architecture.md):
-- TEXT ids, BIGINT epoch-millisecond times, no database-side clocks.

-- One row, id 'default'. The password is sealed with the master key (never stored in clear).
CREATE TABLE smtp_settings (
    id              TEXT PRIMARY KEY,
    host            TEXT NOT NULL,
    port            BIGINT NOT NULL,
    security        TEXT NOT NULL,          -- none | starttls | tls
    username        TEXT,
    password_sealed TEXT,
    from_name       TEXT NOT NULL,
    from_address    TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Producers insert rows in their own transaction; the worker claims due rows with a lease
-- (UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING), sends, and marks them sent or schedules a retry.
-- ref_id has no foreign key on purpose: it points at whatever caused the mail (an invitation, …).
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,          -- invitation | test | …
    ref_id          TEXT,
    to_address      TEXT NOT NULL,
    to_name         TEXT,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    status          TEXT NOT NULL,          -- queued | sent | failed (gave up)
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
-- Claiming: due queued rows in next_attempt_at order.
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
-- Delivery state per cause (find_latest_by_ref).
CREATE INDEX mail_outbox_ref ON mail_outbox (ref_id, created_at);
-- The page's recent list and the "sent in the last 24 h" count.
CREATE INDEX mail_outbox_created ON mail_outbox (created_at);

-- One row, id 'default': consecutive failed delivery attempts across all mail, for the notification.
CREATE TABLE mail_delivery_state (
    id                   TEXT PRIMARY KEY,
    consecutive_failures BIGINT NOT NULL,
    last_error           TEXT,
    last_failure_at      BIGINT,
    last_success_at      BIGINT
);
