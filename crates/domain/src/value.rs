//! Value types shared by events, commands and journal records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A point in time, in microseconds since the Unix epoch (Avro `timestamp-micros`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Microseconds per second.
    pub const MICROS_PER_SEC: i64 = 1_000_000;

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(d.as_micros() as i64)
    }

    /// This time plus `secs` seconds.
    pub fn plus_secs(self, secs: f64) -> Self {
        Timestamp(self.0 + (secs * Self::MICROS_PER_SEC as f64) as i64)
    }

    /// Microseconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn micros_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// The UTC calendar date and time of this instant (whole seconds).
    pub fn civil(self) -> Civil {
        let secs = self.0.div_euclid(Self::MICROS_PER_SEC);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil { year, month, day, hour: rem / 3600, minute: rem % 3600 / 60, second: rem % 60 }
    }

    /// The instant of a UTC calendar date and time.
    pub fn from_civil(c: Civil) -> Timestamp {
        // Howard Hinnant's days_from_civil.
        let y = if c.month <= 2 { c.year - 1 } else { c.year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = if c.month > 2 { c.month - 3 } else { c.month + 9 };
        let doy = (153 * mp + 2) / 5 + c.day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Timestamp((days * 86_400 + c.hour * 3600 + c.minute * 60 + c.second) * Self::MICROS_PER_SEC)
    }
}

/// A UTC calendar date and time, to the second: the one conversion every formatter of
/// times (timelines, exception messages, Odoo datetimes, the workbench) goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1–12.
    pub month: i64,
    /// Day of the month, 1–31.
    pub day: i64,
    /// Hour, 0–23.
    pub hour: i64,
    /// Minute, 0–59.
    pub minute: i64,
    /// Second, 0–59.
    pub second: i64,
}

impl std::fmt::Display for Civil {
    /// RFC 3339 in UTC: `2026-12-01T06:30:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self;
        write!(f, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
    }
}

/// A quantity in thousandths of the line's unit of measure (3 decimals, as Odoo's
/// default "Product Unit of Measure" precision). `Qty(2500)` is 2.5 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Qty(pub i64);

impl Qty {
    /// Zero.
    pub const ZERO: Qty = Qty(0);

    /// Whole units.
    pub const fn units(n: i64) -> Qty {
        Qty(n * 1000)
    }

    /// True when zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self - other`, never below zero.
    pub fn saturating_sub(self, other: Qty) -> Qty {
        Qty((self.0 - other.0).max(0))
    }

    /// The smaller of two quantities.
    pub fn min(self, other: Qty) -> Qty {
        Qty(self.0.min(other.0))
    }
}

