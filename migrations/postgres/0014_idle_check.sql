-- The inactivity sweep finds open appeals by `idle_check_at`, a lower bound of their close
-- deadline, rather than by the deadline itself. Every message moves an open appeal's
-- deadline later; indexed on the deadline, each such update rewrote the appeal's index
-- entries. The engine keeps a stored bound while it is no later than the deadline, so the
-- update leaves every indexed column as it was and PostgreSQL updates the row in place
-- (HOT); the sweep raises a bound it finds stale to the deadline. `fillfactor` leaves the
-- free space in each page that in-place updates need, on the three tables updated most.
ALTER TABLE appeals ADD COLUMN idle_check_at BIGINT;
UPDATE appeals SET idle_check_at = close_deadline WHERE status = 'open';
DROP INDEX appeals_idle;
CREATE INDEX appeals_idle ON appeals (partition_key, idle_check_at) WHERE status = 'open';
ALTER TABLE appeals SET (fillfactor = 80);
ALTER TABLE clients SET (fillfactor = 80);
ALTER TABLE client_handles SET (fillfactor = 80);
