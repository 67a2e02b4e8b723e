-- Identifier columns compare byte by byte, as SQLite's do. Under the database's default
-- collation (C.UTF-8 or a locale) every index comparison went through strcoll: `bttextcmp`
-- was about 8% of PostgreSQL's CPU in a replay profile, and byte-wise comparison took about
-- 5% off PostgreSQL's CPU in paired replays. Byte order also makes `ORDER BY id`
-- agree with SQLite for non-ASCII ids. Equality is unchanged (both collations are
-- deterministic), so no lookup finds more or less than before. Documents (`doc`, `records`)
-- and columns only ever read back (`kind`, `channel_id`, `visitor_id`) keep the default.
ALTER TABLE project_state ALTER COLUMN project_id TYPE TEXT COLLATE "C";

ALTER TABLE clients
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN merged_into TYPE TEXT COLLATE "C";

ALTER TABLE client_handles
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN handle TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C";

ALTER TABLE client_values
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN field TYPE TEXT COLLATE "C",
    ALTER COLUMN value TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C";

ALTER TABLE appeals
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN client_id TYPE TEXT COLLATE "C",
    ALTER COLUMN visitor_handle TYPE TEXT COLLATE "C",
    ALTER COLUMN status TYPE TEXT COLLATE "C",
    ALTER COLUMN partition_key TYPE TEXT COLLATE "C";

ALTER TABLE messages
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN id TYPE TEXT COLLATE "C",
    ALTER COLUMN appeal_id TYPE TEXT COLLATE "C";

ALTER TABLE applied_inputs
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN input_id TYPE TEXT COLLATE "C";

ALTER TABLE partitions ALTER COLUMN partition_key TYPE TEXT COLLATE "C";

ALTER TABLE outbox_batches ALTER COLUMN batch_id TYPE TEXT COLLATE "C";

ALTER TABLE bot_block_entries
    ALTER COLUMN project_id TYPE TEXT COLLATE "C",
    ALTER COLUMN scenario_id TYPE TEXT COLLATE "C",
    ALTER COLUMN block_id TYPE TEXT COLLATE "C";
