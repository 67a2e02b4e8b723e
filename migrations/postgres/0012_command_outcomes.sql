-- What became of each command (SPEC "Write API"): written in the transaction of the batch
-- that applied (or rejected) it, so the write API answers from the state it produced, and a
-- command submitted again under its id gets this first outcome, forever. `doc` holds the
-- status, reason, events, client and appeal summaries and the card's revision.
CREATE TABLE command_outcomes (
    project_id TEXT COLLATE "C" NOT NULL,
    command_id TEXT COLLATE "C" NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (project_id, command_id)
);
