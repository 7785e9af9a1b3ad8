//! `/healthz`, `/readyz` and `/metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use epistle_core::RecipientStatus;
use epistle_deliver::metrics::{StatusLabels, TransportLabels};
use serde_json::json;

use crate::state::AppState;

/// 200 while the process runs.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// 200 when the database answers, 503 otherwise.
pub async fn readyz(State(st): State<AppState>) -> Response {
    match st.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "unavailable", "reason": e.to_string()})))
                .into_response()
        }
    }
}

/// Prometheus / OpenMetrics text. Queue depth is read from the database at
/// scrape time, so every node reports the shared queue.
pub async fn metrics(State(st): State<AppState>) -> Response {
    if let Ok(depth) = st.store.queue_depth().await {
        for s in
            [RecipientStatus::Queued, RecipientStatus::Scheduled, RecipientStatus::Sending, RecipientStatus::Deferred]
        {
            let n = depth.iter().find(|(st, _)| *st == s).map(|(_, n)| *n).unwrap_or(0);
            st.metrics.queue_depth.get_or_create(&StatusLabels { status: s.as_str().into() }).set(n);
        }
    }
    if let Ok(n) = st.store.pending_business_events().await {
        st.metrics.events_pending.set(n);
    }
    if let Some(route) = &st.router {
        for (name, open) in route.circuits() {
            st.metrics.circuit_open.get_or_create(&TransportLabels { transport: name }).set(open as i64);
        }
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], st.metrics.render())
        .into_response()
}
