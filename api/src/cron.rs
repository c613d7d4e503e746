//! Cron schedules as CronJobs spell them: five fields (minute, hour, day of month, month, day
//! of week) with `*`, `?`, values, names (`jan`, `mon`), ranges `a-b`, steps `*/n`, `a-b/n` and
//! `a/n`, lists `a,b`, and the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`,
//! `@daily`, `@midnight` and `@hourly`.
//!
//! Semantics follow the standard cron (and the parser upstream uses): when both day of month
//! and day of week are restricted, a day matches if either does. Times are evaluated in a time
//! zone: `spec.timeZone` read from the system's zoneinfo, otherwise the controller's local zone
//! (`/etc/localtime`, UTC when absent).

use k8s_openapi::jiff::civil::Date;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A parsed schedule: one bit set per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month was `*` or `?`: the day matches on the weekday alone.
    days_star: bool,
    /// Day of week was `*` or `?`.
    weekdays_star: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unparseable schedule {schedule:?}: {reason}")]
pub struct ParseError {
    pub schedule: String,
    pub reason: String,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    pub fn parse(schedule: &str) -> Result<Self, ParseError> {
        let err = |reason: String| ParseError {
            schedule: schedule.into(),
            reason,
        };
        let s = schedule.trim();
        let expanded = match s {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(err(format!("unrecognized descriptor {other}")));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!(
                "expected exactly 5 fields, found {}",
                fields.len()
            )));
        }
        let (days, days_star) = field(fields[2], 1, 31, &[]).map_err(err)?;
        let (mut weekdays, weekdays_star) = field(fields[4], 0, 7, WEEKDAYS).map_err(err)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Self {
            minutes: field(fields[0], 0, 59, &[]).map_err(err)?.0,
            hours: field(fields[1], 0, 23, &[]).map_err(err)?.0,
            days,
            months: field(fields[3], 1, 12, MONTHS).map_err(err)?.0,
            weekdays,
            days_star,
            weekdays_star,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time strictly after `after` that the schedule fires, in `tz`; `None` when
    /// nothing matches within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        // The next whole minute.
        let mut t = start
            .date()
            .at(start.hour(), start.minute(), 0, 0)
            .checked_add(SignedDuration::from_secs(60))
            .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if self.months & (1 << t.month()) == 0 {
                t = t
                    .first_of_month()
                    .date()
                    .last_of_month()
                    .tomorrow()
                    .ok()?
                    .at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .date()
                    .at(t.hour(), 0, 0, 0)
                    .checked_add(SignedDuration::from_hours(1))
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(SignedDuration::from_secs(60)).ok()?;
                continue;
            }
            // A civil time a DST gap skips maps forward; one a fold repeats maps to its first
            // instant. Either way never go backwards.
            if let Ok(ts) = tz.to_ambiguous_timestamp(t).compatible()
                && ts > after
            {
                return Some(ts);
            }
            t = t.checked_add(SignedDuration::from_secs(60)).ok()?;
        }
        None
    }

    /// The latest fire time in `(after, until]`, and how many fire times that window holds
    /// (counted up to 100, as upstream stops counting there).
    pub fn last_in(
        &self,
        after: Timestamp,
        until: Timestamp,
        tz: &TimeZone,
    ) -> Option<(Timestamp, u32)> {
        // Search a window ending at `until` that grows until it reaches back to `after`, so a
        // long-missed schedule costs no more than a recent one.
        let mut span = SignedDuration::from_hours(1);
        loop {
            let from = until
                .checked_sub(span)
                .ok()
                .filter(|f| *f > after)
                .unwrap_or(after);
            let mut last = None;
            let mut count = 0u32;
            let mut t = from;
            while let Some(next) = self.next_after(t, tz).filter(|n| *n <= until) {
                last = Some(next);
                count = count.saturating_add(1);
                t = next;
            }
            if let Some(last) = last
                && (from == after || count >= 100)
            {
                return Some((last, count.min(100)));
            }
            if from == after {
                return None;
            }
            span = span.checked_mul(8).unwrap_or(SignedDuration::MAX);
        }
    }
}

