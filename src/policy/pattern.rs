//! Resource patterns are the verifier SDK's [`ResourcePattern`] (exact `orders/42`, or prefix
//! `reports/2026/*`), so the broker and every verifier parse one syntax with one parser. What
//! policy adds is coverage: whether a granted pattern names everything a requested one does.

pub use writ_verify::ResourcePattern;

/// Whether everything `requested` names is also named by `granted`.
pub fn covers(granted: &ResourcePattern, requested: &ResourcePattern) -> bool {
    match (requested.exact(), requested.prefix()) {
        (Some(resource), _) => granted.matches(resource),
        (None, Some(prefix)) => granted.prefix().is_some_and(|p| prefix.starts_with(p)),
        (None, None) => false,
    }
}

/// Whether some resource is named by both `a` and `b`: what a deny rule on `a` must refuse of a
/// request for `b` (a request for `prod/*` touches a deny on `prod/db/*`, and the other way round).
pub fn overlaps(a: &ResourcePattern, b: &ResourcePattern) -> bool {
    match (a.prefix(), b.prefix()) {
        (Some(x), Some(y)) => x.starts_with(y) || y.starts_with(x),
        (Some(_), None) => b.exact().is_some_and(|r| a.matches(r)),
        (None, _) => a.exact().is_some_and(|r| b.matches(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ResourcePattern {
        ResourcePattern::parse(text).unwrap()
    }

    #[test]
    fn coverage() {
        assert!(covers(&p("orders/*"), &p("orders/42")));
        assert!(covers(&p("orders/*"), &p("orders/2026/*")));
        assert!(covers(&p("*"), &p("orders/*")));
        assert!(!covers(&p("orders/2026/*"), &p("orders/*")));
        assert!(!covers(&p("orders/42"), &p("orders/*")));
        assert!(!covers(&p("orders/4"), &p("orders/42")));
        assert!(!covers(&p("orders/4*"), &p("orders/*")));
        assert!(covers(&p("orders/42"), &p("orders/42")));
    }

    #[test]
    fn overlap_is_symmetric_and_covers_both_directions() {
        for (a, b, expected) in [
            ("prod/*", "prod/db/*", true),
            ("prod/*", "prod/db/1", true),
            ("prod/1", "prod/1", true),
            ("prod/1", "prod/2", false),
            ("prod/*", "staging/*", false),
            ("prod/*", "production/*", false),
            ("*", "anything", true),
        ] {
            assert_eq!(overlaps(&p(a), &p(b)), expected, "{a} {b}");
            assert_eq!(overlaps(&p(b), &p(a)), expected, "{b} {a}");
        }
    }

    #[test]
    fn hostile_text_is_just_a_resource() {
        // Quotes and spaces must be percent-encoded in a canonical resource; what is left of
        // Datalog syntax is still only text.
        let hostile = r#"x%22),right(%22orders/1%22,%22admin%22)"#;
        assert_eq!(p(hostile).exact(), Some(hostile));
        assert!(ResourcePattern::parse(r#"x"), right("orders/1", "admin") //"#).is_err());
        assert!(ResourcePattern::parse("orders/1\nright").is_err());
    }
}
