//! One pass over an event's text that checks its grammar and finds what a delivery reads (the
//! envelope's `id` and `type`, `data.object` and its `external_id` and `id`), and whether the
//! text is compact. It answers only when it is sure the text is an event the full parse accepts:
//! anything unusual (an escape inside a key it must read, a `\u` surrogate, a number with an
//! exponent or over 308 digits, nesting deeper than 127, a root that is not an object, bad
//! grammar) makes it answer `None`, and the full parse (serde_json's pass and [`super::text`])
//! decides and names the error. That keeps one definition of what is poison, and the property
//! tests hold the two to the same answers.
//!
//! Why: the full parse walks the text twice (serde_json's pass, then the check of what it skips)
//! and was ~14 % of the worker's CPU per delivery; this pass costs about a fifth of it.

/// What the scan found: raw JSON texts of the members, as they appear in the event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scanned<'a> {
    pub id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// `data.object`, when it is an object: its `external_id` and `id`.
    pub object: Option<Resource<'a>>,
    /// No whitespace outside strings.
    pub compact: bool,
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub(super) struct Resource<'a> {
    pub external_id: Option<&'a str>,
    pub id: Option<&'a str>,
}

/// Where an object sits: the members read depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Envelope,
    Data,
    Object,
    Other,
}

/// Deepest nesting the full parse accepts (see `text::MAX_DEPTH`).
const MAX_DEPTH: u32 = 127;

/// Scans `text`, which must be valid UTF-8 (checked by the caller, for the whole text at once).
pub(super) fn scan(text: &str) -> Option<Scanned<'_>> {
    let mut scanner = Scanner {
        text: text.as_bytes(),
        at: 0,
        found: Scanned {
            compact: true,
            ..Scanned::default()
        },
    };
    scanner.space();
    if scanner.peek() != Some(b'{') {
        return None;
    }
    scanner.value(0, Role::Envelope)?;
    scanner.space();
    if scanner.at != text.len() {
        return None;
    }
    Some(scanner.found)
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    found: Scanned<'a>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.found.compact = false;
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// The raw text from `start` to here. The text is UTF-8 and every token boundary is ASCII.
    fn raw(&self, start: usize) -> Option<&'a str> {
        std::str::from_utf8(&self.text[start..self.at]).ok()
    }

    fn value(&mut self, depth: u32, role: Role) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, role),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number as JSON writes it. One with an exponent or over 308 characters might not fit an
    /// `f64`: the full parse decides.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || self.at - start > 308 {
            return None;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// Skips a string; returns whether it held an escape. A `\u` escape of a surrogate is left
    /// to the full parse.
    fn string(&mut self) -> Option<bool> {
        self.at += 1; // the opening quote
        let mut escaped = false;
        loop {
            self.at += string_stop(self.text.get(self.at..)?)?;
            match self.text[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                _ => return None, // a control character
            }
        }
    }

    fn escape(&mut self) -> Option<()> {
        match self.text.get(self.at + 1)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
            b'u' => {
                let digits = self.text.get(self.at + 2..self.at + 6)?;
                let unit = u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                if (0xD800..=0xDFFF).contains(&unit) {
                    return None;
                }
                self.at += 6;
            }
            _ => return None,
        }
        Some(())
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.space();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth, Role::Other)?;
            self.space();
            if self.eat(b']').is_some() {
                return Some(());
            }
            self.eat(b',')?;
            self.space();
        }
    }

    fn object(&mut self, depth: u32, role: Role) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        if role == Role::Object {
            self.found.object = Some(Resource::default());
        }
        self.at += 1;
        self.space();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key_start = self.at + 1;
            let escaped = self.string()?;
            // A key the envelope may read, written with escapes, is left to the full parse.
            if escaped && role != Role::Other {
                return None;
            }
            let key = &self.text[key_start..self.at - 1];
            self.space();
            self.eat(b':')?;
            self.space();
            self.member(depth, role, key)?;
            self.space();
            if self.eat(b'}').is_some() {
                return Some(());
            }
            self.eat(b',')?;
            self.space();
        }
    }

    /// One member's value. A repeated member counts with its last value, as in the full parse.
    fn member(&mut self, depth: u32, role: Role, key: &[u8]) -> Option<()> {
        let start = self.at;
        let inner = match (role, key) {
            (Role::Envelope, b"data") => {
                self.found.object = None;
                Role::Data
            }
            (Role::Data, b"object") => {
                self.found.object = None;
                Role::Object
            }
            _ => Role::Other,
        };
        self.value(depth, inner)?;
        let raw = || self.raw(start);
        match (role, key) {
            (Role::Envelope, b"id") => self.found.id = Some(raw()?),
            (Role::Envelope, b"type") => self.found.event_type = Some(raw()?),
            (Role::Object, b"external_id") => {
                let value = raw()?;
                if let Some(object) = self.found.object.as_mut() {
                    object.external_id = Some(value);
                }
            }
            (Role::Object, b"id") => {
                let value = raw()?;
                if let Some(object) = self.found.object.as_mut() {
                    object.id = Some(value);
                }
            }
            _ => {}
        }
        Some(())
    }
}

