-- Dead letters by webhook (issue #17): every dead letter owed to a webhook, recorded with its
-- account, event and reason where the tenant's routes can list and redrive it. The broker's
-- `<prefix>.dead` queue still gets every dead letter (the operator's durable record); this table
-- is written in batches off the delivery path. Portable SQL: TEXT and BIGINT only.
-- id is a UUIDv7 (time-ordered, so it sorts by creation as text); body is the event as
-- published (JSON text); redriven_at is set once a redrive published it (then never sent again).
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_status BIGINT,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    redriven_at TEXT
);

-- The list route: one webhook's letters, newest first; its cost is that webhook's letters only.
CREATE INDEX IF NOT EXISTS dead_letters_by_webhook
    ON dead_letters (webhook_id, created_at, id);
-- Redrive: the webhook's letters not yet redriven, in id order (a keyset cursor).
CREATE INDEX IF NOT EXISTS dead_letters_pending
    ON dead_letters (webhook_id, redriven_at, id);

-- Redrive jobs, so that any API replica can report a job's progress. At most one job runs per
-- webhook (the partial unique index); a job whose replica died stops being refreshed
-- (updated_at) and is then reported, and replaced, as failed.
CREATE TABLE IF NOT EXISTS redrive_jobs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL,
    total BIGINT NOT NULL,
    redriven BIGINT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS redrive_jobs_one_running
    ON redrive_jobs (webhook_id) WHERE status = 'running';
