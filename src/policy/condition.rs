//! Conditions a policy attaches to its grant, beyond who and what:
//! - a **time window** (`[policy.when]`: days, hours, a time zone): outside it the policy grants
//!   nothing, and a writ it grants does not outlive it;
//! - **lifetime caps per operation** (`ttl_caps = { delete = "2m" }`): a request naming the
//!   operation lives at most that long;
//! - **human approval** (`[policy.approval]`, in [`super::approval`]).
//!
//! These cover the cases policy authors bring (business hours, change freezes, short-lived
//! destructive rights, four eyes). A general expression language (CEL, Rego) was considered and
//! left out: no case needed one, and each condition here is a value that `writ policy explain` can
//! name in one line and a test can pin.

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

/// `[policy.when]` / `[deny.when]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    #[serde(default)]
    days: Option<Vec<String>>,
    #[serde(default)]
    hours: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

/// A recurring window of local time: the moment's weekday is one of `days`, and its time of day
/// lies in `hours` (which may wrap past midnight: `22:00-06:00`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Bit `n` set: weekday `n` (Monday = 0) is in the window.
    days: u8,
    hours: Option<(NaiveTime, NaiveTime)>,
    zone: Tz,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ALL_DAYS: u8 = 0b111_1111;

impl RawWindow {
    pub fn compile(&self) -> Result<TimeWindow, String> {
        let days = match &self.days {
            None => ALL_DAYS,
            Some(names) if names.is_empty() => return Err("days: the list is empty".into()),
            Some(names) => names.iter().try_fold(0u8, |days, name| {
                let index = DAY_NAMES.iter().position(|d| d == name).ok_or_else(|| {
                    format!("days: {name:?} is not one of {}", DAY_NAMES.join(", "))
                })?;
                Ok::<u8, String>(days | 1 << index)
            })?,
        };
        let hours = self.hours.as_deref().map(parse_hours).transpose()?;
        let zone = match self.time_zone.as_deref() {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("time_zone: {name:?} is not an IANA time zone name"))?,
        };
        if days == ALL_DAYS && hours.is_none() {
            return Err("a window names days or hours (or both)".into());
        }
        Ok(TimeWindow { days, hours, zone })
    }
}

fn parse_hours(text: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let invalid = || format!("hours: {text:?} is not HH:MM-HH:MM (24-hour clock, 00:00 to 23:59)");
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| invalid());
    let (start, end) = (time(start)?, time(end)?);
    if start == end {
        return Err(format!(
            "hours: {text:?} is empty; leave hours out for the whole day"
        ));
    }
    Ok((start, end))
}

impl TimeWindow {
    pub fn contains(&self, at: SystemTime) -> bool {
        let local = DateTime::<Utc>::from(at).with_timezone(&self.zone);
        let day = local.weekday().num_days_from_monday();
        if self.days & (1 << day) == 0 {
            return false;
        }
        match self.hours {
            None => true,
            Some((start, end)) => {
                let time = local.time();
                if start < end {
                    start <= time && time < end
                } else {
                    time >= start || time < end
                }
            }
        }
    }

    /// How long from `at` (inside the window) until the window is left, if that is within
    /// `horizon`: the longest lifetime a writ granted at `at` may have.
    pub fn remaining(&self, at: SystemTime, horizon: Duration) -> Option<Duration> {
        self.first_change(at, horizon, false)
    }

    /// How long from `at` (outside the window) until the window opens, if that is within
    /// `horizon`: a writ a deny rule with this window would refuse must not live into it.
    pub fn until_open(&self, at: SystemTime, horizon: Duration) -> Option<Duration> {
        self.first_change(at, horizon, true)
    }

