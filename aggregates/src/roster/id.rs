//! The roster id, `{facility}.{department}.{date}`: the stream id says where and when, so the
//! staffing process manager and the labor analytics read them from it without state.

use chrono::NaiveDate;

/// A parsed roster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterId {
    pub facility: String,
    pub department: String,
    pub date: NaiveDate,
}

/// Why a roster id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterIdError {
    /// Occurs when the id is not three non-empty parts joined by `.`.
    #[error("a roster id is {{facility}}.{{department}}.{{date}}")]
    Shape,
    /// Occurs when the last part is not a calendar date `YYYY-MM-DD`.
    #[error("the roster's date is not a calendar date YYYY-MM-DD")]
    Date,
}

impl RosterIdError {
    /// The rule broken, as a fixed text (an HTTP problem's hint).
    pub fn rule(&self) -> &'static str {
        match self {
            RosterIdError::Shape => "a roster id is {facility}.{department}.{date}",
            RosterIdError::Date => "the roster's date is a calendar date YYYY-MM-DD",
        }
    }
}

impl RosterId {
    /// Parses `MAIN.ED.2026-12-07`.
    ///
    /// # Errors
    /// [`RosterIdError`].
    pub fn parse(id: &str) -> Result<Self, RosterIdError> {
        let mut parts = id.split('.');
        let (Some(facility), Some(department), Some(date), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RosterIdError::Shape);
        };
        if facility.is_empty() || department.is_empty() {
            return Err(RosterIdError::Shape);
        }
        if date.len() != 10 {
            return Err(RosterIdError::Date);
        }
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| RosterIdError::Date)?;
        Ok(Self {
            facility: facility.to_owned(),
            department: department.to_owned(),
            date,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_id_names_facility_department_and_day() {
        let id = RosterId::parse("MAIN.ED.2026-12-07").unwrap();
        assert_eq!(
            (id.facility.as_str(), id.department.as_str()),
            ("MAIN", "ED")
        );
        assert_eq!(id.date, NaiveDate::from_ymd_opt(2026, 12, 7).unwrap());
        for bad in [
            "MAIN.ED",
            "MAIN.ED.X.2026-12-07",
            ".ED.2026-12-07",
            "MAIN..2026-12-07",
        ] {
            assert_eq!(RosterId::parse(bad), Err(RosterIdError::Shape), "{bad}");
        }
        for bad in ["MAIN.ED.2026-02-30", "MAIN.ED.2026-2-3", "MAIN.ED.today"] {
            assert_eq!(RosterId::parse(bad), Err(RosterIdError::Date), "{bad}");
        }
    }
}
