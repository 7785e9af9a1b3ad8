//! `/v1/messages`: accept, batch, read, list, raw, cancel.

use std::collections::HashMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use epistle_core::{EmailAddress, MessageId, RecipientStatus, summarize, timefmt};
use epistle_store::{InsertResult, ListFilter, MessageRecord};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{self, ApiJson};
use crate::state::AppState;
use crate::validate::{self, Prepared};
use crate::wire::{AttemptView, EventView, List, MessageView, RecipientView, SendRequest};

const MAX_BATCH: usize = 1000;

fn body_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn accepted_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        r.headers_mut().insert("idempotent-replayed", header::HeaderValue::from_static("true"));
    }
    r
}

fn conflict(message_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_conflict",
        format!(
            "this Idempotency-Key was used for a different request (message {message_id}); use a new key for new content"
        ),
    )
}

/// `POST /v1/messages`
pub async fn send(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    caller.require("messages:send")?;
    let idempotency = match headers.get("idempotency-key") {
        Some(v) => {
            let key = validate::idempotency_key(v.to_str().unwrap_or(""))?;
            Some((key, body_hash(&body.bytes)))
        }
        None => None,
    };
    accept_one(&st, &caller, body.value, idempotency).await
}

/// Renders the message's template, if it names one, into its subject and
/// bodies. Returns the template and version used.
pub async fn apply_template(
    st: &AppState,
    tenant_id: &str,
    req: &mut SendRequest,
) -> Result<Option<(String, i64)>, ApiError> {
    let Some(name) = req.template.clone() else {
        if req.data.is_some() || req.template_version.is_some() {
            return Err(ApiError::invalid("template", "`data` and `template_version` go with `template`"));
        }
        return Ok(None);
    };
    if req.subject.is_some() || req.text.is_some() || req.html.is_some() {
        return Err(ApiError::invalid(
            "template",
            "give either `template` (with `data`) or `subject` / `text` / `html`, not both",
        ));
    }
    let mut data = req.data.take().unwrap_or_default();
    // Each recipient's own link replaces these after rendering.
    let unsub =
        format!("{}/u/{}", st.settings.public_url.trim_end_matches('/'), crate::feedback::UNSUBSCRIBE_PLACEHOLDER);
    data.entry("unsubscribe_url").or_insert_with(|| serde_json::Value::String(unsub.clone()));
    data.entry("preferences_url").or_insert_with(|| serde_json::Value::String(format!("{unsub}#preferences")));
    let data = serde_json::Value::Object(data);
    let (rendered, version) =
        super::templates::render_for_message(st, tenant_id, &name, req.template_version, &data).await?;
    req.subject = Some(rendered.subject);
    req.html = rendered.html;
    req.text = rendered.text;
    if req.calendar.is_none() {
        req.calendar = appointment_calendar(&name, &data)?;
    }
    Ok(Some((name, version)))
}

/// The appointment templates carry their invitation: from `appointment`'s
/// `uid`, `start` and `end` (and `sequence`, `timezone`, `title`,
/// `location`, `join_url`, `description`, `organizer`), a request, or a
/// cancellation for `appointment-cancelled`. Without `uid`, `start` and
/// `end` the mail goes without one.
fn appointment_calendar(template: &str, data: &serde_json::Value) -> Result<Option<crate::wire::CalendarIn>, ApiError> {
    if !template.starts_with("appointment-") {
        return Ok(None);
    }
    let a = &data["appointment"];
    let (Some(uid), Some(start), Some(end)) = (a["uid"].as_str(), a["start"].as_str(), a["end"].as_str()) else {
        return Ok(None);
    };
    let text = |k: &str| a[k].as_str().map(str::to_string);
    let sequence = match &a["sequence"] {
        serde_json::Value::Null => 0,
        v => v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
            ApiError::invalid("data.appointment.sequence", "`sequence` is a whole number (0, 1, 2, … for each change)")
        })?,
    };
    Ok(Some(crate::wire::CalendarIn {
        method: Some(if template == "appointment-cancelled" { "cancel" } else { "request" }.into()),
        uid: uid.to_string(),
        sequence,
        start: start.to_string(),
        end: end.to_string(),
        timezone: text("timezone"),
        summary: text("title").unwrap_or_else(|| "Appointment".into()),
        description: text("description"),
        location: text("location"),
        url: text("join_url"),
        organizer: text("organizer"),
        attendees: None,
    }))
}

