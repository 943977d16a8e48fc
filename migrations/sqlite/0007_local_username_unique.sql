-- Local usernames are unique (case-insensitively) among live local accounts, enforced by the database so
-- that two simultaneous creations cannot both succeed. Uniqueness against Entra users is checked by the
-- service (and sync skips Entra users whose username a local account has).
CREATE UNIQUE INDEX directory_users_local_upn ON directory_users (upn_lower) WHERE source = 'local' AND deleted_at IS NULL;
