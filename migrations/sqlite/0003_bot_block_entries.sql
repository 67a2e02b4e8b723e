-- Entries into each bot scenario block, for `appealflow report scenarios`.
CREATE TABLE bot_block_entries (
    project_id TEXT NOT NULL,
    scenario_id TEXT NOT NULL,
    block_id TEXT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (project_id, scenario_id, block_id)
);
