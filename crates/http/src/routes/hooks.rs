//! Provider webhooks in: `POST /hooks/ses` (SNS), `/hooks/mailgun`,
//! `/hooks/sendgrid`, `/hooks/postmark`.
//!
//! Each checks the provider's proof first (SNS signature and certificate
//! host, Mailgun HMAC with replay protection, SendGrid ECDSA, Postmark
//! basic auth): anything forged, stale or replayed is a 401 and changes
//! nothing. What is authentic becomes status changes, events and
//! suppressions through the same path as bounces that arrive by mail.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use epistle_core::RecipientStatus;
use epistle_ingest::hooks::{self, FeedbackEvent, FeedbackKind, HookError, sns};
use epistle_store::{FeedbackUpdate, RecipientRef};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

fn refused(e: HookError) -> Response {
    let (status, code, msg) = match e {
        HookError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
        HookError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
    };
    ApiError::new(status, code, msg).into_response()
}

fn not_configured(what: &str) -> Response {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "hook_not_configured",
        format!("this hook takes nothing until its credentials are set ([hooks] {what})"),
    )
    .into_response()
}

/// A SubscribeURL is only fetched on SNS's own host (or a configured
/// prefix), never wherever a request body says.
fn subscribe_url_ok(url: &str, prefixes: &[String]) -> bool {
    if !prefixes.is_empty() {
        return prefixes.iter().any(|p| !p.is_empty() && url.starts_with(p.as_str()));
    }
    let Some(rest) = url.strip_prefix("https://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    host.strip_prefix("sns.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

/// The bounce classifier's reason for a provider's diagnostic text
/// (`smtp; 550 5.1.1 user unknown`) about `rcpt`.
fn bounce_reason(rcpt: &str, detail: &str) -> &'static str {
    let code = detail
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 3 && (w.starts_with('4') || w.starts_with('5')))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    epistle_mail::bounce::classify_reply_to(rcpt, code, None, detail).0.as_str()
}

/// A provider report as a store update.
pub fn update_of(e: &FeedbackEvent, now: i64) -> Option<FeedbackUpdate> {
    let message_id = e.message.as_ref()?.our_id()?;
    let (status, event, suppress, data) = match &e.kind {
        FeedbackKind::Delivered => (Some(RecipientStatus::Delivered), "delivered", None, None),
        FeedbackKind::Deferred => (Some(RecipientStatus::Deferred), "deferred", None, None),
        FeedbackKind::Bounced { hard } => (
            Some(RecipientStatus::Bounced),
            "bounced",
            hard.then(|| "hard_bounce".to_string()),
            // The provider decides hard or soft; the classifier names the
            // reason, in the same words as bounces that come back by mail.
            Some(json!({"hard": hard, "reason": bounce_reason(&e.recipient, &e.detail)})),
        ),
        FeedbackKind::Complained => (Some(RecipientStatus::Complained), "complained", Some("complaint".into()), None),
        FeedbackKind::Feedback { feedback_type } => {
            (None, "feedback", None, Some(json!({"feedback_type": feedback_type})))
        }
        FeedbackKind::Opened => (None, "opened", None, None),
        FeedbackKind::Clicked { url } => (None, "clicked", None, Some(json!({"url": url}))),
        FeedbackKind::Unsubscribed => (None, "unsubscribed", Some("unsubscribe".into()), None),
    };
    let mut data = data.unwrap_or_else(|| json!({}));
    data["provider"] = json!(e.provider);
    Some(FeedbackUpdate {
        recipient: RecipientRef::Address { message_id, email: e.recipient.clone() },
        status,
        event: event.into(),
        detail: (!e.detail.is_empty()).then(|| e.detail.clone()),
        data: Some(data.to_string()),
        suppress,
        source: e.provider.into(),
        at: e.at.unwrap_or(now),
    })
}

async fn apply(st: &AppState, events: Vec<FeedbackEvent>) -> Result<Response, ApiError> {
    let now = st.clock.now_ms();
    let updates: Vec<FeedbackUpdate> = events.iter().filter_map(|e| update_of(e, now)).collect();
    let matched = if updates.is_empty() { 0 } else { st.store.apply_feedback(&updates, now).await? };
    if let Some(fb) = &st.feedback {
        fb.events.poke();
    }
    tracing::info!(received = events.len(), matched, "provider feedback");
    Ok(axum::Json(json!({"received": events.len(), "matched": matched})).into_response())
}

/// `POST /hooks/mailgun`
pub async fn mailgun(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Some(fb) = st.feedback.clone() else { return Ok(not_configured("mailgun_signing_key")) };
    let Some(key) = fb.hooks.mailgun_signing_key.as_deref() else { return Ok(not_configured("mailgun_signing_key")) };
    match hooks::mailgun::verify_and_parse(&body, key, st.clock.now_ms(), &fb.replay) {
        Ok(events) => apply(&st, events).await,
        Err(e) => Ok(refused(e)),
    }
}

