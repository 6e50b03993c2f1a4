//! A job's schedule: a five-field cron expression, read in UTC.

use std::fmt;

use chrono::{DateTime, Utc};

/// A checked cron expression (`minute hour day-of-month month day-of-week`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(String);

impl Schedule {
    /// Reads the setting `field`: a cron expression, or `off` (or nothing) for a job that
    /// runs only on request. An error names the field and the reason.
    pub fn parse(field: &str, text: &str) -> Result<Option<Schedule>, String> {
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let fields = text.split(' ').count();
        if fields != 5 {
            return Err(format!(
                "{field} must be a cron expression of 5 fields (minute hour day-of-month month day-of-week, in UTC, e.g. \"15 * * * *\") or \"off\", not {text:?} ({fields} fields)"
            ));
        }
        cron_parser::parse(&text, &Utc::now())
            .map_err(|e| format!("{field} is not a valid cron expression ({e}): {text:?}"))?;
        Ok(Some(Schedule(text)))
    }

    /// The first time the expression names after `t`, if any (`0 0 30 2 *` names none).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron_parser::parse(&self.0, &t).ok()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expressions_are_checked_and_name_the_setting() {
        assert_eq!(Schedule::parse("jobs.x", "off").unwrap(), None);
        assert_eq!(Schedule::parse("jobs.x", "  ").unwrap(), None);
        let hourly = Schedule::parse("jobs.x", "15  * * * *").unwrap().unwrap();
        assert_eq!(hourly.to_string(), "15 * * * *");
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 14, 20, 0).unwrap();
        assert_eq!(
            hourly.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 12, 7, 15, 15, 0).unwrap())
        );
        for bad in ["* * * *", "61 * * * *", "every hour"] {
            let err = Schedule::parse("jobs.compact_lake", bad).unwrap_err();
            assert!(err.contains("jobs.compact_lake"), "{err}");
        }
    }
}
