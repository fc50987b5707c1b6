//! Time as the broker writes it: whole Unix seconds in writs and records, Unix milliseconds in
//! audit events, RFC 3339 on the wire. None of these panics, whatever the time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole seconds since the Unix epoch (0 before it).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whole seconds since the Unix epoch, as stored (0 before it).
pub fn unix_seconds(time: SystemTime) -> i64 {
    i64::try_from(unix(time)).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch, the time of an audit event (0 before it).
pub fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
    })
}

/// The instant `unix_seconds` after the epoch (the epoch for a negative one, the latest
/// representable instant for one too large).
pub fn from_unix_seconds(unix_seconds: i64) -> SystemTime {
    let seconds = u64::try_from(unix_seconds).unwrap_or_default();
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(UNIX_EPOCH)
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: i64 = 253_402_300_799;

/// An RFC 3339 time in whole seconds, as every time in the writ format is written (times past
/// year 9999 are written as its last second).
/// Parses an instant written in RFC 3339 (`2026-11-30T09:00:00Z`), as people give one to
/// `writ policy` and the explain route; the error says what was expected.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(SystemTime::from)
        .map_err(|e| format!("{text:?} is not an RFC 3339 instant: {e}"))
}

pub fn rfc3339(unix_seconds: i64) -> String {
    let seconds = unix_seconds.min(LAST_RFC3339_SECOND);
    humantime::format_rfc3339_seconds(from_unix_seconds(seconds)).to_string()
}

/// Serde: an optional count of whole seconds, written as any JSON number whose value is a
/// non-negative integer (`300`, and also `300.0` or `3e2`, which JSON Schema counts as the
/// same integer); a fraction, a negative number or anything else is refused.
pub mod whole_seconds {
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if let Some(whole) = number.as_u64() {
            return Ok(Some(whole));
        }
        // Integral floats up to 2^53, where every integer is exact.
        match number.as_f64() {
            Some(value)
                if value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_992.0 =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(value as u64))
            }
            _ => Err(D::Error::custom(format!(
                "expected a whole number of seconds, not {number}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Ttl {
        #[serde(default, with = "whole_seconds")]
        ttl: Option<u64>,
    }

    #[test]
    fn whole_seconds_are_integers_however_written() {
        let ttl = |text: &str| serde_json::from_str::<Ttl>(text).map(|t| t.ttl);
        assert_eq!(ttl(r#"{"ttl": 300}"#).ok(), Some(Some(300)));
        assert_eq!(ttl(r#"{"ttl": 300.0}"#).ok(), Some(Some(300)));
        assert_eq!(ttl(r#"{"ttl": 3e2}"#).ok(), Some(Some(300)));
        assert_eq!(ttl(r#"{"ttl": null}"#).ok(), Some(None));
        assert_eq!(ttl(r#"{}"#).ok(), Some(None));
        for refused in [
            r#"{"ttl": 1.5}"#,
            r#"{"ttl": -1}"#,
            r#"{"ttl": "300"}"#,
            r#"{"ttl": 1e300}"#,
        ] {
            assert!(ttl(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn extreme_times_do_not_panic() {
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(unix(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1500)), 1500);
    }
}