/// `POST /hooks/sendgrid`
pub async fn sendgrid(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(fb) = st.feedback.clone() else { return Ok(not_configured("sendgrid_public_key")) };
    let Some(key) = fb.hooks.sendgrid_public_key.as_deref() else { return Ok(not_configured("sendgrid_public_key")) };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (sig, ts) = (h(hooks::sendgrid::SIGNATURE_HEADER), h(hooks::sendgrid::TIMESTAMP_HEADER));
    if !hooks::sendgrid::timestamp_fresh(&ts, st.clock.now_ms()) {
        return Ok(refused(HookError::Unauthorized("the signed timestamp is missing or too old".into())));
    }
    // The signature covers the timestamp, so a replay must be exact: a
    // signature is accepted once.
    if !sig.is_empty() && !fb.replay.check_and_remember(&format!("sg:{sig}"), st.clock.now_ms()) {
        return Ok(refused(HookError::Unauthorized("this request was seen before".into())));
    }
    match hooks::sendgrid::verify_and_parse(&body, &sig, &ts, key) {
        Ok(events) => apply(&st, events).await,
        Err(e) => Ok(refused(e)),
    }
}

/// `POST /hooks/postmark`
pub async fn postmark(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let Some(fb) = st.feedback.clone() else { return Ok(not_configured("postmark_username")) };
    let (Some(u), Some(p)) = (fb.hooks.postmark_username.as_deref(), fb.hooks.postmark_password.as_deref()) else {
        return Ok(not_configured("postmark_username / postmark_password"));
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match hooks::postmark::verify_and_parse(&body, auth, u, p) {
        Ok(events) => apply(&st, events).await,
        Err(e) => Ok(refused(e)),
    }
}

/// `POST /hooks/ses`: Amazon SNS notifications carrying SES events.
pub async fn ses(State(st): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Some(fb) = st.feedback.clone() else { return Ok(not_configured("ses_topic_arns")) };
    if fb.hooks.ses_topic_arns.is_empty() {
        return Ok(not_configured("ses_topic_arns"));
    }
    let env = match sns::parse(&body) {
        Ok(e) => e,
        Err(e) => return Ok(refused(e)),
    };
    if !fb.hooks.ses_topic_arns.contains(&env.topic_arn) {
        return Ok(refused(HookError::Unauthorized(format!(
            "topic {} is not in [hooks] ses_topic_arns",
            env.topic_arn
        ))));
    }
    if let Err(e) = sns::check_cert_url(&env.signing_cert_url, &fb.hooks.sns_cert_prefixes) {
        return Ok(refused(e));
    }
    let cached = fb.sns_certs.lock().expect("cert cache").get(&env.signing_cert_url).cloned();
    let cert = match cached {
        Some(c) => c,
        None => {
            let fetched = async {
                let r = fb.http.get(&env.signing_cert_url).send().await?.error_for_status()?;
                r.bytes().await
            }
            .await;
            match fetched {
                Ok(b) if b.len() < 64 * 1024 => {
                    let b = b.to_vec();
                    fb.sns_certs.lock().expect("cert cache").insert(env.signing_cert_url.clone(), b.clone());
                    b
                }
                Ok(_) => return Ok(refused(HookError::Unauthorized("the signing certificate is too large".into()))),
                Err(e) => {
                    return Ok(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "certificate_unavailable",
                        format!("cannot fetch the SNS signing certificate: {e}; SNS will retry"),
                    )
                    .into_response());
                }
            }
        }
    };
    if let Err(e) = sns::verify(&env, &cert, st.clock.now_ms()) {
        return Ok(refused(e));
    }
    match env.kind {
        sns::SnsKind::SubscriptionConfirmation => {
            let url = env.subscribe_url.clone().unwrap_or_default();
            if fb.hooks.sns_auto_confirm && subscribe_url_ok(&url, &fb.hooks.sns_cert_prefixes) {
                let ok = fb.http.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false);
                tracing::info!(topic = %env.topic_arn, confirmed = ok, "SNS subscription confirmation");
                return Ok(axum::Json(json!({"subscription": if ok { "confirmed" } else { "confirmation failed" }}))
                    .into_response());
            }
            tracing::warn!(topic = %env.topic_arn, subscribe_url = %url, "SNS subscription waiting for confirmation: open the SubscribeURL");
            Ok(axum::Json(json!({"subscription": "pending", "subscribe_url": url})).into_response())
        }
        sns::SnsKind::UnsubscribeConfirmation => Ok(axum::Json(json!({"received": 0, "matched": 0})).into_response()),
        sns::SnsKind::Notification => match sns::ses_events(&env.message) {
            Ok(events) => apply(&st, events).await,
            Err(e) => Ok(refused(e)),
        },
    }
}
