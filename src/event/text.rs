//! The event's text as bytes: what a `Value` parse refused that serde_json's raw pass accepts,
//! and taking out insignificant whitespace. Both run on text serde_json has found valid.

/// Deepest nesting a `serde_json::Value` parse accepts (its recursion limit is 128).
const MAX_DEPTH: u32 = 127;

/// What parsing into `serde_json::Value`s refused and its raw pass accepts (`text` is known to
/// be valid JSON): a lone UTF-16 surrogate in a `\u` escape, a number too large for an `f64`,
/// nesting deeper than [`MAX_DEPTH`]. Returns whether `text` is compact (no whitespace outside
/// strings).
pub(super) fn check(text: &[u8]) -> Result<bool, &'static str> {
    let mut compact = true;
    let mut depth = 0u32;
    let mut i = 0;
    while let Some(&byte) = text.get(i) {
        match byte {
            b'"' => i = string_end(text, i + 1)?,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err("nested too deeply (recursion limit exceeded)");
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b' ' | b'\n' | b'\r' | b'\t' => {
                compact = false;
                i += 1;
            }
            b'-' | b'0'..=b'9' => i = number_end(text, i)?,
            _ => i += 1,
        }
    }
    Ok(compact)
}

/// Where the string whose content starts at `i` ends (after its closing quote).
fn string_end(text: &[u8], mut i: usize) -> Result<usize, &'static str> {
    loop {
        let Some(at) = text
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        else {
            return Ok(text.len());
        };
        i += at;
        if text[i] == b'"' {
            return Ok(i + 1);
        }
        if text.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let unit = hex4(text, i + 2).ok_or("invalid escape")?;
        i += 6;
        if (0xDC00..=0xDFFF).contains(&unit) {
            return Err("lone trailing surrogate in hex escape");
        }
        if (0xD800..=0xDBFF).contains(&unit) {
            let low = (text.get(i) == Some(&b'\\') && text.get(i + 1) == Some(&b'u'))
                .then(|| hex4(text, i + 2))
                .flatten();
            if !low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                return Err("lone leading surrogate in hex escape");
            }
            i += 6;
        }
    }
}

fn hex4(text: &[u8], at: usize) -> Option<u16> {
    let digits = std::str::from_utf8(text.get(at..at + 4)?).ok()?;
    u16::from_str_radix(digits, 16).ok()
}

/// Where the number starting at `i` ends; too large for an `f64` is an error.
fn number_end(text: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut i = start;
    let mut exponent = false;
    while let Some(&byte) = text.get(i) {
        match byte {
            b'e' | b'E' => exponent = true,
            b'0'..=b'9' | b'-' | b'+' | b'.' => {}
            _ => break,
        }
        i += 1;
    }
    // Only an exponent or more than 308 digits can overflow an f64.
    if exponent || i - start > 308 {
        let finite = std::str::from_utf8(&text[start..i])
            .ok()
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(f64::is_finite);
        if !finite {
            return Err("number out of range");
        }
    }
    Ok(i)
}

/// `text` (valid JSON) without the whitespace between its tokens.
pub(super) fn without_whitespace(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
    out
}
