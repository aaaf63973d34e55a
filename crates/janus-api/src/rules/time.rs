//! Time as the Kubernetes API writes it (RFC 3339 strings, `metav1.Time`) converted to and from chrono.

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 timestamp (any offset) as UTC; `None` for anything else.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Formats a time as Kubernetes does: RFC 3339 in seconds with `Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Formats a time with milliseconds, for fields where order within a second matters (decisions).
pub fn fmt_time_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A duration as people read it: `3600` → `1h`, `5400` → `1h 30m`, `45` → `45s` (negative as `0s`).
/// The pages and the notifications say durations the same way.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    let mut parts = Vec::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if sec > 0 || parts.is_empty() {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

/// Converts the API's timestamps (`jiff`, inside `metav1.Time`) to chrono; out-of-range values become the epoch.
pub fn from_jiff(t: &k8s_openapi::jiff::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).unwrap_or(0)).unwrap_or_default()
}

/// Converts a `metav1.Time`.
pub fn from_k8s(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> DateTime<Utc> {
    from_jiff(&t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        let cases = [
            (0, "0s"),
            (-5, "0s"),
            (45, "45s"),
            (3600, "1h"),
            (5400, "1h 30m"),
            (90061, "1d 1h 1m 1s"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let t = parse_time("2026-01-02T03:04:05+02:00").unwrap();
        assert_eq!(fmt_time(t), "2026-01-02T01:04:05Z");
        assert_eq!(fmt_time_millis(t), "2026-01-02T01:04:05.000Z");
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
    }

    #[test]
    fn converts_api_timestamps() {
        let j: k8s_openapi::jiff::Timestamp = "2026-01-02T03:04:05.5Z".parse().unwrap();
        let t = from_jiff(&j);
        assert_eq!(t.timestamp(), parse_time("2026-01-02T03:04:05Z").unwrap().timestamp());
        assert_eq!(t.timestamp_subsec_millis(), 500);
        let k = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(j);
        assert_eq!(from_k8s(&k), t);
    }
}
