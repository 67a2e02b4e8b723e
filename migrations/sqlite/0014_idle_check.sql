-- The inactivity sweep finds open appeals by `idle_check_at`, a lower bound of their close
-- deadline (the layout PostgreSQL needs to update appeals in place; one schema for both
-- stores). SQLite rewrites the index entries of every assigned column whatever its value,
-- so here the engine always writes the deadline itself as the bound.
ALTER TABLE appeals ADD COLUMN idle_check_at BIGINT;
UPDATE appeals SET idle_check_at = close_deadline WHERE status = 'open';
DROP INDEX appeals_idle;
CREATE INDEX appeals_idle ON appeals (partition_key, idle_check_at) WHERE status = 'open';
