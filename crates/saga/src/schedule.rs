//! Cron schedules in a time zone: when scheduled windows fire.
//!
//! Five fields (`minute hour day-of-month month day-of-week`, as crontab(5)) or six with
//! seconds first. Each field is `*`, a value, a range `a-b`, a step `*/n` or `a-b/n`, or a
//! comma-separated list of those; months and weekdays also take English names (`JAN`,
//! `MON`), and Sunday is 0 or 7. As in cron, when both day fields are restricted a day
//! matching either one fires. Times are civil times in the schedule's zone (IANA name,
//! e.g. `Europe/Berlin`): `0 30 2 * * *` fires at 02:30 local on every day it exists
//! (skipped times in a spring-forward gap fire at the first instant after the gap, a
//! repeated hour fires once).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    day_restricted: bool,
    weekday_restricted: bool,
    zone: TimeZone,
    zone_name: String,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str], name_base: u32) -> Result<u64, String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(name_base + i as u32);
        }
        let n: u32 = v.parse().map_err(|_| format!("{what} {v:?} is not a number"))?;
        if n < lo || n > hi {
            return Err(format!("{what} {n} is outside {lo}-{hi}"));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 =
                    s.parse().ok().filter(|s| *s > 0).ok_or(format!("{what} step {s:?} must be a positive number"))?;
                (r, s)
            }
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                // `a/n` runs from a to the end, as in Vixie cron.
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("{what} range {range:?} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// Parses `text` in the zone `zone` (IANA name; empty is UTC).
    pub fn parse(text: &str, zone: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let six = match fields.len() {
            5 => false,
            6 => true,
            n => {
                return Err(format!(
                    "schedule {text:?} has {n} fields; write 5 (minute hour day-of-month month day-of-week) or 6 (seconds first), e.g. \"0 2 * * *\""
                ));
            }
        };
        let f = |i: usize| fields[if six { i } else { i - 1 }];
        let bad = |e: String| format!("schedule {text:?}: {e}");
        let seconds = if six { field(f(0), "second", 0, 59, &[], 0).map_err(bad)? } else { 1 };
        let minutes = field(f(1), "minute", 0, 59, &[], 0).map_err(bad)?;
        let hours = field(f(2), "hour", 0, 23, &[], 0).map_err(bad)?;
        let days = field(f(3), "day of month", 1, 31, &[], 0).map_err(bad)?;
        let months = field(f(4), "month", 1, 12, &MONTHS, 1).map_err(bad)?;
        let mut weekdays = field(f(5), "day of week", 0, 7, &DAYS, 0).map_err(bad)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let zone_name = if zone.trim().is_empty() { "UTC".to_string() } else { zone.trim().to_string() };
        let tz = TimeZone::get(&zone_name).map_err(|e| {
            format!("time zone {zone_name:?} is not known ({e}); use an IANA name such as Europe/Berlin or UTC")
        })?;
        Ok(Schedule {
            text: text.to_string(),
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_restricted: f(3) != "*",
            weekday_restricted: f(5) != "*",
            zone: tz,
            zone_name,
        })
    }

    /// The schedule as written, with its zone.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.text, self.zone_name)
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = self.days & (1 << dt.day()) != 0;
        let dow = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        match (self.day_restricted, self.weekday_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first firing strictly after `after`, or `None` if there is none within five
    /// years (`30 2 31 2 *` never fires).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.zone.clone()).datetime();
        let limit = start.checked_add(5.years()).ok()?;
        // Start at the next whole second.
        let mut dt = start.with().subsec_nanosecond(0).build().ok()?.checked_add(1.second()).ok()?;
        while dt < limit {
            if self.months & (1 << dt.month()) == 0 {
                dt =
                    dt.first_of_month().checked_add(1.month()).ok()?.with().hour(0).minute(0).second(0).build().ok()?;
                continue;
            }
            if !self.day_matches(dt) {
                dt = dt.date().checked_add(1.day()).ok()?.to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt.with().minute(0).second(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.with().second(0).build().ok()?.checked_add(1.minute()).ok()?;
                continue;
            }
            if self.seconds & (1 << dt.second()) == 0 {
                dt = dt.checked_add(1.second()).ok()?;
                continue;
            }
            let at = self.zone.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            dt = dt.checked_add(1.second()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn fires_in_its_zone_and_across_a_daylight_saving_change() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // 01:00 UTC on 1 Dec is 02:00 in Berlin (CET, +1): fires at 02:30 local = 01:30Z.
        assert_eq!(s.next_after(ts("2026-12-01T01:00:00Z")), Some(ts("2026-12-01T01:30:00Z")));
        // 29 March 2026: 02:00-03:00 does not exist in Berlin; the window fires at the
        // first instant after the gap (03:30 CEST = 01:30Z).
        assert_eq!(s.next_after(ts("2026-03-29T00:00:00Z")), Some(ts("2026-03-29T01:30:00Z")));
        let every = Schedule::parse("*/15 * * * * *", "").unwrap();
        assert_eq!(every.next_after(ts("2026-12-01T09:00:07Z")), Some(ts("2026-12-01T09:00:15Z")));
        let weekdays = Schedule::parse("0 18 * * MON-FRI", "UTC").unwrap();
        // 5 Dec 2026 is a Saturday: next is Monday the 7th.
        assert_eq!(weekdays.next_after(ts("2026-12-04T18:00:00Z")), Some(ts("2026-12-07T18:00:00Z")));
        let month_end = Schedule::parse("0 0 28-31 * 0", "UTC").unwrap();
        // Either day field: 6 Dec 2026 is a Sunday.
        assert_eq!(month_end.next_after(ts("2026-12-01T00:00:00Z")), Some(ts("2026-12-06T00:00:00Z")));
        assert_eq!(Schedule::parse("0 0 31 2 *", "UTC").unwrap().next_after(ts("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let e = |t: &str, z: &str| Schedule::parse(t, z).unwrap_err();
        assert!(e("* * *", "UTC").contains("3 fields"), "{}", e("* * *", "UTC"));
        assert!(e("61 * * * *", "UTC").contains("minute 61 is outside 0-59"));
        assert!(e("0 5-2 * * *", "UTC").contains("runs backwards"));
        assert!(e("*/0 * * * *", "UTC").contains("positive"));
        assert!(e("0 0 * * *", "Mars/Olympus").contains("IANA name"));
    }
}
