-- The delivery log (issue #10): one row per delivery attempt, written in batches off the hot
-- path, pruned after delivery_log.retention. Timestamps are RFC 3339 UTC with milliseconds.
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    status BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS delivery_attempts_by_webhook
    ON delivery_attempts (account_id, webhook_id, created_at);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_event
    ON delivery_attempts (account_id, event_id, created_at);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_age ON delivery_attempts (created_at);
