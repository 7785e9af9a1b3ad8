//! Outgoing webhooks (`/v1/webhooks`) and the live event stream
//! (`GET /v1/events/stream`, Server-Sent Events).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use epistle_core::{new_id, timefmt};
use epistle_deliver::events::Published;
use epistle_deliver::webhooks::{is_internal, payload};
use epistle_store::WebhookRecord;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

/// Event types a webhook or stream may ask for.
pub const EVENT_TYPES: [&str; 17] = [
    "queued",
    "scheduled",
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "complained",
    "suppressed",
    "failed",
    "cancelled",
    "opened",
    "clicked",
    "unsubscribed",
    "auto_replied",
    "feedback",
    "received",
    "*",
];

fn check_events(field: &str, events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid(field, "name at least one event, or \"*\" for all"));
    }
    for (i, e) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(ApiError::invalid(
                format!("{field}[{i}]"),
                format!("unknown event `{e}`; use {}", EVENT_TYPES.join(", ")),
            ));
        }
    }
    Ok(())
}

fn view(w: &WebhookRecord) -> serde_json::Value {
    json!({
        "id": w.id,
        "url": w.url,
        "events": w.events,
        "description": w.description,
        "created_at": timefmt::rfc3339(w.created_at),
        "enabled": w.disabled_at.is_none(),
        "failing_since": w.failing_since.map(timefmt::rfc3339),
        "disabled_at": w.disabled_at.map(timefmt::rfc3339),
        "disabled_reason": w.disabled_reason,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Checks a webhook URL: http(s), a host, and (unless allowed) no
/// loopback or private address.
async fn check_url(st: &AppState, raw: &str) -> Result<String, ApiError> {
    let url =
        reqwest::Url::parse(raw.trim()).map_err(|e| ApiError::invalid("url", format!("`{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("url", "the URL must be http:// or https:// with a host name"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(
            "url",
            "put no credentials in the URL; check the Epistle-Signature header instead",
        ));
    }
    let allow = st.feedback.as_ref().is_some_and(|f| f.allow_private_webhooks);
    if !allow {
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let internal = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => is_internal(ip),
            Err(_) if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") => true,
            Err(_) => match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(mut addrs) => addrs.any(|a| is_internal(a.ip())),
                // Not resolvable now: checked again at each delivery.
                Err(_) => false,
            },
        };
        if internal {
            return Err(ApiError::invalid(
                "url",
                "this URL points at a loopback or private address; an administrator can allow that with \
                 webhooks.allow_private_addresses",
            ));
        }
    }
    Ok(url.to_string())
}

/// `POST /v1/webhooks`: the signing secret is in this reply only.
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: ApiJson<NewWebhook>,
) -> Result<Response, ApiError> {
    caller.require("webhooks:write")?;
    let fb = st.feedback.clone().ok_or_else(|| ApiError::unavailable("webhooks need the master key"))?;
    let b = body.value;
    check_events("events", &b.events)?;
    if b.description.as_deref().is_some_and(|d| d.len() > 500) {
        return Err(ApiError::invalid("description", "at most 500 characters"));
    }
    let url = check_url(&st, &b.url).await?;
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let secret_text = format!("whsec_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let id = new_id("whk");
    let mut events = b.events;
    events.sort();
    events.dedup();
    let w = WebhookRecord {
        id: id.clone(),
        tenant_id: caller.tenant_id.clone(),
        url,
        events,
        description: b.description,
        secret: fb.master.seal(&id, secret_text.as_bytes()),
        created_at: st.clock.now_ms(),
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
        after_event: 0,
    };
    st.store.create_webhook(&w).await?;
    let mut v = view(&w);
    v["secret"] = json!(secret_text);
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

/// `GET /v1/webhooks`
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("webhooks:read")?;
    let hooks = st.store.list_webhooks(&caller.tenant_id).await?;
    Ok(axum::Json(json!({"data": hooks.iter().map(view).collect::<Vec<_>>(), "next_cursor": null})).into_response())
}

async fn find(st: &AppState, caller: &Caller, id: &str) -> Result<WebhookRecord, ApiError> {
    st.store.get_webhook(&caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

/// `GET /v1/webhooks/{id}`
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("webhooks:read")?;
    Ok(axum::Json(view(&find(&st, &caller, &id).await?)).into_response())
}

/// `DELETE /v1/webhooks/{id}`
pub async fn delete(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("webhooks:write")?;
    if !st.store.delete_webhook(&caller.tenant_id, &id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/webhooks/{id}/enable`: back on after being disabled.
pub async fn enable(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("webhooks:write")?;
    if !st.store.enable_webhook(&caller.tenant_id, &id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    Ok(axum::Json(view(&find(&st, &caller, &id).await?)).into_response())
}

/// `GET /v1/webhooks/{id}/deliveries?limit=&cursor=`
pub async fn deliveries(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("webhooks:read")?;
    let w = find(&st, &caller, &id).await?;
    let limit = crate::paging::limit(&q)?;
    let before = crate::paging::cursor(&q)?;
    let rows = st.store.webhook_deliveries(&w.id, before, limit).await?;
    let next = crate::paging::next_cursor(&rows, limit, |d| (d.created_at, d.id.as_str()));
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "event_id": format!("evt_{}", d.event_id),
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at.map(timefmt::rfc3339),
                "last_status_code": d.last_code,
                "last_error": d.last_error,
                "created_at": timefmt::rfc3339(d.created_at),
                "updated_at": timefmt::rfc3339(d.updated_at),
                "payload": serde_json::from_str::<serde_json::Value>(&d.payload).unwrap_or_default(),
                "tries": d.tries.iter().map(|(at, code, err, ms)| json!({
                    "at": timefmt::rfc3339(*at), "status_code": code, "error": err, "duration_ms": ms
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(axum::Json(json!({"data": data, "next_cursor": next})).into_response())
}

struct StreamFilter {
    tenant: String,
    types: Vec<String>,
    tag: Option<String>,
}

impl StreamFilter {
    fn wants(&self, p: &Published) -> bool {
        p.row.tenant_id == self.tenant
            && (self.types.is_empty() || self.types.iter().any(|t| t == "*" || *t == p.row.kind))
            && self.tag.as_ref().is_none_or(|t| p.tags.contains(t))
    }
}

fn sse_event(p: &Published) -> Event {
    Event::default().id(p.row.id.to_string()).event(p.row.kind.clone()).data(payload(p))
}

/// Sends stored events after `from` up to `to` that pass the filter.
async fn backfill(
    st: &AppState,
    f: &StreamFilter,
    mut from: i64,
    to: i64,
    tx: &mpsc::Sender<Event>,
) -> Result<i64, ()> {
    while from < to {
        let rows = st.store.tenant_events_after(&f.tenant, from, to, 500).await.map_err(|e| {
            tracing::warn!(error = %e, "event stream: cannot read the log; closing the stream (the client resumes)");
        })?;
        if rows.is_empty() {
            break;
        }
        let mut ids: Vec<String> = rows.iter().map(|r| r.message_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let tags = st.store.tags_of(&ids).await.map_err(|e| {
            tracing::warn!(error = %e, "event stream: cannot read tags; closing the stream (the client resumes)");
        })?;
        for row in rows {
            from = row.id;
            let p = Published { tags: tags.get(&row.message_id).cloned().unwrap_or_default(), row };
            if f.wants(&p) && tx.send(sse_event(&p)).await.is_err() {
                return Err(());
            }
        }
    }
    Ok(to)
}

/// `GET /v1/events/stream?types=opened,clicked&tag=…` with `Last-Event-ID`
/// (or `?after=ID`) to resume: what was missed comes first, then live
/// events, in order.
pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("events:read")?;
    let fb = st.feedback.clone().ok_or_else(|| ApiError::unavailable("the event stream is not running"))?;
    const KNOWN: [&str; 3] = ["types", "tag", "after"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use {}", KNOWN.join(", "))));
    }
    let types: Vec<String> = q
        .get("types")
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    if !types.is_empty() {
        check_events("types", &types)?;
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("after").cloned());
    let resume = match resume {
        Some(r) => Some(r.trim().parse::<i64>().map_err(|_| {
            ApiError::invalid("Last-Event-ID", "`Last-Event-ID` is the `id` of an event this stream sent")
        })?),
        None => None,
    };
    let filter = StreamFilter { tenant: caller.tenant_id.clone(), types, tag: q.get("tag").cloned() };
    let mut live = fb.events.subscribe();
    // Without a resume point the stream starts at the present: the end of
    // the log when the request came, read before answering (read in the
    // task instead, it could pass events written after the client had its
    // 200). The hub may not have read that far: it reads nothing while
    // nobody listens.
    let present = match resume {
        None => st.store.last_event_id().await.ok(),
        Some(_) => None,
    };
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        // The hub may still be reading where the log ends.
        let mut head = fb.events.head();
        while head < 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            head = fb.events.head();
        }
        let mut sent = match resume {
            Some(after) => match backfill(&st, &filter, after, head, &tx).await {
                Ok(n) => n,
                Err(()) => return,
            },
            None => present.map_or(head, |last| last.max(head)),
        };
        loop {
            match live.recv().await {
                Ok(p) => {
                    if p.row.id <= sent {
                        continue;
                    }
                    sent = p.row.id;
                    if filter.wants(&p) && tx.send(sse_event(&p)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live feed: catch up from the log.
                    let head = fb.events.head();
                    match backfill(&st, &filter, sent, head, &tx).await {
                        Ok(n) => sent = n,
                        Err(()) => return,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}
