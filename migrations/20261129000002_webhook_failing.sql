-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT and BIGINT only).
-- A row exists while a webhook's deliveries are failing: since when (RFC 3339 UTC, ms). Written
-- when the state changes (first failure after a success, first success after failures), not on
-- every delivery; read before the worker disables a webhook after `delivery.disable_after`.
CREATE TABLE IF NOT EXISTS webhook_failing (
    webhook_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    failing_since TEXT NOT NULL
);
