-- The merge ledger (SPEC "Read API", merges): one row per merge, written in the transaction
-- of the batch that merged, so an operator can see what joined a card, when, by which rule or
-- operator and on which values. A card is absorbed once, so the first absorbed id names the
-- merge. The ledger of a card is the rows whose survivor is the card or a card it absorbed
-- (every merge a group took part in left its survivor in the group). Merges made before this
-- migration were not recorded; the cards still list what they absorbed.
CREATE TABLE merge_ledger (
    merge_id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    survivor_id TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX merge_ledger_by_survivor ON merge_ledger (project_id, survivor_id);

-- The read API lists an appeal's messages.
CREATE INDEX messages_by_appeal ON messages (appeal_id);
