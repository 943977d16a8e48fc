-- The Managed Apple ID conflict count (after every sync round) and the "shares a Managed Apple ID" filter only
-- look at active users with an Apple ID. Indexing just those rows lets both read the index alone instead of
-- visiting every user's row (≈ 265 ms at 100,000 users on SQLite, docs/benchmarks.md).
DROP INDEX IF EXISTS directory_users_apple;
CREATE INDEX directory_users_apple_active ON directory_users (managed_apple_id)
    WHERE deleted_at IS NULL AND not_synced_at IS NULL AND managed_apple_id IS NOT NULL;
