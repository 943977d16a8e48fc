-- directory_users_upn_id (upn_lower, id) serves every lookup by upn_lower; this one only cost writes
-- (one more random-key index per synced user, docs/benchmarks.md).
DROP INDEX IF EXISTS directory_users_upn_lower;
