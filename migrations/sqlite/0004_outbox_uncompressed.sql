-- PostgreSQL stops compressing the outbox here (see migrations/postgres/0004); SQLite never
-- compresses. This keeps both backends on the same migration versions.
SELECT 1;
