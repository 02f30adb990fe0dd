//! Where an HTTP request to a customer's URL goes, worked out once when the URL is read rather
//! than on every request: the `http::Uri` the client connects to, the request line's target, the
//! connection pool's key, the `Host` header and the credentials the URL carries. The rules are
//! the ones reqwest applied on every request before the delivery client moved to hyper, so a URL
//! is sent to exactly as it was.

use std::sync::Arc;

use base64::{prelude::BASE64_STANDARD, Engine};
use http::{
    uri::{Parts, Scheme},
    HeaderValue, Uri,
};
use percent_encoding::percent_decode_str;

/// A URL ready to be sent to. Only `http` and `https` URLs that `http::Uri` accepts have one:
/// reqwest refused any other before sending.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestTarget {
    /// Absolute form, without the URL's credentials (they travel in `basic_auth`).
    pub uri: Uri,
    /// The request line's target (origin form: the path and query), as hyper-util rewrote the
    /// absolute form on every request.
    pub origin: Uri,
    /// Which pooled connections can carry the request: one per scheme and authority.
    pub key: PoolKey,
    /// What the client would otherwise format on every request: the host, and the port unless it
    /// is the scheme's default.
    pub host: HeaderValue,
    /// `Authorization: Basic` for credentials in the URL, as reqwest sent them. New webhooks
    /// cannot have any (the draft refuses them), but rows written before that rule can.
    pub basic_auth: Option<HeaderValue>,
}

impl RequestTarget {
    pub fn new(url: &url::Url) -> Option<Self> {
        // Another scheme would reach the connector as a plain TCP connection.
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return None;
        }
        let (uri, basic_auth) = match credentials(url) {
            Some((username, password)) => {
                let mut bare = url.clone();
                // Cannot fail: the URL has a host.
                let _ = bare.set_username("");
                let _ = bare.set_password(None);
                (
                    bare.as_str().parse::<Uri>().ok()?,
                    Some(basic_auth(&username, password.as_deref())),
                )
            }
            None => (url.as_str().parse::<Uri>().ok()?, None),
        };
        let host = host_header(&uri)?;
        let key = PoolKey(format!("{}://{}", uri.scheme()?, uri.authority()?).into());
        Some(Self {
            origin: origin_form(&uri),
            key,
            uri,
            host,
            basic_auth,
        })
    }
}

/// The scheme and authority a pooled connection was opened to, as one text: hashed in one pass
/// (an `Authority` hashes itself a byte at a time, to ignore case; the URL's parse has already
/// lower-cased the host).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey(Arc<str>);

#[cfg(test)]
impl PoolKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The path and query alone, `/` when there are none.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    }
}

/// The URL's user name and password, percent-decoded; none when there are none, or when the user
/// name is not UTF-8 (a password that is not is dropped), as reqwest did.
fn credentials(url: &url::Url) -> Option<(String, Option<String>)> {
    let username = percent_decode_str(url.username()).decode_utf8().ok()?;
    let password = url
        .password()
        .and_then(|p| percent_decode_str(p).decode_utf8().ok());
    if username.is_empty() && password.is_none() {
        return None;
    }
    Some((username.into_owned(), password.map(|p| p.into_owned())))
}

fn basic_auth(username: &str, password: Option<&str>) -> HeaderValue {
    let mut plain = format!("{username}:");
    plain.push_str(password.unwrap_or(""));
    let mut value = HeaderValue::try_from(format!("Basic {}", BASE64_STANDARD.encode(plain)))
        // Base64 and "Basic " are visible ASCII: always a valid value.
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// `Host` as hyper-util sets it when a request has none.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default_port = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => 443,
        _ => 80,
    };
    match uri.port_u16() {
        Some(port) if port != default_port => HeaderValue::try_from(format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Option<RequestTarget> {
        RequestTarget::new(&url::Url::parse(url).expect("a URL"))
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_default() {
        let host = |url| target(url).expect("a target").host;
        assert_eq!(host("https://example.com/hook"), "example.com");
        assert_eq!(host("https://example.com:443/hook"), "example.com");
        assert_eq!(host("https://example.com:8443/hook"), "example.com:8443");
        assert_eq!(host("http://example.com:80/"), "example.com");
        assert_eq!(host("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(host("http://[::1]:8080/"), "[::1]:8080");
    }

    #[test]
    fn the_uri_is_the_normalised_url() {
        let uri = |url| target(url).expect("a target").uri.to_string();
        assert_eq!(
            uri("HTTPS://Example.COM/a b?x=1"),
            "https://example.com/a%20b?x=1"
        );
        assert_eq!(uri("https://example.com"), "https://example.com/");
        assert_eq!(
            uri("https://example.com/p#fragment"),
            "https://example.com/p"
        );
        assert_eq!(uri("http://0x7f.1:9/"), "http://127.0.0.1:9/");
    }

    #[test]
    fn the_request_line_names_the_path_and_query_and_the_pool_key_the_origin() {
        let t = target("https://user:pw@Example.com:8443/a/b?x=1#f").expect("a target");
        assert_eq!(t.origin.to_string(), "/a/b?x=1");
        assert_eq!(t.key.as_str(), "https://example.com:8443");
        let root = target("http://example.com").expect("a target");
        assert_eq!(root.origin.to_string(), "/");
        assert_eq!(root.key.as_str(), "http://example.com");
        let other_port = target("http://example.com:8080/").expect("a target");
        assert_ne!(other_port.key, root.key);
    }

    #[test]
    fn credentials_move_from_the_url_to_basic_auth() {
        let t = target("https://us%20er:p%40ss@example.com/hook").expect("a target");
        assert_eq!(t.uri.to_string(), "https://example.com/hook");
        let auth = t.basic_auth.expect("basic auth");
        assert!(auth.is_sensitive());
        assert_eq!(
            auth,
            format!("Basic {}", BASE64_STANDARD.encode("us er:p@ss")).as_str()
        );
        let user_only = target("https://user@example.com/").expect("a target");
        assert_eq!(
            user_only.basic_auth.expect("basic auth"),
            format!("Basic {}", BASE64_STANDARD.encode("user:")).as_str()
        );
        assert!(target("https://example.com/")
            .expect("a target")
            .basic_auth
            .is_none());
    }

    #[test]
    fn only_http_and_https_urls_have_a_target() {
        assert!(target("ftp://example.com/").is_none());
        assert!(target("mailto:someone@example.com").is_none());
        assert!(target("http://example.com/").is_some());
    }
}
