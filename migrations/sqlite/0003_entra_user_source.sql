-- Entra ID user source settings, sync rounds, the sync lease, and the directory read model it feeds.

-- One row per user source. Secrets are sealed with the master key (secrets.rs); custom attributes are JSON
-- [{"name": "...", "property": "..."}]. Delta links are written only after the round that produced them committed.
CREATE TABLE user_sources (
    id                    TEXT PRIMARY KEY,
    kind                  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    enabled               BIGINT NOT NULL,
    sync_interval_minutes BIGINT NOT NULL,
    auto_invite           BIGINT NOT NULL,
    tenant_id             TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    client_secret_sealed  TEXT,
    cloud                 TEXT NOT NULL,
    authority_url         TEXT,
    graph_url             TEXT,
    apple_id_mode         TEXT NOT NULL,
    apple_id_subdomain    BIGINT NOT NULL,
    custom_attributes     TEXT NOT NULL,
    sync_requested_at     BIGINT,
    users_delta_link      TEXT,
    groups_delta_link     TEXT,
    delta_links_at        BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

CREATE TABLE sync_runs (
    id                  TEXT PRIMARY KEY,
    source_id           TEXT NOT NULL,
    kind                TEXT NOT NULL,
    reason              TEXT NOT NULL,
    trigger_kind        TEXT NOT NULL,
    status              TEXT NOT NULL,
    phase               TEXT NOT NULL,
    started_at          BIGINT NOT NULL,
    finished_at         BIGINT,
    heartbeat_at        BIGINT NOT NULL,
    expected_users      BIGINT,
    expected_groups     BIGINT,
    pages               BIGINT NOT NULL DEFAULT 0,
    users_seen          BIGINT NOT NULL DEFAULT 0,
    groups_seen         BIGINT NOT NULL DEFAULT 0,
    users_added         BIGINT NOT NULL DEFAULT 0,
    users_updated       BIGINT NOT NULL DEFAULT 0,
    users_not_synced    BIGINT NOT NULL DEFAULT 0,
    groups_added        BIGINT NOT NULL DEFAULT 0,
    groups_updated      BIGINT NOT NULL DEFAULT 0,
    groups_not_synced   BIGINT NOT NULL DEFAULT 0,
    memberships_added   BIGINT NOT NULL DEFAULT 0,
    memberships_removed BIGINT NOT NULL DEFAULT 0,
    error               TEXT
);
CREATE INDEX sync_runs_source_started ON sync_runs (source_id, started_at);

-- At most one round per source at a time, across instances: a row with an expiry, renewed while running.
CREATE TABLE sync_leases (
    source_id  TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Users from every source. external_id is the source's immutable id (the Entra object id), kept apart from ours.
-- Rows are never deleted by sync: a user the source no longer has gets not_synced_at and a reason.
CREATE TABLE directory_users (
    id                TEXT PRIMARY KEY,
    source            TEXT NOT NULL,
    source_id         TEXT,
    external_id       TEXT,
    upn               TEXT NOT NULL,
    upn_lower         TEXT NOT NULL,
    mail              TEXT,
    given_name        TEXT,
    surname           TEXT,
    display_name      TEXT NOT NULL,
    job_title         TEXT,
    department        TEXT,
    account_enabled   BIGINT NOT NULL,
    custom_attributes TEXT NOT NULL,
    managed_apple_id  TEXT,
    content_hash      TEXT NOT NULL,
    first_seen_run    TEXT,
    last_changed_run  TEXT,
    last_seen_run     TEXT,
    first_seen_at     BIGINT NOT NULL,
    last_changed_at   BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    not_synced_at     BIGINT,
    not_synced_reason TEXT,
    UNIQUE (source_id, external_id)
);
CREATE INDEX directory_users_upn_lower ON directory_users (upn_lower);
CREATE INDEX directory_users_last_seen_run ON directory_users (source_id, last_seen_run);

CREATE TABLE directory_groups (
    id                TEXT PRIMARY KEY,
    source_id         TEXT NOT NULL,
    external_id       TEXT NOT NULL,
    display_name      TEXT NOT NULL,
    description       TEXT,
    mail              TEXT,
    mail_enabled      BIGINT NOT NULL,
    security_enabled  BIGINT NOT NULL,
    group_types       TEXT NOT NULL,
    content_hash      TEXT NOT NULL,
    first_seen_run    TEXT,
    last_changed_run  TEXT,
    last_seen_run     TEXT,
    first_seen_at     BIGINT NOT NULL,
    last_changed_at   BIGINT NOT NULL,
    last_seen_at      BIGINT NOT NULL,
    not_synced_at     BIGINT,
    not_synced_reason TEXT,
    UNIQUE (source_id, external_id)
);
CREATE INDEX directory_groups_last_seen_run ON directory_groups (source_id, last_seen_run);

-- Direct memberships by the source's ids: a member may arrive before (or without) its own object.
CREATE TABLE group_members (
    source_id          TEXT NOT NULL,
    group_external_id  TEXT NOT NULL,
    member_external_id TEXT NOT NULL,
    member_kind        TEXT NOT NULL,
    first_seen_run     TEXT,
    last_seen_run      TEXT,
    PRIMARY KEY (source_id, group_external_id, member_external_id)
);
CREATE INDEX group_members_member ON group_members (source_id, member_external_id);
