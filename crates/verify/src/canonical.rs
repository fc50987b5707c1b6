//! The canonical resource form of the writ contract.
//!
//! Resources are matched as text: a prefix grant `orders/*` is `$r.starts_with("orders/")`. A
//! service, a proxy or a file system may later *resolve* a resource (remove dot segments, merge
//! empty segments, percent-decode, read `\` as `/`, cut path parameters), and a resource that
//! resolves to something else could then match a prefix textually and land outside it:
//! `orders/../admin`, `orders/%2E%2E/admin`, `orders/..%2Fadmin`, `orders\..\admin`,
//! `orders/..;/admin`. So resources must be **canonical**: written in the one form that every
//! such resolution leaves where it is. The broker refuses anything else in requests and policies,
//! and a verifier refuses it before looking at any grant.
//!
//! A canonical resource is 1 to [`MAX_RESOURCE_LEN`] bytes of ASCII, in segments separated by
//! `/`, where:
//!
//! 1. **No segment is empty**: no leading, trailing or doubled `/`.
//! 2. **No dot segments**: no segment is `.` or `..`, and neither is the part of a segment
//!    before its first `;`, `?` or `#` (raw or percent-encoded), since some servers cut path
//!    parameters (`..;x`) or re-split a decoded path; that part may not be empty either.
//! 3. **Only URL path characters, written raw**: letters, digits, `-` `.` `_` `~` and
//!    `!` `$` `&` `'` `(` `)` `+` `,` `;` `=` `:` `@`. Everything else (spaces, `"`, `*`, `?`,
//!    `#`, `\`, non-ASCII text...) is percent-encoded, and control characters are never allowed.
//! 4. **Percent-encoding is exact**: `%` is always followed by two *uppercase* hex digits; it
//!    never encodes a character that is written raw (letters, digits, `-` `.` `_` `~`, so
//!    `%2E` is refused), nor `/`, `\`, `%` (no double encoding) or a control character; encoded
//!    bytes above 0x7F must be UTF-8 (no overlong forms) of letters or digits, never of
//!    invisible, format, space or punctuation characters (`%E2%80%8B` zero-width space,
//!    `%EF%BC%8E` fullwidth full stop, `%E2%88%95` division slash are refused).
//!
//! What this guarantees: decoding, dot-segment removal, `\`-as-separator, path-parameter
//! stripping or compatibility normalisation of a canonical resource never adds, removes or
//! moves a `/` boundary, and never turns a segment into `.` or `..`: a canonical resource that
//! starts with a grant's prefix still lies under it after any of these resolutions. A URL path
//! as `http` hands it over (`parts.uri.path()`, percent-encoded) is canonical, once its leading
//! `/` is removed, exactly when it needs no resolution.
//!
//! The check is [`check_canonical_resource`]; [`ResourcePattern`](crate::ResourcePattern)
//! applies it to patterns.

use std::fmt;

use crate::resource_pattern::MAX_RESOURCE_LEN;

/// Why a resource is not canonical. Each has a stable [`code`](ResourceError::code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceError {
    /// The resource is empty.
    Empty,
    /// The resource is longer than [`MAX_RESOURCE_LEN`] bytes.
    TooLong,
    /// A control character (newline, NUL, ...), raw.
    ControlCharacter,
    /// A character that must be percent-encoded appears raw (space, `"`, `*`, `?`, `#`, `\`,
    /// non-ASCII text, ...).
    UnencodedCharacter,
    /// An empty segment: a leading, trailing or doubled `/`, or a segment that starts with
    /// `;`, `?` or `#`.
    EmptySegment,
    /// A `.` or `..` segment (also `..;x`).
    DotSegment,
    /// A `%` not followed by two uppercase hex digits.
    MalformedEncoding,
    /// A percent-encoded character that is written raw in canonical form (`%2E`, `%41`).
    NeedlessEncoding,
    /// A percent-encoded `/`, `\`, `%` or control character.
    EncodedDelimiter,
    /// Encoded bytes that are not UTF-8, or encode a character that is not a letter or digit
    /// (invisible, format, space and punctuation characters beyond ASCII).
    EncodedCharacter,
}

