//! Business events in: `POST /v1/events`, `GET /v1/events/{id}` (with
//! what each rule did), and `GET /v1/dead-letters` (what could not be used,
//! and why).

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use epistle_core::timefmt::rfc3339;
use epistle_ingest::events::parse_event;
use epistle_store::{DeadLetter, EventAccepted};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::read_body;
use crate::state::AppState;

/// `POST /v1/events`: stored (durably) before the answer; the rules act on
/// it right after. The same `type` and `key` again is a duplicate.
pub async fn create(State(st): State<AppState>, caller: Caller, req: Request) -> Result<Response, ApiError> {
    caller.require("events:write")?;
    let body = read_body(req, &()).await?;
    let now = st.clock.now_ms();
    let e = parse_event(&body, &caller.tenant_id, "http", now).map_err(|e| {
        if e.field.is_empty() {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.message)
        } else {
            ApiError::invalid(e.field, e.message)
        }
    })?;
    let (id, duplicate) = match st.intake.store_event(&e).await? {
        EventAccepted::New(id) => (id, false),
        EventAccepted::Duplicate(id) => (id, true),
    };
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"id": id, "duplicate": duplicate}))).into_response())
}

/// `GET /v1/events/{id}`
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("events:read")?;
    let Some(e) = st.store.business_event(&caller.tenant_id, &id).await? else {
        return Err(ApiError::not_found("event"));
    };
    let mut runs: Vec<Value> = vec![];
    for r in st.store.runs_of_event(&e.id).await? {
        let mut v = json!({"rule": r.rule_id, "status": r.status, "message_id": r.message_id, "detail": r.detail,
                           "updated_at": rfc3339(r.updated_at)});
        // Whether the mail was escalated (when its rule escalates).
        if let Some(m) = &r.message_id
            && let Some(x) = st.store.escalations_of(m).await?.into_iter().next()
        {
            v["escalation"] = json!({"status": x.status, "detail": x.detail, "due_at": x.due_at.map(rfc3339),
                                     "message_id": x.escalation_message_id});
        }
        runs.push(v);
    }
    Ok(axum::Json(json!({
        "id": e.id, "type": e.event_type, "key": e.key, "entity": e.entity, "data": e.data,
        "occurred_at": rfc3339(e.occurred_at), "received_at": rfc3339(e.received_at), "source": e.source,
        "status": e.status, "processed_at": e.processed_at.map(rfc3339), "runs": runs,
    }))
    .into_response())
}

fn view(d: &DeadLetter) -> Value {
    json!({"id": d.id, "source": d.source, "reason": d.reason, "payload": d.payload, "event_id": d.event_id,
           "rule_id": d.rule_id, "created_at": rfc3339(d.created_at)})
}

/// `GET /v1/dead-letters?limit=&cursor=`, newest first.
pub async fn dead_letters(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("events:read")?;
    const KNOWN: [&str; 2] = ["limit", "cursor"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use {}", KNOWN.join(", "))));
    }
    let limit = crate::paging::limit(&q)?;
    let before = crate::paging::cursor(&q)?;
    let rows = st.store.dead_letters(&caller.tenant_id, before, limit).await?;
    let next = crate::paging::next_cursor(&rows, limit, |d| (d.created_at, d.id.as_str()));
    Ok(axum::Json(json!({"data": rows.iter().map(view).collect::<Vec<_>>(), "next_cursor": next})).into_response())
}
