-- Per-account signing keys for private_key_jwt client assertions (issue #7).
-- Each account has a key set with a public, unguessable jwks_id (its public JWKS URL), and one
-- or more RSA keys. A key signs from signs_from on (rotation publishes a key before it signs),
-- and is published until retire_at (NULL: no end set).
-- private_key_enc holds the PKCS#8 PEM, AES-256-GCM encrypted with database.encryption_key and
-- bound to the account and kid.
CREATE TABLE IF NOT EXISTS account_key_sets (
    account_id TEXT PRIMARY KEY,
    jwks_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS account_signing_keys (
    kid TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    private_key_enc TEXT NOT NULL,
    certificate_pem TEXT,
    created_at TEXT NOT NULL,
    signs_from TEXT NOT NULL,
    retire_at TEXT
);

CREATE INDEX IF NOT EXISTS account_signing_keys_by_account
    ON account_signing_keys (account_id, signs_from);
