-- One outbox row per committed batch instead of one per record: a batch of 500 inputs
-- yields ~1,700 records, and writing (then deleting) them one row each was the largest
-- part of the commit. `records` is a JSON array of [topic, key, value] triples in emit order.
CREATE TABLE outbox_batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL UNIQUE,
    records TEXT NOT NULL
);

INSERT INTO outbox_batches (batch_id, records)
SELECT batch_id, json_group_array(json_array(topic, record_key, value))
FROM (SELECT * FROM outbox ORDER BY seq)
GROUP BY batch_id
ORDER BY MIN(seq);

DROP TABLE outbox;
