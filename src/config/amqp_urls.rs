//! `amqp.url`: one broker URL, or the URLs of a RabbitMQ cluster's nodes.
//!
//! Written as a TOML string, a TOML list of strings, or (for `WEBHOOK_WORKER__AMQP__URL`, where
//! a list is awkward) one string of comma-separated URLs. A comma splits the text only where a
//! URL follows it (`scheme://`), so a single URL whose password holds a comma reads as it always
//! did, and a list entry with a wrong scheme is still an entry of its own, named by its number. Every URL may hold a password: each is kept as a [`Secret`], and errors name
//! the key and the entry's number, never its text.

use std::fmt;

use serde::{
    de::{SeqAccess, Visitor},
    Deserialize, Deserializer,
};

use super::Invalid;
use crate::secret::Secret;

const SCHEMES: [&str; 2] = ["amqp://", "amqps://"];
const EXAMPLE: &str = "e.g. amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker's nodes, in the order given; never empty once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUrls(Vec<Secret>);

impl AmqpUrls {
    /// One URL, or several separated by commas (see the module's doc).
    pub fn parse(text: &str) -> Self {
        let mut urls: Vec<String> = Vec::new();
        // A trailing comma ends the list; no URL ends with one.
        for piece in text.trim_end_matches([',', ' ']).split(',') {
            let starts_a_url = has_scheme(piece.trim_start());
            match urls.last_mut() {
                // A comma inside a URL (a password, a query): it stays part of it.
                Some(last) if !starts_a_url => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => urls.push(piece.trim().to_string()),
            }
        }
        Self(urls.into_iter().map(Secret::new).collect())
    }

    /// The URLs, one per node.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each entry is an AMQP URL. The error names `amqp.url` and, in a list, the entry's number.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            return Err((
                "amqp.url",
                format!("must name at least one node, {EXAMPLE}"),
            ));
        }
        for (index, url) in self.0.iter().enumerate() {
            let url = url.expose();
            if SCHEMES.iter().any(|scheme| url.starts_with(scheme)) {
                continue;
            }
            let message = if self.0.len() == 1 {
                format!("must start with amqp:// or amqps://, {EXAMPLE}")
            } else {
                format!(
                    "entry {} of {} must start with amqp:// or amqps://, {EXAMPLE}",
                    index + 1,
                    self.0.len()
                )
            };
            return Err(("amqp.url", message));
        }
        Ok(())
    }
}

/// Whether `text` starts with `scheme://` (RFC 3986: a letter, then letters, digits, + - .).
fn has_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

impl<'de> Deserialize<'de> for AmqpUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UrlsVisitor)
    }
}

struct UrlsVisitor;

impl<'de> Visitor<'de> for UrlsVisitor {
    type Value = AmqpUrls;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AMQP URL, or a list of them (one per node)")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<AmqpUrls, E> {
        Ok(AmqpUrls::parse(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AmqpUrls, A::Error> {
        let mut urls = Vec::new();
        while let Some(url) = seq.next_element::<String>()? {
            urls.push(Secret::new(url.trim()));
        }
        Ok(AmqpUrls(urls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposed(urls: &AmqpUrls) -> Vec<&str> {
        urls.iter().map(Secret::expose).collect()
    }

    #[test]
    fn one_url_is_one_node() {
        let urls = AmqpUrls::parse("amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(exposed(&urls), ["amqp://guest:guest@127.0.0.1:5672/%2f"]);
        assert_eq!(urls.validate(), Ok(()));
    }

    #[test]
    fn commas_separate_nodes_only_before_a_url() {
        let urls = AmqpUrls::parse("amqp://u:p@a:5701/%2f, amqps://u:p@b:5702/%2f,amqp://c");
        assert_eq!(
            exposed(&urls),
            [
                "amqp://u:p@a:5701/%2f",
                "amqps://u:p@b:5702/%2f",
                "amqp://c"
            ]
        );
        let urls = AmqpUrls::parse("amqp://u:pa,ss@a:5701/%2f,amqp://u:x,y@b/%2f,");
        assert_eq!(
            exposed(&urls),
            ["amqp://u:pa,ss@a:5701/%2f", "amqp://u:x,y@b/%2f"]
        );
        let urls = AmqpUrls::parse("amqp://a/%2f,http://u:hunter2@b");
        assert_eq!(exposed(&urls), ["amqp://a/%2f", "http://u:hunter2@b"]);
        let (_, message) = urls.validate().unwrap_err();
        assert!(message.starts_with("entry 2 of 2"), "{message}");
    }

    #[test]
    fn a_bad_entry_is_named_by_its_number_not_its_text() {
        let urls = AmqpUrls::parse("amqp://a:5701");
        let mut listed = urls.0.clone();
        listed.push(Secret::new("http://user:hunter2@b:5702"));
        let (key, message) = AmqpUrls(listed).validate().unwrap_err();
        assert_eq!(key, "amqp.url");
        assert!(
            message.starts_with("entry 2 of 2 must start with amqp://"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
        let (_, message) = AmqpUrls(Vec::new()).validate().unwrap_err();
        assert!(message.contains("at least one node"), "{message}");
    }

    #[test]
    fn debug_shows_no_url() {
        let urls = AmqpUrls::parse("amqp://u:hunter2@a/%2f,amqp://u:hunter2@b/%2f");
        assert!(!format!("{urls:?}").contains("hunter2"));
    }
}
