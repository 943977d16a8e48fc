-- Groups get a lower-cased name like users, so prefix search and paging compare the same bytes on both
-- backends and use an index ("C" collation: byte order, as SQLite's BINARY).
ALTER TABLE directory_groups ADD COLUMN display_name_lower TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE directory_groups ALTER COLUMN id TYPE TEXT COLLATE "C";
UPDATE directory_groups SET display_name_lower = LOWER(display_name);
CREATE INDEX directory_groups_name ON directory_groups (display_name_lower, id);
