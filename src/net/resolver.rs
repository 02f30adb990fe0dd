//! The HTTP clients' DNS resolver: resolves a host, then drops every address the
//! [`AddressPolicy`] refuses, so the connection can only go to an address that was checked. This
//! is what defeats DNS rebinding: the address checked is the address connected to. It serves
//! both clients: hyper-util's connector for deliveries (as a `tower::Service`) and reqwest's for
//! token endpoints (as a `reqwest::dns::Resolve`).
//!
//! IP-literal URLs never reach a resolver; [`check_literal`] covers them before sending.
//!
//! Lookups are asynchronous (hickory, reading `/etc/resolv.conf` and `/etc/hosts`), not
//! `getaddrinfo` on a blocking thread: when an attempt's deadline drops the request, its lookup
//! stops too, instead of holding one of tokio's blocking threads until the system resolver
//! gives up.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use hickory_resolver::{
    config::{LookupIpStrategy, ResolveHosts},
    TokioResolver,
};
use hyper_util::client::legacy::connect::dns::Name as HyperName;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::net::addresses::AddressPolicy;

#[derive(Clone)]
pub struct SafeResolver {
    policy: AddressPolicy,
    dns: Arc<TokioResolver>,
}

impl fmt::Debug for SafeResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The system's DNS configuration cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the system's DNS configuration (/etc/resolv.conf): {0}")]
pub struct DnsConfigError(String);

impl SafeResolver {
    /// A resolver with the system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    pub fn new(policy: AddressPolicy) -> Result<Self, DnsConfigError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsConfigError(e.to_string()))?;
        let options = builder.options_mut();
        // `localhost` and names pinned in /etc/hosts resolve as they do for every other program.
        options.use_hosts_file = ResolveHosts::Always;
        // Every address of the name, as getaddrinfo gives them; the policy then filters them.
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        Ok(Self {
            policy,
            dns: Arc::new(builder.build()),
        })
    }

    /// Every address of `host` the policy permits; [`BlockedAddress`] when it permits none.
    fn lookup(
        &self,
        host: String,
    ) -> impl Future<Output = Result<Vec<SocketAddr>, BoxError>> + Send + 'static {
        let policy = self.policy.clone();
        let dns = self.dns.clone();
        async move {
            let resolved = dns.lookup_ip(host.as_str()).await?;
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .filter(|ip| policy.permits(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(BlockedAddress { host }) as BoxError);
            }
            Ok(allowed)
        }
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The host resolved only to addresses the policy refuses.
#[derive(Debug)]
pub struct BlockedAddress {
    pub host: String,
}

impl fmt::Display for BlockedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} resolves only to non-public addresses", self.host)
    }
}

impl StdError for BlockedAddress {}

/// For reqwest (the token client).
impl Resolve for SafeResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.lookup(name.as_str().to_string());
        Box::pin(async move { Ok(Box::new(lookup.await?.into_iter()) as Addrs) })
    }
}

/// For hyper-util's `HttpConnector` (the delivery client). A new connection only: pooled ones
/// resolve nothing.
impl tower::Service<HyperName> for SafeResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: HyperName) -> Self::Future {
        let lookup = self.lookup(name.as_str().to_string());
        Box::pin(async move { lookup.await.map(Vec::into_iter) })
    }
}

/// Refuses a URL whose host is an IP literal the policy refuses (any spelling the URL parser
/// normalizes: `[::ffff:127.0.0.1]`, `2130706433`, `0x7f.1`).
pub fn check_literal(url: &url::Url, policy: &AddressPolicy) -> Result<(), RefusedLiteral> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(RefusedLiteral::NoHost),
    };
    if policy.permits(ip) {
        Ok(())
    } else {
        Err(RefusedLiteral::NonPublic(ip))
    }
}

/// Why [`check_literal`] refused a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedLiteral {
    #[error("the URL has no host")]
    NoHost,
    #[error("{0} is a non-public address")]
    NonPublic(std::net::IpAddr),
}

/// Whether `error` (from either client) was caused by the resolver refusing every address:
/// [`BlockedAddress`] anywhere in its chain of sources (hyper-util keeps the resolver's error as
/// the source of its connect error, and reqwest keeps hyper-util's error).
pub fn is_blocked(error: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BlockedAddress>() {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let resolver = SafeResolver::new(AddressPolicy::default()).unwrap();
        let name: Name = "localhost".parse().unwrap();
        let error = resolver.resolve(name).await.err().expect("refused");
        assert!(is_blocked(error.as_ref()), "{error}");
    }

    #[tokio::test]
    async fn the_delivery_clients_lookup_refuses_loopback_too() {
        use tower::ServiceExt;
        let resolver = SafeResolver::new(AddressPolicy::default()).unwrap();
        let name: HyperName = "localhost".parse().unwrap();
        let error = resolver.oneshot(name).await.expect_err("refused");
        assert!(is_blocked(error.as_ref()), "{error}");
    }

    #[tokio::test]
    async fn an_allowed_network_resolves() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let resolver = SafeResolver::new(policy).unwrap();
        let name: Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = resolver.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }

    #[test]
    fn literal_addresses_are_checked_in_every_spelling() {
        let policy = AddressPolicy::default();
        for url in [
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://169.254.169.254/",
            "https://[2002:7f00:1::]/",
            "https://[2001:0:808:808::80ff:fffe]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[::ffff:0:7f00:1]/",
        ] {
            let parsed = url::Url::parse(url).unwrap();
            assert!(check_literal(&parsed, &policy).is_err(), "{url}");
        }
        let public = url::Url::parse("https://93.184.216.34/").unwrap();
        assert!(check_literal(&public, &policy).is_ok());
    }
}