/// The links this message gets, from the request and the tenant's settings.
pub async fn personalize_for(
    st: &AppState,
    tenant_id: &str,
    req: &SendRequest,
) -> Result<validate::Personalize, ApiError> {
    let Some(fb) = &st.feedback else { return Ok(validate::Personalize::default()) };
    let s = fb.settings(&st.store, tenant_id).await?;
    let broadcast = req.stream.as_deref() == Some("broadcast");
    let track = if broadcast { s.tracking.broadcast } else { s.tracking.transactional };
    Ok(validate::Personalize {
        key: Some(fb.key.clone()),
        public_url: st.settings.public_url.clone(),
        track_opens: req.track_opens.unwrap_or(track.opens),
        track_clicks: req.track_clicks.unwrap_or(track.clicks),
        unsubscribe: req.unsubscribe.unwrap_or(broadcast || s.unsubscribe.transactional),
        mailto_domain: fb.bounce_domain.clone(),
        store_ip: s.tracking.store_ip,
    })
}

/// Marks recipients on the tenant's suppression list as `suppressed`
/// (they are not sent), in the message and in the reply.
pub async fn mark_suppressed(st: &AppState, p: &mut Prepared) -> Result<(), ApiError> {
    let emails: Vec<String> = p.message.recipients.iter().map(|r| r.email.to_ascii_lowercase()).collect();
    let found = st.store.suppressions_of(&p.message.tenant_id, &emails).await?;
    if found.is_empty() {
        return Ok(());
    }
    let (stream, category) = (p.message.stream.clone(), p.message.category.clone());
    for (r, shown) in p.message.recipients.iter_mut().zip(p.reply.recipients.iter_mut()) {
        let hit = found.iter().find(|(e, scope)| {
            e.eq_ignore_ascii_case(&r.email) && epistle_core::suppression::applies(scope, &stream, category.as_deref())
        });
        if let Some((_, scope)) = hit {
            r.suppressed = Some(format!(
                "not sent: the address is on this tenant's suppression list (scope {})",
                epistle_core::suppression::show_scope(scope)
            ));
            shown.status = "suppressed".into();
        }
    }
    if p.reply.recipients.iter().all(|r| r.status == "suppressed") {
        p.reply.status = "suppressed".into();
    }
    p.message.response = serde_json::to_string(&p.reply).unwrap_or_default();
    Ok(())
}

/// Validates and renders one message for a tenant, marking suppressed
/// recipients: ready to commit.
pub async fn prepare_message(
    st: &AppState,
    tenant_id: &str,
    mut req: SendRequest,
    idempotency: Option<(String, String)>,
    now: i64,
) -> Result<Prepared, ApiError> {
    let template = apply_template(st, tenant_id, &mut req).await?;
    let personal = personalize_for(st, tenant_id, &req).await?;
    let mut prepared = validate::prepare(req, tenant_id, now, &st.settings, idempotency, &personal)?;
    mark_suppressed(st, &mut prepared).await?;
    prepared.message.template = template;
    Ok(prepared)
}