impl std::ops::Add for Qty {
    type Output = Qty;
    fn add(self, rhs: Qty) -> Qty {
        Qty(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Qty {
    fn add_assign(&mut self, rhs: Qty) {
        self.0 += rhs.0;
    }
}

impl std::ops::Sub for Qty {
    type Output = Qty;
    fn sub(self, rhs: Qty) -> Qty {
        Qty(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Qty {
    fn sum<I: Iterator<Item = Qty>>(iter: I) -> Qty {
        Qty(iter.map(|q| q.0).sum())
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        if a.is_multiple_of(1000) {
            write!(f, "{sign}{}", a / 1000)
        } else {
            let s = format!("{sign}{}.{:03}", a / 1000, a % 1000);
            f.write_str(s.trim_end_matches('0'))
        }
    }
}

/// An amount of money in minor units (cents) of the document's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Money {
    /// `unit price × quantity`, rounded half away from zero to the minor unit.
    pub fn times(self, qty: Qty) -> Money {
        let p = self.0 as i128 * qty.0 as i128;
        let r = if p >= 0 { (p + 500) / 1000 } else { (p - 500) / 1000 };
        Money(r as i64)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", a / 100, a % 100)
    }
}

/// The systems Waybill talks to. Serialized as an Avro enum; new symbols may only be
/// appended (the schema's `default` makes old readers map unknown ones to `OTHER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum System {
    /// Odoo, the ERP.
    Odoo,
    /// The warehouse management system.
    Wms,
    /// A carrier (parcel or freight).
    Carrier,
    /// The finance / accounting platform.
    Finance,
    /// A bank (statements, payments).
    Bank,
    /// A sales channel (web shop, marketplace, EDI partner).
    Channel,
    /// A person or service acting through the control plane.
    Operator,
    /// Waybill itself (timers, derived events).
    Waybill,
    /// A system unknown to this reader.
    Other,
}

impl System {
    /// All systems with their lowercase names, in declaration order.
    pub const ALL: [System; 9] = [
        System::Odoo,
        System::Wms,
        System::Carrier,
        System::Finance,
        System::Bank,
        System::Channel,
        System::Operator,
        System::Waybill,
        System::Other,
    ];

    /// The lowercase name used in topic names and source references.
    pub const fn as_str(self) -> &'static str {
        match self {
            System::Odoo => "odoo",
            System::Wms => "wms",
            System::Carrier => "carrier",
            System::Finance => "finance",
            System::Bank => "bank",
            System::Channel => "channel",
            System::Operator => "operator",
            System::Waybill => "waybill",
            System::Other => "other",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for System {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        System::ALL
            .into_iter()
            .find(|sys| sys.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| crate::Error::UnknownSystem(s.to_string()))
    }
}

/// Where a record came from: the originating system and that system's own id for it
/// (an Odoo record name such as `SO0042`, a WMS shipment id, an invoice number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    /// The originating system.
    pub system: System,
    /// The system's own identifier.
    pub id: String,
}

impl SourceRef {
    /// A reference to `id` in `system`.
    pub fn new(system: System, id: impl Into<String>) -> Self {
        SourceRef { system, id: id.into() }
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.system, self.id)
    }
}

impl FromStr for SourceRef {
    type Err = crate::Error;
    /// Parses `system:id`, e.g. `odoo:SO0042`.
    fn from_str(s: &str) -> crate::Result<Self> {
        let (sys, id) = s.split_once(':').ok_or(crate::Error::Empty { field: "source ref system" })?;
        if id.is_empty() {
            return Err(crate::Error::Empty { field: "source ref id" });
        }
        Ok(SourceRef::new(sys.parse()?, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_times_round_trip_across_leap_days_and_eras() {
        for (t, c) in [
            (0, Civil { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 }),
            (951_782_400, Civil { year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0 }),
            (1_764_597_780, Civil { year: 2025, month: 12, day: 1, hour: 14, minute: 3, second: 0 }),
            (-1, Civil { year: 1969, month: 12, day: 31, hour: 23, minute: 59, second: 59 }),
        ] {
            let ts = Timestamp(t * Timestamp::MICROS_PER_SEC);
            assert_eq!(ts.civil(), c);
            assert_eq!(Timestamp::from_civil(c), ts);
        }
    }

    #[test]
    fn qty_displays_like_a_person_writes_it() {
        assert_eq!(Qty(2500).to_string(), "2.5");
        assert_eq!(Qty::units(3).to_string(), "3");
        assert_eq!(Qty(-1250).to_string(), "-1.25");
    }

    #[test]
    fn money_times_qty_rounds_half_away_from_zero() {
        assert_eq!(Money(1999).times(Qty::units(3)), Money(5997));
        assert_eq!(Money(1).times(Qty(500)), Money(1)); // 0.5 cent rounds up
        assert_eq!(Money(-1).times(Qty(500)), Money(-1));
        assert_eq!(Money(12345).to_string(), "123.45");
    }

    #[test]
    fn source_ref_round_trips_through_text() {
        let r: SourceRef = "odoo:SO0042".parse().unwrap();
        assert_eq!(r, SourceRef::new(System::Odoo, "SO0042"));
        assert_eq!(r.to_string(), "odoo:SO0042");
        assert!("nope:1".parse::<SourceRef>().is_err());
        assert!("odoo:".parse::<SourceRef>().is_err());
    }
}