    /// The first instant after `at`, within `horizon`, at which the window's holding is
    /// `holds`. Whether it holds changes only at local midnights (the weekday changes) and at
    /// the start and end of `hours`, so the first such boundary where it does is the answer.
    fn first_change(&self, at: SystemTime, horizon: Duration, holds: bool) -> Option<Duration> {
        let start = DateTime::<Utc>::from(at);
        // At the end of the calendar (an instant an operator typed), nothing changes any more.
        let until = chrono::Duration::from_std(horizon)
            .ok()
            .and_then(|horizon| start.checked_add_signed(horizon))?;
        let first_day = start.with_timezone(&self.zone).date_naive();
        let mut boundaries: Vec<DateTime<Utc>> = (0..=horizon.as_secs() / 86_400 + 1)
            .filter_map(|offset| first_day.checked_add_days(chrono::Days::new(offset)))
            .flat_map(|day| self.boundaries_on(day))
            .filter(|b| *b > start && *b <= until)
            .collect();
        boundaries.sort_unstable();
        boundaries
            .into_iter()
            .find(|b| self.contains(SystemTime::from(*b)) == holds)
            .and_then(|b| (b - start).to_std().ok())
    }

    fn boundaries_on(&self, day: NaiveDate) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut times = vec![NaiveTime::MIN];
        if let Some((start, end)) = self.hours {
            times.extend([start, end]);
        }
        times
            .into_iter()
            .filter_map(move |time| self.instant_of(day.and_time(time)))
    }

    /// The instant a local time names. A local time skipped by a clock change (a DST gap, or a
    /// midnight that some zones skip) stands for the first instant after the gap: the boundary
    /// is crossed then, and must not be lost, or a writ would outlive its window.
    fn instant_of(&self, local: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
        // Clock changes skip at most a few hours; look for the first valid minute after.
        (0..=24 * 60).find_map(|minute| {
            let shifted = local.checked_add_signed(chrono::Duration::minutes(minute))?;
            self.zone
                .from_local_datetime(&shifted)
                .earliest()
                .map(|at| at.with_timezone(&Utc))
        })
    }
}

