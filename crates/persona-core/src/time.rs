//! Timestamp parsing and formatting as Segment's API accepts and emits them.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

/// Parses an ISO-8601 timestamp as sent by Segment SDKs.
///
/// Accepts RFC 3339 with any offset (`2024-05-01T10:00:00.123Z`, `...+02:00`), ISO-8601
/// offsets without the colon or the minutes (`+0200`, `+02`), times without seconds
/// (`2024-05-01T10:00Z`), and, as Segment does, a date-time without offset or a bare date,
/// both read as UTC. A leap second reads as the next second's start. Anything else is an error
/// whose text can be shown to the client.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    let parsed = parse_any(s).map(without_leap_second).ok_or_else(|| {
        format!("is not an ISO-8601 timestamp (expected e.g. 2024-05-01T10:00:00.000Z), got {s:?}")
    })?;
    // Years outside 1..=9999 are not ISO-8601 without an agreement, and arithmetic on them
    // (such as clock-skew correction) could leave chrono's range.
    if !(1..=9999).contains(&parsed.year()) {
        return Err(format!("has a year outside 1 to 9999, got {s:?}"));
    }
    Ok(parsed)
}

/// A leap second (`23:59:60`) as the next second's start, which is how its Unix time reads:
/// stored as `:60` it would be refused by JavaScript's `Date` and Python's `fromisoformat`.
fn without_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    if nanos < 1_000_000_000 {
        return t;
    }
    DateTime::from_timestamp(t.timestamp() + 1, nanos - 1_000_000_000).unwrap_or(t)
}

fn parse_any(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // ISO-8601 also writes offsets without the colon (`+0000`, PHP's DATE_ISO8601, Java's
    // `Z` pattern) or as hours alone (`+02`); RFC 3339 does not.
    // And its reduced precision: hours and minutes without seconds (`2024-05-01T10:00Z`).
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

/// When a stored event happened, as profiles and the event index count it, in Unix
/// milliseconds: its `timestamp`, or its `receivedAt` when that is earlier. Nothing happens
/// after it was received; a client clock years ahead (with no `sentAt` to correct it by)
/// would otherwise leave a profile's `last_seen` in the future for good.
pub fn event_time_ms(timestamp: &str, received_at: Option<&str>) -> Result<i64, String> {
    let at = parse_timestamp(timestamp)?.timestamp_millis();
    // Both as the collector writes them (`2024-05-01T10:00:00.000Z`): their text sorts as
    // their time, so the usual case, an event before its receipt, needs no second parse.
    let canonical = |t: &str| t.len() == 24 && t.ends_with('Z');
    if let Some(r) = received_at
        && canonical(timestamp)
        && canonical(r)
        && timestamp <= r
    {
        return Ok(at);
    }
    let received = received_at
        .and_then(|r| parse_timestamp(r).ok())
        .map(|r| r.timestamp_millis());
    Ok(received.map_or(at, |r| at.min(r)))
}

/// Formats a timestamp the way persona stores and returns them: RFC 3339, UTC, milliseconds.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_forms_sdks_send() {
        let want = parse_timestamp("2024-05-01T10:00:00Z").unwrap();
        for s in [
            "2024-05-01T10:00:00.000Z",
            "2024-05-01T12:00:00+02:00",
            "2024-05-01T10:00:00",
            "2024-05-01 10:00:00",
            "2024-05-01T10:00:00.000+0000",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T08:00:00.5-0200",
            "2024-05-01T12:00:00+02",
            "2024-05-01 12:00:00+02:00",
            "2024-05-01T10:00Z",
            "2024-05-01T12:00+02:00",
            "2024-05-01 10:00",
        ] {
            let got = parse_timestamp(s).unwrap();
            let got = got - chrono::Duration::milliseconds(got.timestamp_subsec_millis().into());
            assert_eq!(got, want, "{s}");
        }
        assert!(parse_timestamp("2024-05-01").is_ok());
    }

    #[test]
    fn an_event_counts_no_later_than_its_receipt() {
        let ms = |t: &str| parse_timestamp(t).unwrap().timestamp_millis();
        let received = "2026-12-06T10:00:00.000Z";
        for (sent, want) in [
            ("2026-12-06T09:59:59.999Z", "2026-12-06T09:59:59.999Z"),
            ("2026-12-06T10:00:00.001Z", received),
            ("9999-12-31T23:59:59.999Z", received),
            // Not as the collector writes it: compared by time, not text.
            ("2026-12-06T11:00:00+02:00", "2026-12-06T09:00:00.000Z"),
            ("2026-12-06T11:00:00+00:00", received),
        ] {
            assert_eq!(event_time_ms(sent, Some(received)), Ok(ms(want)), "{sent}");
        }
        assert_eq!(event_time_ms(received, None), Ok(ms(received)));
    }

    #[test]
    fn a_leap_second_is_the_next_second() {
        let t = parse_timestamp("2016-12-31T23:59:60.250Z").unwrap();
        assert_eq!(format_timestamp(t), "2017-01-01T00:00:00.250Z");
        // The last second of 9999 would be the first of 10000: out of range.
        assert!(parse_timestamp("9999-12-31T23:59:60Z").is_err());
    }

    #[test]
    fn rejects_garbage_with_the_value_in_the_reason() {
        let e = parse_timestamp("yesterday").unwrap_err();
        assert!(e.contains("yesterday"), "{e}");
        assert!(parse_timestamp("2024-13-01T00:00:00Z").is_err());
        assert!(parse_timestamp("2024-05-01T10:00:00+2").is_err());
        assert!(parse_timestamp("2024-05-01T10:00:00+0200 extra").is_err());
        let e = parse_timestamp("-200000-01-01T00:00:00").unwrap_err();
        assert!(e.contains("year"), "{e}");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0i64..4_102_444_800_000) {
            let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            prop_assert_eq!(parse_timestamp(&format_timestamp(t)).unwrap(), t);
        }
    }
}
