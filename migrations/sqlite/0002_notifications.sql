-- Notifications shown on /admin/notifications and counted in the header badge.
-- One row per problem (dedup_key): a repeat updates the row (occurrences, last_seen_at) instead of adding one;
-- a problem that clears gets resolved_at; if it comes back the row is reopened.
CREATE TABLE notifications (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    dedup_key     TEXT NOT NULL UNIQUE,
    severity      TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    action_text   TEXT NOT NULL,
    action_href   TEXT,
    details       TEXT NOT NULL,
    occurrences   BIGINT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    resolved_at   BIGINT
);
CREATE INDEX notifications_resolved_last_seen ON notifications (resolved_at, last_seen_at);