impl ResourceError {
    /// A stable snake_case code, e.g. `"dot_segment"`.
    pub fn code(&self) -> &'static str {
        match self {
            ResourceError::Empty => "empty",
            ResourceError::TooLong => "too_long",
            ResourceError::ControlCharacter => "control_character",
            ResourceError::UnencodedCharacter => "unencoded_character",
            ResourceError::EmptySegment => "empty_segment",
            ResourceError::DotSegment => "dot_segment",
            ResourceError::MalformedEncoding => "malformed_encoding",
            ResourceError::NeedlessEncoding => "needless_encoding",
            ResourceError::EncodedDelimiter => "encoded_delimiter",
            ResourceError::EncodedCharacter => "encoded_character",
        }
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceError::Empty => "the resource is empty",
            ResourceError::TooLong => {
                return write!(f, "the resource is longer than {MAX_RESOURCE_LEN} bytes");
            }
            ResourceError::ControlCharacter => "the resource contains a control character",
            ResourceError::UnencodedCharacter => {
                "the resource contains a character that must be percent-encoded"
            }
            ResourceError::EmptySegment => {
                "the resource has an empty segment (a leading, trailing or doubled '/')"
            }
            ResourceError::DotSegment => "the resource has a '.' or '..' segment",
            ResourceError::MalformedEncoding => {
                "a '%' in the resource is not followed by two uppercase hex digits"
            }
            ResourceError::NeedlessEncoding => {
                "the resource percent-encodes a character that is written as itself"
            }
            ResourceError::EncodedDelimiter => {
                "the resource percent-encodes '/', '\\', '%' or a control character"
            }
            ResourceError::EncodedCharacter => {
                "the resource percent-encodes bytes that are not UTF-8 letters or digits"
            }
        })
    }
}

impl std::error::Error for ResourceError {}

/// Checks that `resource` is in the canonical form of the writ contract (see the
/// [module docs](self)): what the broker grants, what verifiers accept, and what a gateway
/// must turn a request path into (or refuse) before asking a verifier.
///
/// ```
/// use writ_verify::{ResourceError, check_canonical_resource};
///
/// assert_eq!(check_canonical_resource("orders/42"), Ok(()));
/// assert_eq!(check_canonical_resource("reports/caf%C3%A9%20menu"), Ok(()));
/// assert_eq!(check_canonical_resource("orders/../admin"), Err(ResourceError::DotSegment));
/// assert_eq!(check_canonical_resource("orders/%2E%2E/admin"), Err(ResourceError::NeedlessEncoding));
/// assert_eq!(check_canonical_resource("orders/..%2Fadmin"), Err(ResourceError::EncodedDelimiter));
/// assert_eq!(check_canonical_resource("orders//42"), Err(ResourceError::EmptySegment));
/// assert_eq!(check_canonical_resource("orders\\42"), Err(ResourceError::UnencodedCharacter));
/// ```
pub fn check_canonical_resource(resource: &str) -> Result<(), ResourceError> {
    if resource.is_empty() {
        return Err(ResourceError::Empty);
    }
    if resource.len() > MAX_RESOURCE_LEN {
        return Err(ResourceError::TooLong);
    }
    if resource.chars().any(char::is_control) {
        return Err(ResourceError::ControlCharacter);
    }
    resource.split('/').try_for_each(check_segment)
}

/// Checks a prefix (the text of a prefix pattern before its `*`): empty (everything), or a
/// canonical resource, or one followed by `/`.
pub(crate) fn check_canonical_prefix(prefix: &str) -> Result<(), ResourceError> {
    if prefix.is_empty() {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some("") => Err(ResourceError::EmptySegment),
        Some(resource) => check_canonical_resource(resource),
        None => check_canonical_resource(prefix),
    }
}

fn check_segment(segment: &str) -> Result<(), ResourceError> {
    if segment.is_empty() {
        return Err(ResourceError::EmptySegment);
    }
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let value = match (bytes.get(index + 1), bytes.get(index + 2)) {
                (Some(&high), Some(&low)) => hex_pair(high, low),
                _ => None,
            }
            .ok_or(ResourceError::MalformedEncoding)?;
            if is_unreserved(value) {
                return Err(ResourceError::NeedlessEncoding);
            }
            if matches!(value, b'/' | b'\\' | b'%') || value.is_ascii_control() {
                return Err(ResourceError::EncodedDelimiter);
            }
            decoded.push(value);
            index += 3;
        } else {
            if !is_raw(byte) {
                return Err(ResourceError::UnencodedCharacter);
            }
            decoded.push(byte);
            index += 1;
        }
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| ResourceError::EncodedCharacter)?;
    if !text.chars().all(|c| c.is_ascii() || is_encodable_text(c)) {
        return Err(ResourceError::EncodedCharacter);
    }
    // The name of the segment: what a server that cuts path parameters, or re-splits a decoded
    // path at `?` or `#`, would see. `split` always yields a first part.
    let name = text.split([';', '?', '#']).next().unwrap_or_default();
    match name {
        "" => Err(ResourceError::EmptySegment),
        "." | ".." => Err(ResourceError::DotSegment),
        _ => Ok(()),
    }
}

/// RFC 3986 unreserved characters: written raw, never encoded.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters written raw in a canonical resource: unreserved, and the path's sub-delimiters,
/// `:` and `@`, except `*` (the pattern wildcard).
fn is_raw(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'+' | b',' | b';' | b'=' | b':' | b'@'
        )
}

