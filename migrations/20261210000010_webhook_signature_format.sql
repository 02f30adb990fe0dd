-- Portable SQL: runs unchanged on SQLite and PostgreSQL (TEXT only).
-- Standard Webhooks signatures and secret rotation (issue #20):
-- signature_format: "platform" (every row written before this column existed) or
--   "standard_webhooks";
-- previous_secret_enc: the secret a PATCH replaced, encrypted like secret_enc (bound to its own
--   column), still signing beside the current one until previous_secret_until (RFC 3339 UTC
--   with milliseconds, like created_at); both NULL when there is no overlap.
ALTER TABLE webhooks ADD COLUMN signature_format TEXT NOT NULL DEFAULT 'platform';
ALTER TABLE webhooks ADD COLUMN previous_secret_enc TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until TEXT;
