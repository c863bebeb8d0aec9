//! HL7 v2 dates and times (`DT`, `DTM`/`TS`): `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`.
//!
//! A time without an offset is read as UTC: HL7 leaves it to the sender's local time, which
//! careflow cannot know, and the contract's times are UTC (docs/interop.md says so to the
//! sending systems' integrators).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// A `DT` or the date of a `DTM` (`19800131`, `198001311200`).
pub fn date(text: &str) -> Option<NaiveDate> {
    let digits = text.get(..8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// A `DTM` to the minute at least (a bare date reads as its midnight).
pub fn date_time(text: &str) -> Option<DateTime<Utc>> {
    let (local, offset) = match text.find(['+', '-']) {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    let (whole, fraction) = match local.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (local, None),
    };
    if !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day = date(whole)?;
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        match whole.get(range) {
            Some(digits) if !digits.is_empty() => digits.parse().ok(),
            _ => Some(0),
        }
    };
    if !matches!(whole.len(), 8 | 10 | 12 | 14) {
        return None;
    }
    let nanos = match fraction {
        Some(f) if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let value: u32 = f.parse().ok()?;
            value * 10u32.pow(9 - u32::try_from(f.len()).ok()?)
        }
        Some(_) => return None,
        None => 0,
    };
    let time =
        NaiveTime::from_hms_nano_opt(number(8..10)?, number(10..12)?, number(12..14)?, nanos)?;
    let naive = NaiveDateTime::new(day, time);
    match offset {
        None => Some(Utc.from_utc_datetime(&naive)),
        Some(zone) => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits = &zone[1..];
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let hours: i32 = digits[..2].parse().ok()?;
            let minutes: i32 = digits[2..].parse().ok()?;
            let offset = FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))?;
            offset
                .from_local_datetime(&naive)
                .single()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_with_and_without_offsets() {
        assert_eq!(date("19800131"), NaiveDate::from_ymd_opt(1980, 1, 31));
        assert_eq!(date("198001311230"), NaiveDate::from_ymd_opt(1980, 1, 31));
        assert_eq!(date("1980013"), None);
        assert_eq!(date("19801331"), None);
        let t = |s: &str| date_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("20240105").as_deref(), Some("2024-01-05T00:00:00+00:00"));
        assert_eq!(
            t("202401050830").as_deref(),
            Some("2024-01-05T08:30:00+00:00")
        );
        assert_eq!(
            t("20240105083015.25-0500").as_deref(),
            Some("2024-01-05T13:30:15.250+00:00")
        );
        assert_eq!(
            t("20240105083015+0100").as_deref(),
            Some("2024-01-05T07:30:15+00:00")
        );
        assert_eq!(
            t("2024010508"),
            Some("2024-01-05T08:00:00+00:00".to_owned())
        );
        assert_eq!(t("202401050"), None, "odd length");
        assert_eq!(t("20240105083015+01"), None, "short offset");
        assert_eq!(t("yesterday"), None);
    }
}
