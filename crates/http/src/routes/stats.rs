//! `GET /v1/stats/costs?since=&until=`: what mail cost, from the prices of
//! the transports that took it.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use epistle_core::timefmt;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

const DAY_MS: i64 = 86_400_000;

fn usd(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

pub async fn costs(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("stats:read")?;
    if let Some(k) = q.keys().find(|k| !["since", "until"].contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use since and until")));
    }
    let now = st.clock.now_ms();
    let parse = |name: &str, default: i64| -> Result<i64, ApiError> {
        match q.get(name) {
            Some(v) => timefmt::parse_rfc3339(v).map_err(|e| ApiError::invalid(name, e)),
            None => Ok(default),
        }
    };
    // Default: the last 30 days.
    let until = parse("until", now)?;
    let since = parse("since", until - 30 * DAY_MS)?;
    if since > until {
        return Err(ApiError::invalid("since", "`since` is after `until`"));
    }
    let stats = st.store.cost_stats(&caller.tenant_id, since, until).await?;
    let by_transport: serde_json::Map<String, serde_json::Value> =
        stats.by_transport.iter().map(|(t, c)| (t.clone(), json!(usd(*c)))).collect();
    let by_day: Vec<_> = stats
        .by_day
        .iter()
        .map(|(day, c)| json!({"day": &timefmt::rfc3339(day * DAY_MS)[..10], "total": usd(*c)}))
        .collect();
    Ok(axum::Json(json!({
        "currency": "USD",
        "since": timefmt::rfc3339(since),
        "until": timefmt::rfc3339(until),
        "total": usd(stats.total),
        "by_transport": by_transport,
        "by_day": by_day,
    }))
    .into_response())
}
