//! Identifiers the broker makes: a prefix saying what the id names, then 128 random bits in hex,
//! so ids cannot be guessed or collide and a log line tells an agent writ from an admin writ.

/// An agent writ.
pub const WRIT: &str = "wr_";
/// An admin writ.
pub const ADMIN_WRIT: &str = "ad_";
/// An exchange of a writ for a native credential.
pub const EXCHANGE: &str = "ex_";
/// A revocation entry.
pub const REVOCATION: &str = "rv_";

/// The system's random source failed: nothing that needs a fresh id can be made.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomSourceFailed;

/// A fresh id with `prefix`.
pub fn new_id(prefix: &str) -> Result<String, RandomSourceFailed> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|_| RandomSourceFailed)?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// Whether `text` is an id with `prefix` as [`new_id`] makes them.
pub fn is_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id(WRIT).unwrap();
        let b = new_id(WRIT).unwrap();
        assert!(is_id(&a, WRIT), "{a}");
        assert!(!is_id(&a, ADMIN_WRIT));
        assert_ne!(a, b);
        assert!(!is_id("wr_0123456789ABCDEF0123456789abcdef", WRIT));
    }
}
