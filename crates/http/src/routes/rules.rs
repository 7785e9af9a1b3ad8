//! `/v1/rules`: what mail business events send.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use epistle_core::timefmt::rfc3339;
use epistle_render::expr::Expressions;
use epistle_store::Definition;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::rules::RuleSpec;
use crate::state::AppState;

/// A rule or workflow as the API shows it: its specification, with its id,
/// `enabled` and times.
pub(crate) fn view(d: &Definition) -> Value {
    let mut v = d.spec.clone();
    v["id"] = json!(d.id);
    v["enabled"] = json!(d.enabled);
    v["created_at"] = json!(rfc3339(d.created_at));
    v["updated_at"] = json!(rfc3339(d.updated_at));
    v
}

async fn checked(st: &AppState, tenant_id: &str, spec: &RuleSpec) -> Result<(), ApiError> {
    spec.check(&Expressions::new())?;
    // The template must exist now (it may still be deleted later; then the
    // rule's runs fail with the reason, in the dead letters).
    let library = st.templates.library(&st.store, tenant_id).await?;
    let escalation = spec.escalate.as_ref().and_then(|e| e.template.as_ref()).map(|t| ("escalate.template", t));
    for (field, t) in std::iter::once(("template", &spec.template)).chain(escalation) {
        if !library.contains(t) {
            return Err(ApiError::invalid(
                field,
                format!("no template `{t}`: create it with POST /v1/templates, or use a built-in one"),
            ));
        }
    }
    Ok(())
}

/// What is stored of a rule or workflow: the specification as given, less
/// `enabled` (a column of its own).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record<S: serde::Serialize>(
    tenant_id: &str,
    id: String,
    name: &str,
    trigger: &str,
    spec: &S,
    enabled: bool,
    created_at: i64,
    now: i64,
) -> Definition {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("enabled");
    }
    Definition {
        id,
        tenant_id: tenant_id.into(),
        name: name.into(),
        trigger: trigger.into(),
        spec: v,
        enabled,
        created_at,
        updated_at: now,
    }
}

fn rule_record(tenant_id: &str, id: String, spec: &RuleSpec, created_at: i64, now: i64) -> Definition {
    record(tenant_id, id, &spec.name, &spec.on, spec, spec.enabled, created_at, now)
}

/// `POST /v1/rules`
pub async fn create(State(st): State<AppState>, caller: Caller, body: ApiJson<RuleSpec>) -> Result<Response, ApiError> {
    caller.require("rules:write")?;
    checked(&st, &caller.tenant_id, &body.value).await?;
    let now = st.clock.now_ms();
    let r = rule_record(&caller.tenant_id, epistle_core::ids::new_id("rul"), &body.value, now, now);
    st.store.create_rule(&r).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&r))).into_response())
}

/// `PUT /v1/rules/{id}`: replaces the definition.
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiJson<RuleSpec>,
) -> Result<Response, ApiError> {
    caller.require("rules:write")?;
    let Some(old) = st.store.rule(&caller.tenant_id, &id).await? else { return Err(ApiError::not_found("rule")) };
    checked(&st, &caller.tenant_id, &body.value).await?;
    let r = rule_record(&caller.tenant_id, id, &body.value, old.created_at, st.clock.now_ms());
    if !st.store.update_rule(&r).await? {
        return Err(ApiError::not_found("rule"));
    }
    Ok(axum::Json(view(&r)).into_response())
}

/// `GET /v1/rules`
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("rules:read")?;
    let rules = st.store.rules(&caller.tenant_id).await?;
    Ok(axum::Json(json!({"data": rules.iter().map(view).collect::<Vec<_>>()})).into_response())
}

/// `GET /v1/rules/{id}`
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("rules:read")?;
    match st.store.rule(&caller.tenant_id, &id).await? {
        Some(r) => Ok(axum::Json(view(&r)).into_response()),
        None => Err(ApiError::not_found("rule")),
    }
}

/// `DELETE /v1/rules/{id}`: mail it already queued stays queued.
pub async fn delete(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("rules:write")?;
    if !st.store.delete_rule(&caller.tenant_id, &id).await? {
        return Err(ApiError::not_found("rule"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