/// Validates, renders and commits one message; the 202 (or the replayed
/// answer of an earlier request with the same key).
pub async fn accept_one(
    st: &AppState,
    caller: &Caller,
    req: SendRequest,
    idempotency: Option<(String, String)>,
) -> Result<Response, ApiError> {
    let now = st.clock.now_ms();
    let Prepared { message, reply } = prepare_message(st, &caller.tenant_id, req, idempotency, now).await?;
    let n_rcpts = message.recipients.len() as u64;
    let result = st.committer.insert(vec![message], now).await?;
    match result.into_iter().next() {
        Some(InsertResult::Inserted) => {
            st.metrics.messages_accepted.inc();
            st.metrics.recipients_accepted.inc_by(n_rcpts);
            tracing::info!(message = %reply.id, tenant = %caller.tenant_name, recipients = n_rcpts, "accepted");
            Ok(accepted_response(StatusCode::ACCEPTED, serde_json::to_string(&reply).unwrap_or_default(), false))
        }
        Some(InsertResult::Replay { response, .. }) => Ok(accepted_response(StatusCode::OK, response, true)),
        Some(InsertResult::Conflict { message_id }) => Err(conflict(&message_id)),
        None => Err(ApiError::internal("store returned no result")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    messages: Vec<serde_json::Value>,
}

/// `POST /v1/messages/batch`: each item stands alone; one bad item does
/// not reject the others. All good items commit in one transaction.
pub async fn send_batch(State(st): State<AppState>, caller: Caller, req: Request) -> Result<Response, ApiError> {
    caller.require("messages:send")?;
    let bytes = json::read_body(req, &st).await?;
    let batch: BatchRequest = json::parse(&bytes)?;
    if batch.messages.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` is empty; send 1 to 1000 messages"));
    }
    if batch.messages.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "batch_too_large",
            format!("a batch holds at most {MAX_BATCH} messages; this one has {}", batch.messages.len()),
        )
        .field("messages"));
    }
    let now = st.clock.now_ms();
    let mut slots: Vec<Result<usize, ApiError>> = Vec::with_capacity(batch.messages.len());
    let mut prepared = Vec::new();
    for item in batch.messages {
        let r = async {
            let mut item = item;
            let key = match item.as_object_mut().map(|o| o.remove("idempotency_key")) {
                None => return Err(ApiError::invalid("", "each batch item must be a message object")),
                Some(None) | Some(Some(serde_json::Value::Null)) => None,
                Some(Some(serde_json::Value::String(k))) => Some(validate::idempotency_key(&k)?),
                Some(Some(_)) => {
                    return Err(ApiError::invalid("idempotency_key", "`idempotency_key` must be a string"));
                }
            };
            let idem = key.map(|k| (k, body_hash(item.to_string().as_bytes())));
            let req: SendRequest = json::from_value(item)?;
            prepare_message(&st, &caller.tenant_id, req, idem, now).await
        }
        .await;
        slots.push(r.map(|p| {
            prepared.push(p);
            prepared.len() - 1
        }));
    }
    let replies: Vec<_> = prepared.iter().map(|p| p.reply.clone()).collect();
    let rcpts: Vec<u64> = prepared.iter().map(|p| p.message.recipients.len() as u64).collect();
    let results = if prepared.is_empty() {
        Vec::new()
    } else {
        st.committer.insert(prepared.into_iter().map(|p| p.message).collect(), now).await?
    };
    let mut inserted = 0;
    let out: Vec<serde_json::Value> = slots
        .into_iter()
        .map(|slot| match slot {
            Err(e) => e.body(),
            Ok(i) => match &results[i] {
                InsertResult::Inserted => {
                    inserted += 1;
                    st.metrics.recipients_accepted.inc_by(rcpts[i]);
                    serde_json::json!({"id": replies[i].id, "status": replies[i].status})
                }
                InsertResult::Replay { response, .. } => {
                    let prev: serde_json::Value = serde_json::from_str(response).unwrap_or_default();
                    serde_json::json!({"id": prev["id"], "status": prev["status"], "replayed": true})
                }
                InsertResult::Conflict { message_id } => conflict(message_id).body(),
            },
        })
        .collect();
    if inserted > 0 {
        st.metrics.messages_accepted.inc_by(inserted);
    }
    Ok((StatusCode::ACCEPTED, axum::Json(serde_json::json!({ "results": out }))).into_response())
}

/// A path id that is not a well-formed message id names no message: 404
/// without asking the database.
fn message_id(raw: &str) -> Result<MessageId, ApiError> {
    MessageId::parse(raw).ok_or_else(|| ApiError::not_found("message"))
}

fn view(m: MessageRecord, status: RecipientStatus) -> MessageView {
    MessageView {
        id: m.id,
        status: status.as_str().into(),
        from: m.from,
        to: m.to,
        cc: m.cc,
        subject: m.subject,
        stream: m.stream,
        tags: m.tags,
        metadata: m.metadata,
        message_id_header: format!("<{}>", m.header_message_id),
        size: m.size,
        send_at: m.send_at.map(timefmt::rfc3339),
        created_at: timefmt::rfc3339(m.created_at),
        category: m.category,
        recipients: None,
        events: None,
        attempts: None,
    }
}

async fn full_view(st: &AppState, tenant: &str, id: &str) -> Result<MessageView, ApiError> {
    let m = st.store.get_message(tenant, id).await?.ok_or_else(|| ApiError::not_found("message"))?;
    let rcpts = st.store.message_recipients(tenant, id).await?;
    let events = st.store.message_event_rows(tenant, id).await?;
    let attempts = st.store.message_attempts(tenant, id).await?;
    let mut v = view(m, summarize(rcpts.iter().map(|r| r.status)));
    v.recipients = Some(
        rcpts
            .into_iter()
            .map(|r| RecipientView {
                engagement: engagement_of(&events, &r.email),
                email: r.email,
                kind: r.kind,
                status: r.status.as_str().into(),
                attempts: r.attempts,
                last_response: r.last_response,
                updated_at: timefmt::rfc3339(r.updated_at),
                cost: r.cost_micros as f64 / 1_000_000.0,
            })
            .collect(),
    );
    v.events = Some(
        events
            .into_iter()
            .map(|e| EventView {
                kind: e.kind,
                recipient: e.recipient,
                at: timefmt::rfc3339(e.at),
                detail: e.detail,
                data: e.data.and_then(|d| serde_json::from_str(&d).ok()),
            })
            .collect(),
    );
    v.attempts = Some(
        attempts
            .into_iter()
            .map(|a| AttemptView {
                recipient: a.recipient,
                transport: a.transport,
                node: a.node,
                outcome: a.outcome,
                response: a.response,
                at: timefmt::rfc3339(a.started_at),
                duration_ms: a.duration_ms,
            })
            .collect(),
    );
    Ok(v)
}

/// Opens and clicks of one recipient, from the message's events.
fn engagement_of(events: &[epistle_store::EventRow], email: &str) -> crate::wire::Engagement {
    let mut e = crate::wire::Engagement::default();
    for ev in events.iter().filter(|ev| ev.recipient.as_deref() == Some(email)) {
        let machine = ev
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .is_some_and(|d| d["machine"] == serde_json::Value::Bool(true));
        let at = Some(timefmt::rfc3339(ev.at));
        match ev.kind.as_str() {
            "opened" => {
                e.opens += 1;
                e.human_opens += i64::from(!machine);
                e.first_opened_at = e.first_opened_at.or(at.clone());
                e.last_opened_at = at;
            }
            "clicked" => {
                e.clicks += 1;
                e.human_clicks += i64::from(!machine);
                e.first_clicked_at = e.first_clicked_at.or(at.clone());
                e.last_clicked_at = at;
            }
            _ => {}
        }
    }
    e
}

/// `GET /v1/messages/{id}`
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("messages:read")?;
    let id = message_id(&id)?;
    Ok(axum::Json(full_view(&st, &caller.tenant_id, id.as_str()).await?).into_response())
}

/// `GET /v1/messages/{id}/raw`: the RFC 5322 message as handed over.
pub async fn raw(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("messages:read")?;
    let id = message_id(&id)?;
    let raw =
        st.store.raw_message(&caller.tenant_id, id.as_str()).await?.ok_or_else(|| ApiError::not_found("message"))?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

/// `POST /v1/messages/{id}/cancel`
pub async fn cancel(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("messages:send")?;
    let id = message_id(&id)?;
    let now = st.clock.now_ms();
    let cancelled = st.store.cancel_message(&caller.tenant_id, id.as_str(), now).await?;
    let v = full_view(&st, &caller.tenant_id, id.as_str()).await?;
    if cancelled.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_cancellable",
            format!("nothing left to cancel: every recipient is already {} or being sent", v.status),
        ));
    }
    let mut body = serde_json::to_value(&v).unwrap_or_default();
    body["cancelled"] = serde_json::json!(cancelled);
    Ok(axum::Json(body).into_response())
}

fn encode_cursor(m: &MessageRecord) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", m.created_at, m.id))
}

fn decode_cursor(s: &str) -> Option<(i64, String)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((at.parse().ok()?, id.to_string()))
}

/// `GET /v1/messages?status=&tag=&recipient=&since=&limit=&cursor=`
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("messages:read")?;
    const KNOWN: [&str; 7] = ["status", "tag", "recipient", "since", "limit", "cursor", "event"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use {}", KNOWN.join(", "))));
    }
    let mut f = ListFilter { limit: 50, ..Default::default() };
    if let Some(l) = q.get("limit") {
        f.limit = l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "`limit` is a number from 1 to 1000"))?;
    }
    if let Some(s) = q.get("status") {
        f.status = Some(s.parse().map_err(|e: String| ApiError::invalid("status", e))?);
    }
    if let Some(ev) = q.get("event") {
        const EVENTS: [&str; 10] = [
            "opened",
            "clicked",
            "delivered",
            "bounced",
            "complained",
            "deferred",
            "unsubscribed",
            "suppressed",
            "auto_replied",
            "feedback",
        ];
        if !EVENTS.contains(&ev.as_str()) {
            return Err(ApiError::invalid("event", format!("unknown event `{ev}`; use one of {}", EVENTS.join(", "))));
        }
        f.event = Some(ev.clone());
    }
    if let Some(t) = q.get("tag") {
        f.tag = Some(t.clone());
    }
    if let Some(r) = q.get("recipient") {
        let a = EmailAddress::parse(r).map_err(|e| ApiError::invalid("recipient", format!("`recipient`: {e}")))?;
        f.recipient = Some(a.to_string());
    }
    if let Some(s) = q.get("since") {
        f.since = Some(timefmt::parse_rfc3339(s).map_err(|e| ApiError::invalid("since", e))?);
    }
    if let Some(c) = q.get("cursor") {
        f.before = Some(decode_cursor(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "this cursor was not made by this server; use `next_cursor` from a list reply",
            )
            .field("cursor")
        })?);
    }
    let rows = st.store.list_messages(&caller.tenant_id, &f).await?;
    let next_cursor = (rows.len() as i64 == f.limit).then(|| rows.last().map(|r| encode_cursor(&r.message))).flatten();
    let data: Vec<MessageView> = rows.into_iter().map(|s| view(s.message, summarize(s.statuses))).collect();
    Ok(axum::Json(List { data, next_cursor }).into_response())
}
