-- Delta sync: the $select a stored delta link was made with (a different selection needs a full round),
-- and notifications that point at the sync round that raised them.
ALTER TABLE user_sources ADD COLUMN delta_select TEXT;
ALTER TABLE notifications ADD COLUMN run_id TEXT;
ALTER TABLE notifications ADD COLUMN read_at BIGINT;
