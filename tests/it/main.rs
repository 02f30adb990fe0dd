//! The integration-test binary: one binary, one module per area.

mod oidc;
mod oidc_errors;
mod oidc_provider;
