//! The network rules for customer-controlled destinations (webhook URLs and token endpoints):
//! which addresses may be connected to ([`addresses`]), the resolver that enforces them on
//! the address actually connected to ([`resolver`]), and what a request to a URL is sent to
//! ([`target`]). The delivery client and the OAuth token client both go through it; it depends
//! on nothing else in the crate.

pub mod addresses;
pub mod resolver;
pub mod target;

pub use addresses::AddressPolicy;
pub use target::{PoolKey, RequestTarget};
