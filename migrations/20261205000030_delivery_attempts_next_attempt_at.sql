-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- When the delivery is due again (issue #18), on the delivery log's row of a failed attempt
-- whose retry was scheduled, or of a park: RFC 3339 UTC with milliseconds, like created_at.
-- NULL on every other row, and on the rows written before this column existed.
ALTER TABLE delivery_attempts ADD COLUMN next_attempt_at TEXT;
