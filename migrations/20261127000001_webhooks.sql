-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT and BIGINT only).
-- Timestamps are RFC 3339 UTC with milliseconds, so they sort as text.
-- *_enc columns hold AES-256-GCM ciphertext ("v1:" + base64(nonce || ciphertext)).
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    url TEXT NOT NULL,
    secret_enc TEXT,
    enabled_events TEXT NOT NULL,
    include TEXT,
    disabled_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    oidc_auth_method TEXT,
    oidc_client_id TEXT,
    oidc_client_secret_enc TEXT,
    oidc_token_endpoint TEXT,
    oidc_resource_uri TEXT,
    oidc_scope TEXT,
    oidc_access_token_ttl_seconds BIGINT
);

CREATE INDEX IF NOT EXISTS webhooks_by_account ON webhooks (account_id, created_at, id);