/// Parses one field into a bit set, and whether it was `*`/`?`.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = text == "*" || text == "?";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("invalid step {s:?} in {part:?}"))?;
                if step == 0 {
                    return Err(format!("step of zero in {part:?}"));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, min)?, value(b, names, min)?)
        } else {
            let v = value(range, names, min)?;
            // `a/n` means from a to the end.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn value(text: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + offset);
    }
    text.parse().map_err(|_| format!("invalid value {text:?}"))
}

/// The zone to evaluate a CronJob's schedule in.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(std::fs::read("/etc/localtime")
            .ok()
            .and_then(|d| TimeZone::tzif("Local", &d).ok())
            .unwrap_or(TimeZone::UTC)),
        Some("UTC" | "Etc/UTC") => Ok(TimeZone::UTC),
        Some(name) => {
            if name.split('/').any(|p| p.is_empty() || p == "..") {
                return Err(format!("unknown time zone {name}"));
            }
            let data = std::fs::read(format!("/usr/share/zoneinfo/{name}"))
                .map_err(|_| format!("unknown time zone {name}"))?;
            TimeZone::tzif(name, &data).map_err(|e| format!("invalid time zone {name}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule)
            .unwrap()
            .next_after(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:30Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("* * * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T10:16:00Z"),
            "2024-01-01T10:30:00Z"
        );
        assert_eq!(
            next("5-10/5 * * * *", "2024-01-01T10:06:00Z"),
            "2024-01-01T10:10:00Z"
        );
        assert_eq!(
            next("0 9,17 * * *", "2024-01-01T10:00:00Z"),
            "2024-01-01T17:00:00Z"
        );
        assert_eq!(
            next("30 2 * * mon-fri", "2024-01-05T03:00:00Z"),
            "2024-01-08T02:30:00Z"
        ); // Fri → Mon
        assert_eq!(
            next("0 0 * * 7", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        ); // 7 is Sunday
        assert_eq!(
            next("@hourly", "2024-01-01T10:59:59Z"),
            "2024-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-31T10:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-03-01T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 feb *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("10/20 * * * *", "2024-01-01T10:31:00Z"),
            "2024-01-01T10:50:00Z"
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-06T00:00:00Z"),
            "2024-01-12T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-12T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
    }

    #[test]
    fn rejects_bad_schedules() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "@every 5m",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} should not parse");
        }
        assert!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC)
                .is_none()
        );
    }

    #[test]
    fn last_fire_time_in_a_window() {
        let s = Schedule::parse("* * * * *").unwrap();
        let (t, n) = s
            .last_in(
                ts("2024-01-01T10:00:30Z"),
                ts("2024-01-01T10:03:10Z"),
                &TimeZone::UTC,
            )
            .unwrap();
        assert_eq!((t.to_string().as_str(), n), ("2024-01-01T10:03:00Z", 3));
        assert!(
            s.last_in(
                ts("2024-01-01T10:00:30Z"),
                ts("2024-01-01T10:00:59Z"),
                &TimeZone::UTC
            )
            .is_none()
        );
        // A long-missed schedule: the latest time, counted as many.
        let (t, n) = s
            .last_in(
                ts("2023-01-01T00:00:00Z"),
                ts("2024-01-01T10:03:10Z"),
                &TimeZone::UTC,
            )
            .unwrap();
        assert_eq!((t.to_string().as_str(), n), ("2024-01-01T10:03:00Z", 100));
        let daily = Schedule::parse("@daily").unwrap();
        let (t, n) = daily
            .last_in(
                ts("2023-12-01T00:00:00Z"),
                ts("2024-01-01T10:03:10Z"),
                &TimeZone::UTC,
            )
            .unwrap();
        assert_eq!((t.to_string().as_str(), n), ("2024-01-01T00:00:00Z", 31));
    }

    #[test]
    fn time_zones() {
        let Ok(tz) = time_zone(Some("America/New_York")) else {
            return;
        }; // no zoneinfo installed
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 EST is 14:00 UTC.
        assert_eq!(
            s.next_after(ts("2024-01-01T00:00:00Z"), &tz)
                .unwrap()
                .to_string(),
            "2024-01-01T14:00:00Z"
        );
        assert!(time_zone(Some("Mars/Olympus")).is_err());
        assert!(time_zone(Some("../etc/passwd")).is_err());
    }
}
