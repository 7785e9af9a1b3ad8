//! `/v1/workflows`: multi-step journeys started by business events, and
//! their runs.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use epistle_core::timefmt::rfc3339;
use epistle_render::expr::Expressions;
use epistle_store::{Definition, WorkflowRun};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::routes::rules::{record, view};
use crate::state::AppState;
use crate::workflows::WorkflowSpec;

fn run_view(r: &WorkflowRun, spec: Option<&WorkflowSpec>) -> Value {
    let next = if r.due_at.is_some() {
        spec.and_then(|s| s.steps.get(usize::try_from(r.step).ok()?)).map(|s| s.id.clone())
    } else {
        None
    };
    json!({
        "id": r.id, "workflow_id": r.workflow_id, "event_id": r.event_id, "entity": r.entity,
        "status": r.status, "next_step": next, "due_at": r.due_at.map(rfc3339),
        "steps": r.state["steps"], "history": r.history,
        "created_at": rfc3339(r.created_at), "updated_at": rfc3339(r.updated_at),
    })
}

async fn checked(st: &AppState, tenant_id: &str, spec: &WorkflowSpec) -> Result<(), ApiError> {
    spec.check(&Expressions::new())?;
    let library = st.templates.library(&st.store, tenant_id).await?;
    for (i, t) in spec.templates() {
        if !library.contains(t) {
            return Err(ApiError::invalid(
                format!("steps[{i}].send.template"),
                format!("no template `{t}`: create it with POST /v1/templates, or use a built-in one"),
            ));
        }
    }
    Ok(())
}

fn workflow_record(tenant_id: &str, id: String, spec: &WorkflowSpec, created_at: i64, now: i64) -> Definition {
    record(tenant_id, id, &spec.name, &spec.trigger, spec, spec.enabled, created_at, now)
}

/// `POST /v1/workflows`
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: ApiJson<WorkflowSpec>,
) -> Result<Response, ApiError> {
    caller.require("workflows:write")?;
    checked(&st, &caller.tenant_id, &body.value).await?;
    let now = st.clock.now_ms();
    let w = workflow_record(&caller.tenant_id, epistle_core::ids::new_id("wfl"), &body.value, now, now);
    st.store.create_workflow(&w).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&w))).into_response())
}

/// `PUT /v1/workflows/{id}`: replaces the definition; runs under way go on
/// from the step they are at, by its position.
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: ApiJson<WorkflowSpec>,
) -> Result<Response, ApiError> {
    caller.require("workflows:write")?;
    let Some(old) = st.store.workflow(&caller.tenant_id, &id).await? else {
        return Err(ApiError::not_found("workflow"));
    };
    checked(&st, &caller.tenant_id, &body.value).await?;
    let w = workflow_record(&caller.tenant_id, id, &body.value, old.created_at, st.clock.now_ms());
    if !st.store.update_workflow(&w).await? {
        return Err(ApiError::not_found("workflow"));
    }
    Ok(axum::Json(view(&w)).into_response())
}

/// `GET /v1/workflows`
pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("workflows:read")?;
    let all = st.store.workflows(&caller.tenant_id).await?;
    Ok(axum::Json(json!({"data": all.iter().map(view).collect::<Vec<_>>()})).into_response())
}

/// `GET /v1/workflows/{id}`
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("workflows:read")?;
    match st.store.workflow(&caller.tenant_id, &id).await? {
        Some(w) => Ok(axum::Json(view(&w)).into_response()),
        None => Err(ApiError::not_found("workflow")),
    }
}

/// `DELETE /v1/workflows/{id}`: runs under way fail at their next step.
pub async fn delete(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.require("workflows:write")?;
    if !st.store.delete_workflow(&caller.tenant_id, &id).await? {
        return Err(ApiError::not_found("workflow"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

const RUN_STATUSES: [&str; 4] = ["waiting", "completed", "exited", "failed"];

/// `GET /v1/workflows/{id}/runs?status=&limit=&cursor=`, newest first.
pub async fn runs(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require("workflows:read")?;
    const KNOWN: [&str; 3] = ["status", "limit", "cursor"];
    if let Some(k) = q.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(k.clone(), format!("unknown query parameter `{k}`; use {}", KNOWN.join(", "))));
    }
    let status = q.get("status").map(String::as_str);
    if let Some(s) = status
        && !RUN_STATUSES.contains(&s)
    {
        return Err(ApiError::invalid("status", format!("`status` is one of {}", RUN_STATUSES.join(", "))));
    }
    let Some(w) = st.store.workflow(&caller.tenant_id, &id).await? else {
        return Err(ApiError::not_found("workflow"));
    };
    let spec: Option<WorkflowSpec> = serde_json::from_value(w.spec).ok();
    let limit = crate::paging::limit(&q)?;
    let before = crate::paging::cursor(&q)?;
    let rows = st.store.workflow_runs(&caller.tenant_id, &id, status, before, limit).await?;
    let next = crate::paging::next_cursor(&rows, limit, |r| (r.created_at, r.id.as_str()));
    let data: Vec<Value> = rows.iter().map(|r| run_view(r, spec.as_ref())).collect();
    Ok(axum::Json(json!({"data": data, "next_cursor": next})).into_response())
}

/// `GET /v1/workflows/{id}/runs/{run}`
pub async fn run(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require("workflows:read")?;
    let run = st.store.workflow_run(&caller.tenant_id, &run_id).await?.filter(|r| r.workflow_id == id);
    let Some(run) = run else { return Err(ApiError::not_found("workflow run")) };
    let spec = st.store.workflow(&caller.tenant_id, &id).await?.and_then(|w| serde_json::from_value(w.spec).ok());
    Ok(axum::Json(run_view(&run, spec.as_ref())).into_response())
}
