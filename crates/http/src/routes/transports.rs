//! `GET /v1/transports`: the ways out, with their health.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("transports:read")?;
    let data: Vec<_> = st
        .router
        .iter()
        .flat_map(|r| r.hops.iter())
        .map(|h| {
            json!({
                "name": h.name(),
                "kind": h.kind,
                "circuit": if h.circuit.is_open() { "open" } else { "closed" },
                "rate": h.limiter.as_ref().map(|l| l.rate.to_string()),
                "connections": (h.connections > 0).then_some(h.connections),
                "cost_per_1000": (h.cost_micros > 0).then(|| h.cost_micros as f64 / 1000.0),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}
