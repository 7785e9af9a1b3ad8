//! Templates: `POST /v1/templates`, `GET /v1/templates`,
//! `GET|PUT|DELETE /v1/templates/{name}` (`GET ?version=N` for an older
//! version), `POST /v1/templates/{name}/preview` and `…/test`.
//!
//! Each tenant's active templates are compiled once into an
//! [`epistle_render::Library`] and kept until one of them changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use epistle_core::timefmt::rfc3339;
use epistle_render::{Library, RenderError, Rendered, Source};
use epistle_store::{NewTemplateVersion, Store, TemplateVersion};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

/// Compiled libraries by tenant, with the stamp they were built at.
#[derive(Default)]
pub struct TemplateCache {
    libraries: Mutex<HashMap<String, (i64, Arc<Library>)>>,
}

impl std::fmt::Debug for TemplateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateCache")
    }
}

fn source_of(v: &TemplateVersion) -> Source {
    Source { subject: v.subject.clone(), html: v.html.clone(), text: v.text.clone() }
}

impl TemplateCache {
    /// The tenant's library, rebuilt only when a template changed (one
    /// small query to tell).
    pub async fn library(&self, store: &Store, tenant_id: &str) -> Result<Arc<Library>, ApiError> {
        let stamp = store.templates_stamp(tenant_id).await?;
        if let Some((s, lib)) = self.libraries.lock().unwrap_or_else(|p| p.into_inner()).get(tenant_id)
            && *s == stamp
        {
            return Ok(lib.clone());
        }
        let (versions, stamp) = store.active_templates(tenant_id).await?;
        let lib = Arc::new(Library::new(versions.iter().map(|v| (v.name.clone(), source_of(v))).collect()));
        self.libraries.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant_id.to_string(), (stamp, lib.clone()));
        Ok(lib)
    }
}

/// A render error as the API's 422, naming template, part and line.
pub fn render_error(field: &str, e: &RenderError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "template_error", e.to_string()).field(field)
}

/// Renders `name` (its active version, or `version`) for a message.
/// Returns the parts and the version used.
pub async fn render_for_message(
    st: &AppState,
    tenant_id: &str,
    name: &str,
    version: Option<i64>,
    data: &Value,
) -> Result<(Rendered, i64), ApiError> {
    let v = st.store.template_version(tenant_id, name, version).await?.ok_or_else(|| match version {
        Some(n) => ApiError::invalid("template_version", format!("template `{name}` has no version {n}")),
        None => ApiError::invalid("template", format!("no template `{name}` in this tenant; see GET /v1/templates")),
    })?;
    let lib = st.templates.library(&st.store, tenant_id).await?;
    let rendered = match version {
        None => lib.render(name, data),
        Some(_) => lib.render_source(name, &source_of(&v), data),
    }
    .map_err(|e| render_error("data", &e))?;
    Ok((rendered, v.version))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateIn {
    #[serde(default)]
    name: Option<String>,
    subject: String,
    html: Option<String>,
    mjml: Option<String>,
    text: Option<String>,
    #[serde(default)]
    sample_data: Option<serde_json::Map<String, Value>>,
    category: Option<String>,
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid("name", "a template name is 1–64 of a-z, 0-9, `-` and `_`, e.g. `order-confirmation`"))
    }
}

fn version_in(t: TemplateIn) -> Result<NewTemplateVersion, ApiError> {
    if t.mjml.is_some() {
        return Err(ApiError::invalid("mjml", "MJML templates are not supported yet; give `html` (and `text`)"));
    }
    if t.html.as_deref().is_none_or(str::is_empty) && t.text.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("html", "give a body: `html`, `text` or both"));
    }
    if t.subject.trim().is_empty() {
        return Err(ApiError::invalid("subject", "`subject` is required"));
    }
    let source = Source { subject: t.subject.clone(), html: t.html.clone(), text: t.text.clone() };
    epistle_render::check(t.name.as_deref().unwrap_or("template"), &source).map_err(|e| {
        let field = match e.part.as_str() {
            "subject" => "subject",
            "html" => "html",
            _ => "text",
        };
        render_error(field, &e)
    })?;
    Ok(NewTemplateVersion {
        subject: t.subject,
        html: t.html.filter(|h| !h.is_empty()),
        text: t.text.filter(|h| !h.is_empty()),
        sample_data: Value::Object(t.sample_data.unwrap_or_default()).to_string(),
        category: t.category,
    })
}

fn version_view(v: &TemplateVersion, active: i64, category: Option<&str>) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "active_version": active,
        "active": v.version == active,
        "category": category,
        "subject": v.subject,
        "html": v.html,
        "text": v.text,
        "sample_data": serde_json::from_str::<Value>(&v.sample_data).unwrap_or(json!({})),
        "uses": v.uses,
        "created_at": rfc3339(v.created_at),
    })
}

