//! Names AWS shows in CloudTrail and matches in policies: the role session name (from the
//! task), the source identity (from the agent) and the session tag values (`writ-id`,
//! `writ-task`, `writ-agent`).
//!
//! Task and agent names are attacker input and AWS accepts a narrow alphabet, so each value is
//! made to fit: a disallowed character becomes `_`, a value too long is cut, and whenever
//! anything was altered a 64-bit hash of the original is appended (`-h` + 16 hex digits), so two
//! different inputs do not share a name. An input that already fits is kept as it is, unless it
//! ends the way an altered name ends; then it is hashed too, so an agent cannot pick a task name
//! equal to another task's altered name.

use sha2::{Digest, Sha256};
use unicode_general_category::{GeneralCategory, get_general_category};

/// Role session names and source identities: 2 to 64 characters.
pub const SESSION_NAME_MAX: usize = 64;
/// Session tag values: at most 256 characters.
pub const TAG_VALUE_MAX: usize = 256;
const MIN_LEN: usize = 2;
/// `-h` and 16 lowercase hex digits.
const HASH_SUFFIX_LEN: usize = 18;

/// The role session name for a task: `[\w+=,.@-]{2,64}`.
pub fn role_session_name(task: &str) -> String {
    fit(task, SESSION_NAME_MAX, session_char)
}

/// The source identity for an agent: `[\w+=,.@-]{2,64}`.
pub fn source_identity(agent: &str) -> String {
    fit(agent, SESSION_NAME_MAX, session_char)
}

/// A session tag value: `[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}` (at least 2 characters here, so
/// an empty value is never sent), never starting with `aws:`.
pub fn tag_value(value: &str) -> String {
    fit(value, TAG_VALUE_MAX, tag_char)
}

/// `[\w+=,.@-]`, with `\w` read as ASCII letters, digits and `_`.
fn session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-')
}

/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
fn tag_char(c: char) -> bool {
    use GeneralCategory as G;
    matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::SpaceSeparator
                | G::LineSeparator
                | G::ParagraphSeparator
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
        )
}

fn fit(input: &str, max: usize, allowed: fn(char) -> bool) -> String {
    let count = input.chars().count();
    let fits = (MIN_LEN..=max).contains(&count)
        && input.chars().all(allowed)
        && !looks_altered(input)
        && !input
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("aws:"));
    if fits {
        return input.to_owned();
    }
    let mut name: String = input
        .chars()
        .take(max - HASH_SUFFIX_LEN)
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if name
        .get(..4)
        .is_some_and(|s| s.eq_ignore_ascii_case("aws:"))
    {
        name.replace_range(3..4, "_");
    }
    let digest = Sha256::digest(input.as_bytes());
    name.push_str("-h");
    name.push_str(&hex::encode(&digest[..8]));
    name
}

/// Whether `name` ends like an altered name: `-h` and 16 lowercase hex digits.
fn looks_altered(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() >= HASH_SUFFIX_LEN && {
        let tail = &bytes[bytes.len() - HASH_SUFFIX_LEN..];
        tail.starts_with(b"-h")
            && tail[2..]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn valid_session(name: &str) -> bool {
        (2..=64).contains(&name.chars().count()) && name.chars().all(session_char)
    }

    fn valid_tag(value: &str) -> bool {
        (2..=256).contains(&value.chars().count())
            && value.chars().all(tag_char)
            && !value.to_ascii_lowercase().starts_with("aws:")
    }

    #[test]
    fn names_that_fit_are_kept() {
        assert_eq!(role_session_name("nightly-report"), "nightly-report");
        assert_eq!(source_identity("ci@example.com"), "ci@example.com");
        assert_eq!(tag_value("wr_01HXYZ"), "wr_01HXYZ");
        assert_eq!(
            tag_value("spiffe://prod/ns/agent"),
            "spiffe://prod/ns/agent"
        );
        assert_eq!(tag_value("Bericht für März"), "Bericht für März");
    }

    #[test]
    fn hostile_inputs_are_made_to_fit_and_marked() {
        let long = "x".repeat(10 * 1024);
        for hostile in [
            "",
            "a",
            "task with spaces",
            "line\nbreak",
            "tab\there",
            "nul\0byte",
            "ünïcødé",
            "🦀🦀🦀",
            "right(\"*\", \"admin\")",
            "${aws:username}",
            "aws:reserved",
            "AWS:reserved",
            long.as_str(),
        ] {
            let name = role_session_name(hostile);
            assert!(valid_session(&name), "{hostile:?} -> {name:?}");
            assert_ne!(name, hostile);
            assert!(looks_altered(&name), "{name}");
            let identity = source_identity(hostile);
            assert!(valid_session(&identity), "{hostile:?} -> {identity:?}");
            let tag = tag_value(hostile);
            assert!(valid_tag(&tag), "{hostile:?} -> {tag:?}");
        }
        assert!(!tag_value("x\ny").contains('\n'));
        assert!(valid_tag(&tag_value("aws:reserved")));
        assert_eq!(tag_value(&"x".repeat(10 * 1024)).chars().count(), 256);
    }

    #[test]
    fn altered_names_differ_for_different_inputs() {
        assert_ne!(role_session_name("a b"), role_session_name("a\tb"));
        assert_ne!(role_session_name("a b"), role_session_name("a_b"));
        let long_a = format!("{}a", "x".repeat(100));
        let long_b = format!("{}b", "x".repeat(100));
        assert_ne!(role_session_name(&long_a), role_session_name(&long_b));
    }

    #[test]
    fn a_name_cannot_impersonate_an_altered_one() {
        let altered = role_session_name("a b");
        assert_ne!(role_session_name(&altered), altered);
    }

    proptest! {
        #[test]
        fn every_output_is_valid(input in ".{0,300}") {
            prop_assert!(valid_session(&role_session_name(&input)));
            prop_assert!(valid_session(&source_identity(&input)));
            prop_assert!(valid_tag(&tag_value(&input)));
        }

        #[test]
        fn different_inputs_give_different_names(a in ".{0,80}", b in ".{0,80}") {
            prop_assume!(a != b);
            prop_assert_ne!(role_session_name(&a), role_session_name(&b));
            prop_assert_ne!(tag_value(&a), tag_value(&b));
        }
    }
}
