//! The documentation-only types of the OpenAPI document: bodies the handlers build as JSON
//! values, and the query parameters every list route reads. The handlers name them in their
//! `#[utoipa::path]` annotations; [`super::openapi`] collects the annotations.

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

/// `page` and `per_page`, as every list route reads them.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The page, from 1.
    #[param(minimum = 1)]
    pub page: Option<i64>,
    /// Entries per page, 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<i64>,
}

/// An account's public JWKS (documentation only: the handlers build it as JSON).
#[derive(Debug, Serialize, ToSchema)]
pub struct JwksBody {
    /// Public JWKs (RFC 7517): `kty`, `kid`, `use`, `alg`, `n`, `e`.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    /// Where identity providers fetch these keys without auth (`GET /jwks/{jwks_id}`).
    pub jwks_uri: String,
}

/// What a rotation started (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationBody {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
    pub jwks_uri: String,
    pub rotation: Rotation,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rotation {
    /// The new key's id.
    pub kid: String,
    /// When the new key starts signing (`oidc.key_rotation_delay` from now).
    pub signs_from: String,
    /// Until when the keys it replaces stay published.
    pub previous_keys_published_until: String,
}

/// The public JWKS (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicJwks {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// `/healthz` (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `/readyz` (documentation only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    pub checks: ReadinessChecks,
    /// Seconds since the webhook registry was last loaded from the database.
    pub registry_age_seconds: u64,
    /// Webhook rows that cannot be decoded (secret or settings); their events are
    /// dead-lettered as `webhook_unreadable` (does not make the process not ready).
    pub registry_rows_unreadable: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok` or `not_ready`.
    pub database: String,
    /// `ok`, `not_ready`, `blocked` (the broker blocked publishing), or `not_used` (role `api`).
    pub broker: String,
    /// `ok` or `not_ready` (stale).
    pub registry: String,
}
