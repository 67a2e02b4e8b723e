-- A batch's records are one large JSON text that lives for milliseconds (until the relay
-- publishes it). PostgreSQL compressed it with pglz on every insert, which was the largest
-- single cost of a batch commit; stored out of line uncompressed, it costs only the bytes.
ALTER TABLE outbox_batches ALTER COLUMN records SET STORAGE EXTERNAL;
