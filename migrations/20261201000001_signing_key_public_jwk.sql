-- Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- The public JWK of each account signing key (compact JSON: kty, use, alg, kid, n, e, and
-- x5c/x5t), written with the key, so the public JWKS is served without decrypting a private
-- key (issue #16). Keys stored before this column existed have NULL here and get it filled on
-- their first read (oidc::published).
ALTER TABLE account_signing_keys ADD COLUMN public_jwk TEXT;
