//! The double's logical clock: `write_date`, `date_done` and invoice dates come from it.
//!
//! By default it follows real time but never goes backwards. A test can freeze it at an
//! instant and advance it by hand, so pollers ordering by `write_date, id` see ties and
//! steps exactly where the test puts them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(crate) struct Clock {
    /// Frozen at these seconds since the epoch, or following real time.
    frozen: Option<i64>,
    /// Added to real time (only while following it).
    offset: i64,
    /// Never answer less than this.
    last: i64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { frozen: None, offset: 0, last: 0 }
    }

    pub(crate) fn now(&mut self) -> i64 {
        let t = match self.frozen {
            Some(t) => t,
            None => real_secs() + self.offset,
        };
        self.last = self.last.max(t);
        self.last
    }

    pub(crate) fn freeze(&mut self, secs: i64) {
        self.frozen = Some(secs.max(self.last));
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        let by = by.as_secs() as i64;
        match &mut self.frozen {
            Some(t) => *t += by,
            None => self.offset += by,
        }
    }
}

fn real_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `"YYYY-MM-DD HH:MM:SS"` (UTC), as Odoo writes datetimes.
pub(crate) fn format_datetime(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Parse `"YYYY-MM-DD HH:MM:SS"` or `"YYYY-MM-DD"` (UTC).
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| text.get(r).and_then(|s| s.parse::<i64>().ok());
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = if text.len() >= 19 { num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)? } else { 0 };
    Some(days * 86_400 + secs)
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_odoo_datetimes() {
        let t = parse_datetime("2026-03-01 12:34:56").unwrap();
        assert_eq!(format_datetime(t), "2026-03-01 12:34:56");
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(&format_datetime(parse_datetime("2024-02-29").unwrap())[..10], "2024-02-29");
    }

    #[test]
    fn never_goes_backwards() {
        let mut c = Clock::new();
        c.freeze(1_000);
        assert_eq!(c.now(), 1_000);
        c.advance(Duration::from_secs(5));
        assert_eq!(c.now(), 1_005);
        c.freeze(10);
        assert_eq!(c.now(), 1_005);
    }
}