/// Uppercase hex only: `%2f` and `%2F` would otherwise be two spellings of one resource.
fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    Some(digit(high)? << 4 | digit(low)?)
}

/// Non-ASCII characters a canonical resource may carry (percent-encoded): letters and digits,
/// except the invisible Hangul fillers and the number forms whose compatibility decomposition
/// holds a dot or a fraction slash (`⒈` is `1.`, `½` is `1⁄2`). Everything else beyond ASCII
/// (spaces, format and invisible characters, punctuation such as fullwidth `．` `／` `＼`,
/// symbols such as `∕`) is refused: normalisers and legacy code pages turn some of them into
/// `.`, `/` or `\`.
fn is_encodable_text(c: char) -> bool {
    c.is_alphanumeric()
        && !matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
                | '\u{00BC}'..='\u{00BE}' | '\u{2150}'..='\u{215F}' | '\u{2189}' // fractions
                | '\u{2488}'..='\u{249B}' // digit full stops
                | '\u{1F100}'..='\u{1F10A}' // digit full stops and commas
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_encoded_resources() {
        for ok in [
            "orders",
            "orders/42",
            "reports/2026/q3.pdf",
            ".well-known",
            "a/.hidden/..x/...",
            "a/b;v=1",
            "a/x..;y",
            "users/alice@example.com",
            "a/%20b%22c%2A%3F%23",
            "docs/caf%C3%A9",
            "docs/%E6%97%A5%E6%9C%AC",
            "x~y_z-1!$&'()+,=:@",
        ] {
            assert_eq!(check_canonical_resource(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_each_non_canonical_form() {
        use ResourceError::*;
        for (bad, why) in [
            ("", Empty),
            ("a\nb", ControlCharacter),
            ("a\u{85}b", ControlCharacter),
            ("a b", UnencodedCharacter),
            ("a\\b", UnencodedCharacter),
            ("a?b", UnencodedCharacter),
            ("a#b", UnencodedCharacter),
            ("a*", UnencodedCharacter),
            ("caf\u{e9}", UnencodedCharacter),
            ("a\u{200B}b", UnencodedCharacter),
            ("/a", EmptySegment),
            ("a/", EmptySegment),
            ("a//b", EmptySegment),
            ("a/;x", EmptySegment),
            ("a/%3Fx", EmptySegment),
            (".", DotSegment),
            ("a/./b", DotSegment),
            ("a/..", DotSegment),
            ("a/..;/b", DotSegment),
            ("a/.;x", DotSegment),
            ("a/..%3B/b", DotSegment),
            ("a/..%23", DotSegment),
            ("a/%", MalformedEncoding),
            ("a/%2", MalformedEncoding),
            ("a/%2g", MalformedEncoding),
            ("a/%c3%a9", MalformedEncoding),
            ("a/%2E%2E/b", NeedlessEncoding),
            ("a/%2e", MalformedEncoding),
            ("a/%41", NeedlessEncoding),
            ("a/..%2Fb", EncodedDelimiter),
            ("a/..%5Cb", EncodedDelimiter),
            ("a/%252E%252E", EncodedDelimiter),
            ("a/%00", EncodedDelimiter),
            ("a/%7F", EncodedDelimiter),
            ("a/%C0%AF", EncodedCharacter),
            ("a/%C3", EncodedCharacter),
            ("a/%FF", EncodedCharacter),
            ("a/%E2%80%8B", EncodedCharacter),
            ("a/%E2%80%AE", EncodedCharacter),
            ("a/%EF%BC%8E%EF%BC%8E", EncodedCharacter),
            ("a/%EF%BC%8F", EncodedCharacter),
            ("a/%E2%88%95", EncodedCharacter),
            ("a/%E3%85%A4", EncodedCharacter),
            ("a/%C2%A0", EncodedCharacter),
            ("a/%C2%BD", EncodedCharacter),
        ] {
            assert_eq!(check_canonical_resource(bad), Err(why), "{bad:?}");
        }
        let long = "a".repeat(MAX_RESOURCE_LEN + 1);
        assert_eq!(check_canonical_resource(&long), Err(TooLong));
    }

    #[test]
    fn prefixes_are_canonical_resources_or_end_in_a_slash() {
        for ok in ["", "orders/", "orders", "reports/2026-", "a/b;"] {
            assert_eq!(check_canonical_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["/", "orders//", "/orders/", "a/../", "a/.", "a/%2", "a/..;"] {
            assert!(check_canonical_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn codes_are_distinct() {
        use ResourceError::*;
        let all = [
            Empty,
            TooLong,
            ControlCharacter,
            UnencodedCharacter,
            EmptySegment,
            DotSegment,
            MalformedEncoding,
            NeedlessEncoding,
            EncodedDelimiter,
            EncodedCharacter,
        ];
        let mut codes: Vec<_> = all.iter().map(ResourceError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