async fn view(st: &AppState, tenant_id: &str, name: &str, version: Option<i64>) -> Result<Value, ApiError> {
    let list = st.store.list_templates(tenant_id).await?;
    let t = list.iter().find(|t| t.name == name).ok_or_else(|| not_found(name))?;
    let v = st.store.template_version(tenant_id, name, version).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("template `{name}` has no version {}", version.unwrap_or(0)),
        )
    })?;
    let mut out = version_view(&v, t.active_version, t.category.as_deref());
    let versions = st.store.template_versions(tenant_id, name).await?;
    out["versions"] = Value::Array(
        versions
            .iter()
            .map(|x| json!({"version": x.version, "uses": x.uses, "created_at": rfc3339(x.created_at)}))
            .collect(),
    );
    Ok(out)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no template `{name}` in this tenant"))
}

pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson { value: body, .. }: ApiJson<TemplateIn>,
) -> Result<Response, ApiError> {
    caller.require("templates:write")?;
    let name = body.name.clone().ok_or_else(|| ApiError::invalid("name", "`name` is required"))?;
    valid_name(&name)?;
    let v = version_in(body)?;
    match st.store.save_template(&caller.tenant_id, &name, &v, true, st.clock.now_ms()).await? {
        Some(_) => {
            Ok((StatusCode::CREATED, axum::Json(view(&st, &caller.tenant_id, &name, None).await?)).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("template `{name}` exists; PUT /v1/templates/{name} makes a new version"),
        )),
    }
}

pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson { value: body, .. }: ApiJson<TemplateIn>,
) -> Result<Response, ApiError> {
    caller.require("templates:write")?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid(
            "name",
            "the name in the body differs from the one in the path; templates cannot be renamed",
        ));
    }
    let v = version_in(TemplateIn { name: Some(name.clone()), ..body })?;
    match st.store.save_template(&caller.tenant_id, &name, &v, false, st.clock.now_ms()).await? {
        Some(_) => Ok(axum::Json(view(&st, &caller.tenant_id, &name, None).await?).into_response()),
        None => Err(not_found(&name)),
    }
}

pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("templates:read")?;
    let data: Vec<Value> = st
        .store
        .list_templates(&caller.tenant_id)
        .await?
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "active_version": t.active_version,
                "category": t.category,
                "uses": t.uses,
                "created_at": rfc3339(t.created_at),
                "updated_at": rfc3339(t.updated_at),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct VersionQuery {
    version: Option<i64>,
}

pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ApiError> {
    caller.require("templates:read")?;
    Ok(axum::Json(view(&st, &caller.tenant_id, &name, q.version).await?).into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require("templates:write")?;
    if st.store.delete_template(&caller.tenant_id, &name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    data: Option<serde_json::Map<String, Value>>,
    version: Option<i64>,
}

/// The data to render with: the request's, or the version's sample data.
fn data_or_sample(data: Option<serde_json::Map<String, Value>>, v: &TemplateVersion) -> Value {
    match data {
        Some(d) => Value::Object(d),
        None => serde_json::from_str(&v.sample_data).unwrap_or(json!({})),
    }
}

pub async fn preview(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson { value: body, .. }: ApiJson<PreviewIn>,
) -> Result<Response, ApiError> {
    caller.require("templates:read")?;
    let v = st.store.template_version(&caller.tenant_id, &name, body.version).await?.ok_or_else(|| not_found(&name))?;
    let data = data_or_sample(body.data, &v);
    let (rendered, _) = render_for_message(&st, &caller.tenant_id, &name, body.version, &data).await?;
    Ok(axum::Json(rendered).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestIn {
    to: String,
    from: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
    version: Option<i64>,
}

/// Sends one message rendered from the template (sample data unless
/// `data` is given), tagged `template-test`.
pub async fn test_send(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson { value: body, .. }: ApiJson<TestIn>,
) -> Result<Response, ApiError> {
    caller.require("messages:send")?;
    let v = st.store.template_version(&caller.tenant_id, &name, body.version).await?.ok_or_else(|| not_found(&name))?;
    let data = data_or_sample(body.data, &v);
    let from = body.from.unwrap_or_else(|| "Epistle <epistle@localhost.localdomain>".into());
    let req = serde_json::from_value::<crate::wire::SendRequest>(json!({
        "from": from,
        "to": body.to,
        "template": name,
        "template_version": body.version,
        "data": data,
        "tags": ["template-test"],
    }))
    .map_err(|e| ApiError::invalid("to", e.to_string()))?;
    super::messages::accept_one(&st, &caller, req, None).await
}
