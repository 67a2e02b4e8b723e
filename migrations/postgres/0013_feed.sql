-- The event feed (SPEC "Event feed"): each committed batch's output records of one project
-- and one topic as one row, in commit order (`seq`: a project's batches hold its advisory
-- lock from their first read to their commit, so its rows take their seq in commit order).
-- Kept `api.feed_retention`; `feed_horizon` remembers, per project and topic, the last row
-- pruned and its record count, so a cursor older than what is kept gets a 410, not a gap.
CREATE TABLE feed (
    seq BIGSERIAL PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL,
    topic TEXT COLLATE "C" NOT NULL,
    committed_at BIGINT NOT NULL,
    record_count BIGINT NOT NULL,
    records TEXT NOT NULL
);
CREATE INDEX feed_by_project ON feed (project_id, topic, seq);
CREATE INDEX feed_by_age ON feed (committed_at);

CREATE TABLE feed_horizon (
    project_id TEXT COLLATE "C" NOT NULL,
    topic TEXT COLLATE "C" NOT NULL,
    through_seq BIGINT NOT NULL,
    through_count BIGINT NOT NULL,
    PRIMARY KEY (project_id, topic)
);

DO $$
BEGIN
    EXECUTE 'ALTER TABLE feed ALTER COLUMN records SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 TOAST compression unavailable; the feed keeps the default';
END
$$;
