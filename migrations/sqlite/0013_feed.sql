-- The event feed (SPEC "Event feed"): each committed batch's output records of one project
-- and one topic as one row, in commit order (SQLite has one writer). AUTOINCREMENT: a seq is
-- never reused after pruning, so a cursor names one row forever. Kept `api.feed_retention`;
-- `feed_horizon` remembers, per project and topic, the last row pruned and its record count,
-- so a cursor older than what is kept gets a 410, not a gap.
CREATE TABLE feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    committed_at INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    records TEXT NOT NULL
);
CREATE INDEX feed_by_project ON feed (project_id, topic, seq);
CREATE INDEX feed_by_age ON feed (committed_at);

CREATE TABLE feed_horizon (
    project_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    through_seq INTEGER NOT NULL,
    through_count INTEGER NOT NULL,
    PRIMARY KEY (project_id, topic)
);
