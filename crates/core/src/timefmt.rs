//! RFC 3339 conversions for the API (timestamps are stored as Unix millis).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::Millis;

/// Formats Unix millis as RFC 3339 UTC, e.g. `2026-11-22T18:00:00.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    let nanos = (ms as i128) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t.format(&Rfc3339).unwrap_or_else(|_| ms.to_string()),
        Err(_) => ms.to_string(),
    }
}

/// Parses an RFC 3339 timestamp (any offset) into Unix millis.
pub fn parse_rfc3339(s: &str) -> Result<Millis, String> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp ({e}); use e.g. 2026-11-22T18:00:00Z"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ms = parse_rfc3339("2026-11-22T18:00:00.250+01:00").unwrap();
        assert_eq!(rfc3339(ms), "2026-11-22T17:00:00.25Z");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_rfc3339("tomorrow").is_err());
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_err());
    }
}
