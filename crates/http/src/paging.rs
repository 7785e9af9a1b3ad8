//! Paging of lists by `limit` and an opaque `cursor` over
//! `(created_at, id)`, newest first.

use std::collections::HashMap;

use axum::http::StatusCode;
use base64::Engine as _;

use crate::error::ApiError;

/// `limit` from the query: 1 to 1000, default 50.
pub fn limit(q: &HashMap<String, String>) -> Result<i64, ApiError> {
    match q.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "`limit` is a number from 1 to 1000")),
        None => Ok(50),
    }
}

/// The `(created_at, id)` a `cursor` stands for.
pub fn cursor(q: &HashMap<String, String>) -> Result<Option<(i64, String)>, ApiError> {
    let Some(c) = q.get("cursor") else { return Ok(None) };
    let bad = || {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", "use `next_cursor` from a list reply").field("cursor")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
    serde_json::from_slice::<(i64, String)>(&raw).map(Some).map_err(|_| bad())
}

/// The `next_cursor` of a page: set when the page is full.
pub fn next_cursor<T>(rows: &[T], limit: i64, key: impl Fn(&T) -> (i64, &str)) -> Option<String> {
    if rows.len() as i64 != limit {
        return None;
    }
    let (at, id) = key(rows.last()?);
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::json!([at, id]).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_values() {
        let rows = [(5i64, "a".to_string()), (4, "b".to_string())];
        let next = next_cursor(&rows, 2, |r| (r.0, r.1.as_str())).unwrap();
        let q: HashMap<String, String> = [("cursor".to_string(), next)].into();
        assert_eq!(cursor(&q).unwrap(), Some((4, "b".to_string())));
        assert_eq!(next_cursor(&rows, 3, |r| (r.0, r.1.as_str())), None, "a short page is the last");
        let bad: HashMap<String, String> = [("cursor".to_string(), "!!".to_string())].into();
        assert_eq!(cursor(&bad).unwrap_err().status, StatusCode::BAD_REQUEST);
        let q: HashMap<String, String> = [("limit".to_string(), "0".to_string())].into();
        assert!(limit(&q).is_err());
        assert_eq!(limit(&HashMap::new()).unwrap(), 50);
    }
}
