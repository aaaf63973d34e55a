//! Times in the configured display time zone, always with the zone shown.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Parses an IANA zone name (`Europe/Berlin`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("displayTimezone {name:?} is not an IANA time zone"))
}

/// `2026-11-26 18:04:05 CET`.
pub fn format(tz: Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// Formats an RFC 3339 string; unparsable input is shown as is.
pub fn format_str(tz: Tz, s: &str) -> String {
    match janus_api::rules::time::parse_time(s) {
        Some(t) => format(tz, t),
        None => s.to_string(),
    }
}

/// `1h 30m` style durations ([`janus_api::rules::time::human_duration`]).
pub fn duration(secs: i64) -> String {
    janus_api::rules::time::human_duration(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berlin_shows_its_zone() {
        let tz = parse_zone("Europe/Berlin").unwrap();
        let t = DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format(tz, t), "2026-01-15 13:00:00 CET");
        let t = DateTime::parse_from_rfc3339("2026-07-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format(tz, t), "2026-07-15 14:00:00 CEST");
        assert!(parse_zone("Mars/Olympus").is_err());
        assert_eq!(duration(5400), "1h 30m");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(90061), "1d 1h 1m 1s");
    }
}
