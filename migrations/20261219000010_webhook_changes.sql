-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT and BIGINT only).
-- The change log of webhook rows (issue 19): one row per write to `webhooks` (create, update,
-- delete, disable by endpoint health), written in the same transaction as the write. `seq`
-- grows by one per change with no gap (MAX + 1, writers serialized: SQLite has one writer,
-- PostgreSQL takes a transaction-scoped advisory lock), so a replica that has applied every
-- change up to a mark reads only `seq > mark`. changed_at: RFC 3339 UTC with milliseconds, for
-- pruning; the newest row is never pruned, so a sequence number is never used twice.
CREATE TABLE IF NOT EXISTS webhook_changes (
    seq BIGINT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
