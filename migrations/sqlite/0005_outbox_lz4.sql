-- PostgreSQL compresses the outbox with lz4 here (see migrations/postgres/0005); SQLite
-- never compresses. This keeps both backends on the same migration versions.
SELECT 1;
