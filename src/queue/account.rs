//! The event's `account_id` header, read fail-closed (DESIGN.md, "Input: the event message").
//!
//! Absent means the configured default account. Present, it must be a non-empty UTF-8 text (an
//! AMQP long or short string); anything else (a number, a boolean, an empty or non-UTF-8 string,
//! bytes, a table, an array, void) is [`BadAccount`]: the event is poison with reason
//! `bad_account` and is delivered to nobody. Reading such a header as "absent" would hand the
//! event to the default account's webhooks, which is another tenant's.

use lapin::types::{AMQPValue, FieldTable, ShortString};

use super::job::ACCOUNT_ID;
use crate::dead_reason::DeadReason;

/// An `account_id` header that is present but unreadable as an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the account_id header is {found}, not a non-empty text")]
pub struct BadAccount {
    /// What the header held, in words (never its value: it is unreadable anyway).
    pub found: &'static str,
}

impl BadAccount {
    /// The dead letter's reason and the poison metric's label.
    pub const REASON: DeadReason = DeadReason::BadAccount;
}

/// The event's account: `Ok(None)` when the header is absent (the default account),
/// `Ok(Some(id))` for a non-empty text, [`BadAccount`] for anything else.
pub fn account_header(headers: Option<&FieldTable>) -> Result<Option<String>, BadAccount> {
    let Some(value) = headers.and_then(|h| h.inner().get(&ShortString::from(ACCOUNT_ID))) else {
        return Ok(None);
    };
    let text = match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .map_err(|_| BadAccount {
                found: "a string that is not UTF-8",
            })?
            .to_string(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => return Err(BadAccount { found: kind(other) }),
    };
    if text.is_empty() {
        return Err(BadAccount {
            found: "an empty string",
        });
    }
    Ok(Some(text))
}

fn kind(value: &AMQPValue) -> &'static str {
    match value {
        AMQPValue::Boolean(_) => "a boolean",
        AMQPValue::ShortShortInt(_)
        | AMQPValue::ShortShortUInt(_)
        | AMQPValue::ShortInt(_)
        | AMQPValue::ShortUInt(_)
        | AMQPValue::LongInt(_)
        | AMQPValue::LongUInt(_)
        | AMQPValue::LongLongInt(_) => "an integer",
        AMQPValue::Float(_) | AMQPValue::Double(_) | AMQPValue::DecimalValue(_) => "a number",
        AMQPValue::Timestamp(_) => "a timestamp",
        AMQPValue::FieldArray(_) => "an array",
        AMQPValue::FieldTable(_) => "a table",
        AMQPValue::ByteArray(_) => "a byte array",
        AMQPValue::Void => "void",
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => "a string",
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{ByteArray, DecimalValue, FieldArray, LongString};

    use super::*;

    fn with(value: AMQPValue) -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(ACCOUNT_ID.into(), value);
        headers
    }

    #[test]
    fn an_absent_header_is_the_default_account() {
        assert_eq!(account_header(None), Ok(None));
        assert_eq!(account_header(Some(&FieldTable::default())), Ok(None));
        let mut other = FieldTable::default();
        other.insert("x-other".into(), AMQPValue::Boolean(true));
        assert_eq!(account_header(Some(&other)), Ok(None));
    }

    #[test]
    fn a_long_or_short_string_names_the_account() {
        let long = with(AMQPValue::LongString(LongString::from("acct-a")));
        assert_eq!(account_header(Some(&long)), Ok(Some("acct-a".into())));
        let short = with(AMQPValue::ShortString(ShortString::from("acct-b")));
        assert_eq!(account_header(Some(&short)), Ok(Some("acct-b".into())));
    }

    #[test]
    fn every_other_spelling_is_a_bad_account() {
        let cases = [
            (
                AMQPValue::LongString(LongString::from("")),
                "an empty string",
            ),
            (
                AMQPValue::ShortString(ShortString::from("")),
                "an empty string",
            ),
            (
                AMQPValue::LongString(LongString::from(vec![0xff, 0xfe, b'a'])),
                "a string that is not UTF-8",
            ),
            (AMQPValue::LongLongInt(42), "an integer"),
            (AMQPValue::LongInt(42), "an integer"),
            (AMQPValue::ShortShortUInt(1), "an integer"),
            (AMQPValue::Boolean(false), "a boolean"),
            (AMQPValue::Double(1.5), "a number"),
            (AMQPValue::Float(1.5), "a number"),
            (
                AMQPValue::DecimalValue(DecimalValue { scale: 1, value: 5 }),
                "a number",
            ),
            (AMQPValue::Timestamp(1), "a timestamp"),
            (
                AMQPValue::ByteArray(ByteArray::from(b"acct-a".to_vec())),
                "a byte array",
            ),
            (AMQPValue::FieldArray(FieldArray::default()), "an array"),
            (AMQPValue::FieldTable(FieldTable::default()), "a table"),
            (AMQPValue::Void, "void"),
        ];
        for (value, found) in cases {
            let described = format!("{value:?}");
            let error = account_header(Some(&with(value))).expect_err(&described);
            assert_eq!(error.found, found, "{described}");
            assert_eq!(BadAccount::REASON.as_str(), "bad_account");
            assert!(error.to_string().contains(found), "{error}");
        }
    }
}
