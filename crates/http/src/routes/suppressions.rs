//! The suppression list: `GET /v1/suppressions`, `POST /v1/suppressions`,
//! `DELETE /v1/suppressions/{email}[?scope=]`, and the tenant's feedback
//! settings: `GET|PUT /v1/settings`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use epistle_core::suppression::{parse_scope, show_scope};
use epistle_core::{EmailAddress, timefmt};
use epistle_store::{Suppression, SuppressionFilter};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::feedback::TenantFeedback;
use crate::json::ApiJson;
use crate::state::AppState;

const REASONS: [&str; 4] = ["hard_bounce", "complaint", "unsubscribe", "manual"];

fn view(s: &Suppression) -> serde_json::Value {
    json!({
        "email": s.email,
        "scope": show_scope(&s.scope),
        "reason": s.reason,
        "source": s.source,
        "detail": s.detail,
        "created_at": timefmt::rfc3339(s.created_at),
    })
}

fn email(field: &str, s: &str) -> Result<String, ApiError> {
    EmailAddress::parse(s)
        .map(|e| e.as_str().to_ascii_lowercase())
        .map_err(|e| ApiError::invalid(field, format!("`{s}`: {e}")))
}

/// `GET /v1/suppressions?email=&reason=&scope=&limit=&cursor=`
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("suppressions:read")?;
    const KNOWN: [&str; 5] = ["email", "reason", "scope", "limit", "cursor"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use {}", KNOWN.join(", "))));
    }
    let mut f = SuppressionFilter { limit: 50, ..Default::default() };
    if let Some(l) = q.get("limit") {
        f.limit = l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "`limit` is a number from 1 to 1000"))?;
    }
    if let Some(e) = q.get("email") {
        f.email = Some(email("email", e)?);
    }
    if let Some(r) = q.get("reason") {
        if !REASONS.contains(&r.as_str()) {
            return Err(ApiError::invalid("reason", format!("use one of {}", REASONS.join(", "))));
        }
        f.reason = Some(r.clone());
    }
    if let Some(s) = q.get("scope") {
        f.scope = Some(parse_scope(s).map_err(|e| ApiError::invalid("scope", e))?);
    }
    if let Some(c) = q.get("cursor") {
        let bad = || {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", "use `next_cursor` from a list reply")
                .field("cursor")
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
        let (at, email, scope): (i64, String, String) = serde_json::from_slice(&raw).map_err(|_| bad())?;
        f.before = Some((at, email, scope));
    }
    let rows = st.store.suppression_page(&caller.tenant_id, &f).await?;
    let next = (rows.len() as i64 == f.limit).then(|| rows.last()).flatten().map(|s| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([s.created_at, s.email, s.scope]).to_string())
    });
    Ok(axum::Json(json!({"data": rows.iter().map(view).collect::<Vec<_>>(), "next_cursor": next})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    email: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// `POST /v1/suppressions`
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: ApiJson<NewSuppression>,
) -> Result<Response, ApiError> {
    caller.require("suppressions:write")?;
    let b = body.value;
    let reason = b.reason.unwrap_or_else(|| "manual".into());
    if !REASONS.contains(&reason.as_str()) {
        return Err(ApiError::invalid("reason", format!("use one of {}", REASONS.join(", "))));
    }
    if b.detail.as_deref().is_some_and(|d| d.len() > 1000) {
        return Err(ApiError::invalid("detail", "`detail` is at most 1000 characters"));
    }
    let s = Suppression {
        email: email("email", &b.email)?,
        scope: parse_scope(b.scope.as_deref().unwrap_or("all")).map_err(|e| ApiError::invalid("scope", e))?,
        reason,
        source: "api".into(),
        detail: b.detail,
        created_at: st.clock.now_ms(),
    };
    st.store.put_suppression(&caller.tenant_id, &s).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&s))).into_response())
}

/// `DELETE /v1/suppressions/{email}?scope=`: without `scope`, every entry
/// of the address.
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(addr): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("suppressions:write")?;
    let e = email("email", &addr)?;
    let scope = match q.get("scope") {
        Some(s) => Some(parse_scope(s).map_err(|e| ApiError::invalid("scope", e))?),
        None => None,
    };
    let n = st.store.delete_suppression(&caller.tenant_id, &e, scope.as_deref()).await?;
    if n == 0 {
        return Err(ApiError::not_found("suppression"));
    }
    Ok(axum::Json(json!({"email": e, "deleted": n})).into_response())
}

/// `GET /v1/settings`
pub async fn get_settings(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("settings:read")?;
    let v = st.store.tenant_settings(&caller.tenant_id).await?;
    let s: TenantFeedback = serde_json::from_value(v).unwrap_or_default();
    Ok(axum::Json(s).into_response())
}

/// `PUT /v1/settings`: replaces the tenant's feedback settings.
pub async fn put_settings(
    State(st): State<AppState>,
    caller: Caller,
    body: ApiJson<TenantFeedback>,
) -> Result<Response, ApiError> {
    caller.require("settings:write")?;
    let s = body.value;
    if s.categories.len() > 50 {
        return Err(ApiError::invalid("categories", "at most 50 categories"));
    }
    for (i, c) in s.categories.iter().enumerate() {
        parse_scope(&format!("category:{}", c.name)).map_err(|_| {
            ApiError::invalid(format!("categories[{i}].name"), "a category name is 1–64 letters, digits, - and _")
        })?;
        if c.label.trim().is_empty() || c.label.len() > 200 {
            return Err(ApiError::invalid(format!("categories[{i}].label"), "a label is 1–200 characters"));
        }
        if s.categories[..i].iter().any(|o| o.name == c.name) {
            return Err(ApiError::invalid(format!("categories[{i}].name"), format!("`{}` is listed twice", c.name)));
        }
    }
    let v = serde_json::to_value(&s).map_err(ApiError::internal)?;
    st.store.put_tenant_settings(&caller.tenant_id, &v, st.clock.now_ms()).await?;
    if let Some(fb) = &st.feedback {
        fb.forget_settings(&caller.tenant_id);
    }
    Ok(axum::Json(s).into_response())
}
