//! The parsed parts of a webhook: its endpoint URL and `include` setting (each keeping the text
//! as the customer gave it, which the API shows and the row stores, beside what it means), and
//! its OAuth settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    filter::{Include, IncludeError},
    net::RequestTarget,
    secret::Secret,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OidcAuthMethod {
    PrivateKeyJwt,
    ClientSecret,
}

impl OidcAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            OidcAuthMethod::PrivateKeyJwt => "private_key_jwt",
            OidcAuthMethod::ClientSecret => "client_secret",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "private_key_jwt" => Some(OidcAuthMethod::PrivateKeyJwt),
            "client_secret" => Some(OidcAuthMethod::ClientSecret),
            _ => None,
        }
    }
}

/// An absolute URL: the text as given (a normalised URL could differ from what the customer
/// sent, and the API answers with what was sent), the parsed URL, and what a request to it is
/// sent to, worked out once here rather than on every delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointUrl {
    text: String,
    parsed: url::Url,
    /// `None` for a URL no request can go to (see [`RequestTarget::new`]): it still parses, and
    /// each delivery to it fails.
    target: Option<RequestTarget>,
}

impl EndpointUrl {
    /// Any absolute URL; the rules a new webhook's URLs must follow are the draft's.
    pub fn parse(text: impl Into<String>) -> Result<Self, url::ParseError> {
        let text = text.into();
        let parsed = url::Url::parse(&text)?;
        let target = RequestTarget::new(&parsed);
        Ok(Self {
            text,
            parsed,
            target,
        })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn url(&self) -> &url::Url {
        &self.parsed
    }

    /// Where a request to the URL goes; `None` if none can.
    pub fn target(&self) -> Option<&RequestTarget> {
        self.target.as_ref()
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        self.parsed.origin().ascii_serialization()
    }
}

impl PartialEq<&str> for EndpointUrl {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `include` setting: the text as given (`None` when unset) and what it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IncludeSetting {
    text: Option<String>,
    parsed: Include,
}

impl Default for IncludeSetting {
    fn default() -> Self {
        Self {
            text: None,
            parsed: Include::All,
        }
    }
}

impl IncludeSetting {
    pub fn parse(text: Option<String>) -> Result<Self, IncludeError> {
        let parsed = Include::parse(text.as_deref())?;
        Ok(Self { text, parsed })
    }

    /// The setting as given.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    pub fn include(&self) -> &Include {
        &self.parsed
    }
}

/// A webhook's OAuth 2.0 client-credentials settings: what token acquisition needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OidcSettings {
    /// Whose keys sign the client assertion, and whose tokens the cache may hand out.
    pub account_id: String,
    pub method: OidcAuthMethod,
    pub client_id: String,
    /// Present for `client_secret`.
    pub client_secret: Option<Secret>,
    pub token_endpoint: EndpointUrl,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub access_token_ttl: Duration,
}
