-- Groups get a lower-cased name like users, so prefix search and paging compare the same bytes on both
-- backends (SQLite's LOWER only folds ASCII) and use an index.
ALTER TABLE directory_groups ADD COLUMN display_name_lower TEXT NOT NULL DEFAULT '';
UPDATE directory_groups SET display_name_lower = LOWER(display_name);
CREATE INDEX directory_groups_name ON directory_groups (display_name_lower, id);