/// Where the first quote, backslash or control character of `rest` is. Eight bytes at a time:
/// strings are most of an event's text.
fn string_stop(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero, or (`below`) under 0x20: the lowest flagged byte is exact (a borrow
    // can only flag bytes above a true one).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below = |x: u64| x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
    let mut chunks = rest.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')))
            | below(word);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    let stop = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(at + stop)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::event::Event;

    const FIXTURE: &str = include_str!("../../tests/fixtures/business.updated.json");

    fn compact_fixture() -> String {
        let value: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        value.to_string()
    }

    /// The scan's event and the full parse's, as text: they must be the same.
    fn both(text: &[u8]) -> (String, String) {
        let body = Bytes::copy_from_slice(text);
        let fast = Event::parse_shared(&body, usize::MAX);
        let full = Event::parse_fully(&body);
        (format!("{fast:?}"), format!("{full:?}"))
    }

    #[test]
    fn the_fixture_is_scanned_compact_or_not() {
        let compact = compact_fixture();
        let found = scan(&compact).expect("the compact fixture scans");
        assert!(found.compact);
        assert_eq!(found.id, Some("\"f215a707-655e-400f-84e6-fbb949f5612a\""));
        assert_eq!(found.event_type, Some("\"business.updated\""));
        assert!(found.object.is_some_and(|o| o.id.is_some()));
        let pretty = scan(FIXTURE).expect("the pretty fixture scans");
        assert!(!pretty.compact);
        assert_eq!((pretty.id, pretty.object), (found.id, found.object));
        for text in [compact.as_bytes(), FIXTURE.as_bytes()] {
            let (fast, full) = both(text);
            assert_eq!(fast, full);
        }
    }

    #[test]
    fn what_is_unusual_is_left_to_the_full_parse() {
        let event = |inner: &str| format!(r#"{{"id":"e","type":"t","data":{{"object":{inner}}}}}"#);
        for text in [
            r#"{"i\u0064":"e","type":"t","data":{"object":{}}}"#.to_string(),
            event(r#"{"name":"\ud83d\ude00"}"#),
            event(r#"{"n":1e3}"#),
            event(&format!(r#"{{"n":{}}}"#, "9".repeat(309))),
            event(&format!("{}{}", "[".repeat(126), "]".repeat(126))),
            event("{\"n\":\"a\u{1}\"}"),
            event("{} x"),
            event("{,}"),
            event("{\"n\":01}"),
            "[]".to_string(),
        ] {
            assert_eq!(scan(&text), None, "{text}");
            let (fast, full) = both(text.as_bytes());
            assert_eq!(fast, full, "{text}");
        }
        let deep_enough = event(&format!("{}{}", "[".repeat(125), "]".repeat(125)));
        assert!(scan(&deep_enough).is_some());
    }

    #[test]
    fn a_repeated_member_counts_with_its_last_value() {
        let text =
            r#"{"id":"a","id":"b","type":"t","data":{"object":{"id":"x"}},"data":{"object":[]}}"#;
        let found = scan(text).unwrap();
        assert_eq!(found.id, Some("\"b\""));
        assert_eq!(found.object, None);
        let again =
            r#"{"id":"a","type":"t","data":{"object":{"id":"x"},"object":{"external_id":7}}}"#;
        let object = scan(again).unwrap().object.unwrap();
        assert_eq!((object.id, object.external_id), (None, Some("7")));
        for text in [text, again] {
            let (fast, full) = both(text.as_bytes());
            assert_eq!(fast, full);
        }
    }

    #[test]
    fn a_string_stops_at_its_first_quote_backslash_or_control_character() {
        for text in ["", "abc", "abcdefgh", "abcdefghijk"] {
            assert_eq!(string_stop(text.as_bytes()), None, "{text:?}");
        }
        for stop in 0..20 {
            for byte in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                let mut text = vec![b'a'; 24];
                text[stop] = byte;
                text[stop + 3] = b'"';
                assert_eq!(string_stop(&text), Some(stop), "{stop} {byte}");
            }
        }
        // Bytes of UTF-8 text beyond ASCII, and 0x20 and above, never stop it.
        assert_eq!(string_stop("éàü ~\x7f\"".as_bytes()), Some(9));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Edits of a real event (bytes replaced, inserted, removed): the scan and the full
        /// parse give the same event or the same error.
        #[test]
        fn an_edited_event_is_read_as_the_full_parse_reads_it(
            pretty in any::<bool>(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                    b"{}[]:,\"\\ \n0123456789.-+eEtrufalsn\x01\xc3\xa9u".to_vec())),
                1..4,
            ),
        ) {
            let mut text = if pretty { FIXTURE.as_bytes().to_vec() } else { compact_fixture().into_bytes() };
            for (at, kind, byte) in edits {
                let at = at.index(text.len());
                match kind {
                    0 => text[at] = byte,
                    1 => text.insert(at, byte),
                    _ => { text.remove(at); }
                }
            }
            let (fast, full) = both(&text);
            prop_assert_eq!(fast, full);
        }
    }
}
