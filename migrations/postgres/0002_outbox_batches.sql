-- One outbox row per committed batch instead of one per record: a batch of 500 inputs
-- yields ~1,700 records, and writing (then deleting) them one row each was the largest
-- part of the commit. `records` is a JSON array of [topic, key, value] triples in emit order.
CREATE TABLE outbox_batches (
    seq BIGSERIAL PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    records TEXT NOT NULL
);

INSERT INTO outbox_batches (batch_id, records)
SELECT batch_id, json_agg(json_build_array(topic, record_key, value) ORDER BY seq)::TEXT
FROM outbox
GROUP BY batch_id
ORDER BY MIN(seq);

DROP TABLE outbox;
