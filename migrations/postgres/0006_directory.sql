-- Directory pages: lower-cased name and mail for prefix search and sorting, soft delete of local accounts, and
-- the indexes the users list needs at 100,000 users. The search columns use the "C" collation so that range
-- scans and ORDER BY compare bytes, exactly as SQLite's default BINARY collation does: the same queries then
-- give the same order on both backends and use plain b-tree indexes for prefixes.
ALTER TABLE directory_users ADD COLUMN display_name_lower TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE directory_users ADD COLUMN mail_lower TEXT COLLATE "C";
ALTER TABLE directory_users ADD COLUMN deleted_at BIGINT;
ALTER TABLE directory_users ALTER COLUMN upn_lower TYPE TEXT COLLATE "C";
ALTER TABLE directory_users ALTER COLUMN id TYPE TEXT COLLATE "C";
UPDATE directory_users SET display_name_lower = LOWER(display_name), mail_lower = LOWER(mail);
CREATE INDEX directory_users_name ON directory_users (display_name_lower, id);
CREATE INDEX directory_users_mail ON directory_users (mail_lower);
CREATE INDEX directory_users_upn_id ON directory_users (upn_lower, id);
CREATE INDEX directory_users_apple ON directory_users (managed_apple_id);
CREATE INDEX directory_users_changed ON directory_users (last_changed_at, id);
