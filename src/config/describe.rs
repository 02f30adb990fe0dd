//! Configuration errors in plain words: which key, where its value came from (named the same way
//! every time), and what was wanted, e.g. "must be a whole number from 0 to 65535, not the text
//! \"lots\"" rather than serde's "invalid type: found string \"lots\", expected u16".

use figment::error::{Actual, Kind};

use super::{InvalidValue, ENV_PREFIX};

/// Where a value came from: `file <path as given>`, `environment variable WEBHOOK_WORKER__…`, or
/// the built-in defaults.
pub fn source_name(metadata: Option<&figment::Metadata>, path: &[String]) -> String {
    let Some(metadata) = metadata else {
        return "the built-in defaults".to_string();
    };
    match &metadata.source {
        Some(figment::Source::File(file)) => format!("file {}", shown_path(file)),
        Some(figment::Source::Code(_)) if metadata.name.contains("TOML") => {
            "the built-in defaults or overrides".to_string()
        }
        _ if metadata.name.contains("environment") => format!(
            "environment variable {ENV_PREFIX}{}",
            path.join("__").to_uppercase()
        ),
        _ => metadata.name.to_string(),
    }
}

/// A file path relative to the working directory when it lies below it (as a user typed it),
/// else as it is.
fn shown_path(file: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        file.strip_prefix(cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    });
    relative
        .unwrap_or_else(|| file.to_path_buf())
        .display()
        .to_string()
}

/// One figment error as a sentence naming the key and its source.
pub fn describe(error: figment::Error) -> String {
    let key = error.path.join(".").to_lowercase();
    let source = source_name(error.metadata.as_ref(), &error.path);
    // The value itself is shown only where it cannot be a credential.
    let secret = key.split('.').any(|part| {
        ["url", "encryption_key", "decryption_keys", "token_sha256"]
            .iter()
            .any(|name| part.ends_with(name))
    });
    let message = match &error.kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if secret => {
            format!("must be {} (the value is not shown)", wanted(expected))
        }
        kind => plain(kind),
    };
    if key.is_empty() {
        format!("{message} (from {source})")
    } else {
        format!("key `{key}` (from {source}): {message}")
    }
}

fn plain(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(field, expected) => format!(
            "there is no setting named {field:?} here; the settings are: {}",
            expected.join(", ")
        ),
        Kind::UnknownVariant(found, expected) => {
            format!("{found:?} is not one of: {}", expected.join(", "))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("must be {}, not {}", wanted(expected), found(actual))
        }
        Kind::MissingField(name) => format!("the setting {name:?} is missing"),
        Kind::DuplicateField(name) => format!("the setting {name:?} is given twice"),
        Kind::InvalidLength(length, expected) => {
            format!("has {length} entries; expected {}", wanted(expected))
        }
        // The only socket address among the keys is api.listen: show the form it wants.
        Kind::Message(message) if message == "invalid socket address syntax" => format!(
            "is not an address: expected ip:port, e.g. {EXAMPLE_LISTEN} (an IP address, not a \
             host name such as localhost)"
        ),
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    }
}

/// The form an address key wants, shown in its errors.
pub const EXAMPLE_LISTEN: &str = "127.0.0.1:8080";

/// serde's name of the wanted type, in words.
fn wanted(expected: &str) -> String {
    let whole = |max: &str| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => whole("255"),
        "u16" => whole("65535"),
        "u32" => whole("4294967295"),
        "u64" | "usize" => "a whole number from 0".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a string" => "text in quotes".to_string(),
        "a sequence" => "a list, such as [\"a\", \"b\"]".to_string(),
        other => other.to_string(),
    }
}

fn found(actual: &Actual) -> String {
    match actual {
        Actual::Str(text) => format!("the text {text:?}"),
        Actual::Signed(n) => format!("the number {n}"),
        Actual::Unsigned(n) => format!("the number {n}"),
        Actual::Float(n) => format!("the number {n}"),
        Actual::Bool(b) => format!("{b}"),
        Actual::Seq => "a list".to_string(),
        Actual::Map => "a table".to_string(),
        other => other.to_string(),
    }
}

/// Deserializes `allow_networks`, saying what is wrong with a CIDR rather than the parser's
/// "invalid IP address syntax".
pub fn cidrs<'de, D>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| parse_cidr(text).map_err(serde::de::Error::custom))
        .collect()
}

/// `10.0.0.0/8`, `fd00::/8`; a bare address means just that address.
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, InvalidValue> {
    let text = text.trim();
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip: std::net::IpAddr = address
        .parse()
        .map_err(|_| InvalidValue(format!("{text:?}: {address:?} is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let length = match prefix {
        None => max,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
                InvalidValue(format!(
                "{text:?}: the prefix length must be a whole number from 0 to {max} for {family}"
            ))
            })?,
    };
    ipnet::IpNet::new(ip, length)
        .map_err(|_| InvalidValue(format!("{text:?} is not a valid network")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn error_of(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_key_lists_the_settings_without_nested_quotes() {
        let err = error_of("[amqp]\nprefetchh = 3\n");
        assert!(
            err.contains("key `amqp.prefetchh`") && err.contains("there is no setting named \"prefetchh\" here; the settings are: url, prefix, prefetch,"),
            "{err}"
        );
        assert!(!err.contains("``") && !err.contains("`one of"), "{err}");
    }

    #[test]
    fn a_wrong_type_is_said_in_words() {
        assert!(error_of("[amqp]\nprefetch = \"lots\"\n")
            .contains("must be a whole number from 0 to 65535, not the text \"lots\""),);
        assert!(error_of("[amqp]\nprefetch = 70000\n")
            .contains("must be a whole number from 0 to 65535, not the number 70000"));
        assert!(error_of("[delivery]\nallow_http = \"yes\"\n")
            .contains("must be true or false, not the text \"yes\""));
        assert!(
            error_of("[log]\nformat = \"xml\"\n").contains("\"xml\" is not one of: json, pretty")
        );
    }

    #[test]
    fn a_setting_that_may_hold_a_credential_is_not_echoed() {
        let err = error_of("[database]\nencryption_key = 123456789\n");
        assert!(err.contains("database.encryption_key"), "{err}");
        assert!(
            err.contains("the value is not shown") && !err.contains("123456789"),
            "{err}"
        );
        let err = error_of("[amqp]\nurl = 987654321\n");
        assert!(!err.contains("987654321"), "{err}");
    }

    #[test]
    fn a_cidr_with_a_prefix_length_out_of_range_says_so() {
        let err = error_of("[delivery]\nallow_networks = [\"10.0.0.0/33\"]\n");
        assert!(
            err.contains("the prefix length must be a whole number from 0 to 32 for IPv4"),
            "{err}"
        );
        let err = error_of("[delivery]\nallow_networks = [\"fd00::/129\"]\n");
        assert!(err.contains("from 0 to 128 for IPv6"), "{err}");
        let err = error_of("[delivery]\nallow_networks = [\"10.0.0.x/8\"]\n");
        assert!(err.contains("\"10.0.0.x\" is not an IP address"), "{err}");
        assert_eq!(
            parse_cidr("127.0.0.0/8").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
    }
}
