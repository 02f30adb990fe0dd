//! The network rules for customer-controlled destinations (webhook URLs and token endpoints):
//! which addresses may be connected to ([`addresses`]) and the resolver that enforces them on
//! the address actually connected to ([`resolver`]). The delivery client and the OAuth token
//! client both go through it; it depends on nothing else in the crate.

pub mod addresses;
pub mod resolver;

pub use addresses::AddressPolicy;
