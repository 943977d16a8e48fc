-- Delta sync: the $select a stored delta link was made with (a different selection needs a full round),
-- notifications that point at the sync round that raised them and know whether they were read, and the
-- deletion safety: removals a round found, pending until it finishes, or held for an admin's decision.
ALTER TABLE user_sources ADD COLUMN delta_select TEXT;
ALTER TABLE user_sources ADD COLUMN removal_guard_percent BIGINT NOT NULL DEFAULT 10;
ALTER TABLE user_sources ADD COLUMN removal_guard_min BIGINT NOT NULL DEFAULT 20;
ALTER TABLE notifications ADD COLUMN run_id TEXT;
ALTER TABLE notifications ADD COLUMN read_at BIGINT;

-- status: 'pending' while the round that found the removal runs; 'held' when the deletion safety stopped it.
CREATE TABLE user_removals (
    source_id   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (source_id, external_id)
);
CREATE INDEX user_removals_run ON user_removals (run_id, status);
