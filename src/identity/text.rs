//! Names that people read: agent identities (and subjects) appear in logs, audit records, admin
//! commands and, later, the approval page. Two names that look the same must be the same name,
//! or a second agent could pass for a suspended one. So a name is refused, not repaired, when it
//! holds a character that is invisible or changes how the text around it is shown:
//!
//! - control characters (Cc): they forge log lines;
//! - format characters (Cf): bidi overrides and isolates (U+202A–U+202E, U+2066–U+2069),
//!   zero-width space, joiners and marks (U+200B–U+200F), word joiner, BOM, soft hyphen, tags…;
//! - the other default-ignorable code points, which fonts draw as nothing: variation selectors,
//!   the combining grapheme joiner, Hangul fillers, Mongolian free variation selectors;
//! - every separator but the ASCII space (no-break and typographic spaces, line and paragraph
//!   separators), the blank Braille pattern, and a space at either end or next to another space
//!   (HTML shows runs of spaces as one);
//! - private-use and unassigned code points (nothing to show, or shown differently tomorrow);
//!
//! and it must be in Unicode Normalization Form C, so that one visible name has one encoding
//! (`é` precomposed or `e` + combining acute would otherwise be two agents). A name that is not NFC
//! is refused rather than normalised: the agent identity stays byte for byte what the issuer
//! asserted (and what policies matched), and no two issuer-side identities are merged silently.
//! Workload identity issuers emit ASCII in practice (DNS labels, SPIFFE IDs, repository names).
//!
//! Not covered: characters of different scripts that look alike (Cyrillic `а` and Latin `a`).

use unicode_general_category::{GeneralCategory, get_general_category};

/// Why `value` cannot serve as a name people read, if it cannot.
pub fn display_name_problem(value: &str) -> Option<&'static str> {
    let mut previous = None;
    for c in value.chars() {
        if let Some(why) = char_problem(c) {
            return Some(why);
        }
        if c == ' ' && (previous.is_none() || previous == Some(' ')) {
            return Some("a space at the start or next to another space");
        }
        previous = Some(c);
    }
    if previous == Some(' ') {
        return Some("a space at the end");
    }
    if !unicode_normalization::is_nfc(value) {
        return Some("not in Unicode normalization form C (NFC)");
    }
    None
}

/// Why `value` cannot serve as free text people read (a justification, a reason), if it cannot:
/// the characters [`display_name_problem`] refuses, except runs of spaces and, when `multiline`,
/// newlines. Shown with its spaces preserved, so nothing in it is invisible or reordered.
pub fn free_text_problem(value: &str, multiline: bool) -> Option<&'static str> {
    for c in value.chars() {
        if c == '\n' && multiline {
            continue;
        }
        if let Some(why) = char_problem(c) {
            return Some(why);
        }
    }
    if !unicode_normalization::is_nfc(value) {
        return Some("not in Unicode normalization form C (NFC)");
    }
    None
}

fn char_problem(c: char) -> Option<&'static str> {
    use GeneralCategory as G;
    match get_general_category(c) {
        G::Control => Some("a control character"),
        G::Format => Some("an invisible format character (bidi control, zero-width character)"),
        G::SpaceSeparator if c != ' ' => Some("a space other than U+0020"),
        G::LineSeparator | G::ParagraphSeparator => Some("a line or paragraph separator"),
        G::PrivateUse | G::Surrogate | G::Unassigned => {
            Some("a private-use or unassigned code point")
        }
        _ if is_default_ignorable(c) || c == '\u{2800}' => Some("an invisible character"),
        _ => None,
    }
}

/// Default_Ignorable_Code_Point (Unicode DerivedCoreProperties); the format characters among them
/// are refused as such already, the rest are listed here.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for name in [
            "k8s:orders/report-bot",
            "github:acme/orders@Deploy to prod",
            "spiffe://acme.org/ns/orders/sa/bot",
            "dev:zoë",
            "dev:東京",
        ] {
            assert_eq!(display_name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn invisible_and_ambiguous_names_are_refused() {
        for name in [
            "k8s:orders/bot\u{202E}",          // right-to-left override
            "k8s:orders/\u{2066}bot\u{2069}",  // isolate
            "k8s:orders/b\u{200B}ot",          // zero-width space
            "k8s:orders/b\u{200D}ot",          // zero-width joiner
            "k8s:orders/bot\u{FEFF}",          // byte order mark
            "k8s:orders/b\u{00AD}ot",          // soft hyphen
            "k8s:orders/bot\u{E0041}",         // tag character
            "k8s:orders/bot\u{FE0F}",          // variation selector
            "k8s:orders/b\u{034F}ot",          // combining grapheme joiner
            "k8s:orders/bot\u{3164}",          // Hangul filler
            "k8s:orders/bot\u{2800}",          // blank Braille pattern
            "k8s:orders/bot\u{00A0}x",         // no-break space
            "k8s:orders/bot\u{2028}x",         // line separator
            "k8s:orders/bot\u{E000}",          // private use
            "k8s:orders/bot\u{0378}",          // unassigned
            "k8s:orders/bot\n",                // control
            "k8s:orders/bot ",                 // trailing space
            " k8s:orders/bot",                 // leading space
            "github:acme/orders@Deploy  prod", // two spaces
            "dev:zoe\u{0308}",                 // decomposed: not NFC
        ] {
            assert!(display_name_problem(name).is_some(), "{name:?}");
        }
    }
}