/// `mon-fri 09:00-18:00 Europe/Berlin`, for refusals and explanations.
impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.days != ALL_DAYS {
            let days: Vec<&str> = (0..7)
                .filter(|d| self.days & (1 << d) != 0)
                .map(|d| DAY_NAMES[d])
                .collect();
            parts.push(days.join(","));
        }
        if let Some((start, end)) = self.hours {
            parts.push(format!("{}-{}", start.format("%H:%M"), end.format("%H:%M")));
        }
        parts.push(self.zone.name().to_owned());
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn window(days: Option<&[&str]>, hours: Option<&str>, zone: Option<&str>) -> TimeWindow {
        RawWindow {
            days: days.map(|d| d.iter().map(|s| s.to_string()).collect()),
            hours: hours.map(str::to_owned),
            time_zone: zone.map(str::to_owned),
        }
        .compile()
        .unwrap()
    }

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri"];

    #[test]
    fn business_hours_in_a_named_zone() {
        let w = window(Some(WEEKDAYS), Some("09:00-18:00"), Some("Europe/Berlin"));
        // 2026-11-30 is a Monday; Berlin is UTC+1 in winter.
        assert!(w.contains(at("2026-11-30T08:00:00Z")));
        assert!(!w.contains(at("2026-11-30T07:59:59Z")));
        assert!(!w.contains(at("2026-11-30T17:00:00Z")));
        assert!(!w.contains(at("2026-11-29T10:00:00Z")), "a Sunday");
        assert_eq!(
            w.to_string(),
            "mon,tue,wed,thu,fri 09:00-18:00 Europe/Berlin"
        );
    }

    #[test]
    fn overnight_hours_wrap() {
        let w = window(None, Some("22:00-06:00"), None);
        assert!(w.contains(at("2026-11-30T23:00:00Z")));
        assert!(w.contains(at("2026-12-01T05:59:00Z")));
        assert!(!w.contains(at("2026-12-01T06:00:00Z")));
        assert_eq!(
            w.remaining(at("2026-11-30T23:00:00Z"), Duration::from_secs(86_400)),
            Some(Duration::from_secs(7 * 3600))
        );
    }

    #[test]
    fn remaining_stops_at_the_window_end_or_the_day_change() {
        let w = window(Some(WEEKDAYS), Some("09:00-18:00"), None);
        let hour = Duration::from_secs(3600);
        assert_eq!(
            w.remaining(at("2026-11-30T17:50:00Z"), hour),
            Some(Duration::from_secs(600))
        );
        assert_eq!(w.remaining(at("2026-11-30T10:00:00Z"), hour), None);
        let friday = window(Some(&["fri"]), None, None);
        assert_eq!(
            friday.remaining(at("2026-12-04T23:30:00Z"), hour),
            Some(Duration::from_secs(1800))
        );
        let weekend = window(Some(&["sat", "sun"]), None, None);
        assert_eq!(
            weekend.remaining(at("2026-12-05T12:00:00Z"), Duration::from_secs(3 * 86_400)),
            Some(Duration::from_secs(36 * 3600))
        );
    }

    #[test]
    fn until_open_finds_the_next_opening() {
        let w = window(Some(WEEKDAYS), Some("09:00-18:00"), None);
        let day = Duration::from_secs(86_400);
        // Monday 08:30 UTC: opens in 30 minutes.
        assert_eq!(
            w.until_open(at("2026-11-30T08:30:00Z"), day),
            Some(Duration::from_secs(1800))
        );
        // Saturday noon: not within a day.
        assert_eq!(w.until_open(at("2026-12-05T12:00:00Z"), day), None);
        let freeze = window(Some(&["sat", "sun"]), None, None);
        assert_eq!(
            freeze.until_open(at("2026-12-04T23:50:00Z"), Duration::from_secs(3600)),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn the_ends_of_the_calendar_do_not_panic() {
        let w = window(Some(WEEKDAYS), Some("09:00-18:00"), Some("Europe/Berlin"));
        let day = Duration::from_secs(86_400);
        for instant in [
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let at = at(instant);
            let _ = w.contains(at);
            let _ = w.remaining(at, day);
            let _ = w.until_open(at, day);
        }
    }

    #[test]
    fn boundaries_in_a_dst_gap_are_not_lost() {
        // Berlin skips 02:00-03:00 on 2026-03-29: a window ending at 02:30 ends at the jump.
        let w = window(None, Some("22:00-02:30"), Some("Europe/Berlin"));
        let start = at("2026-03-29T00:00:00Z"); // 01:00 in Berlin
        let left = w.remaining(start, Duration::from_secs(12 * 3600)).unwrap();
        assert_eq!(
            left,
            Duration::from_secs(3600),
            "closes at 03:00 local, 01:00Z"
        );
        // Santiago skips midnight on 2026-09-06 (00:00 -> 01:00): Saturday still ends.
        let saturday = window(Some(&["sat"]), None, Some("America/Santiago"));
        let late = at("2026-09-06T03:00:00Z"); // Saturday 23:00 local
        assert_eq!(
            saturday.remaining(late, Duration::from_secs(12 * 3600)),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn malformed_windows_are_refused() {
        let compile = |days: Option<Vec<&str>>, hours: Option<&str>, zone: Option<&str>| {
            RawWindow {
                days: days.map(|d| d.into_iter().map(str::to_owned).collect()),
                hours: hours.map(str::to_owned),
                time_zone: zone.map(str::to_owned),
            }
            .compile()
        };
        assert!(compile(Some(vec!["monday"]), None, None).is_err());
        assert!(compile(Some(vec![]), None, None).is_err());
        assert!(compile(None, Some("9-18"), None).is_err());
        assert!(compile(None, Some("09:00-24:00"), None).is_err());
        assert!(compile(None, Some("09:00-09:00"), None).is_err());
        assert!(compile(None, Some("09:00-18:00"), Some("Mars/Base")).is_err());
        assert!(compile(None, None, Some("UTC")).is_err());
    }
}
