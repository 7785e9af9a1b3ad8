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
use epistle_render::builtin::{builtin, builtins};
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
    source(&v.subject, &v.html, &v.text, &v.mjml, &v.preheader)
}

fn source(
    subject: &str,
    html: &Option<String>,
    text: &Option<String>,
    mjml: &Option<String>,
    preheader: &Option<String>,
) -> Source {
    Source {
        subject: subject.to_string(),
        html: html.clone(),
        text: text.clone(),
        mjml: mjml.clone(),
        preheader: preheader.clone(),
    }
}

/// The tenant's brand, given to every template as `brand` (unless the
/// data has its own `brand`).
async fn with_brand(st: &AppState, tenant_id: &str, data: &Value) -> Result<Value, ApiError> {
    let mut data = data.clone();
    if let Some(obj) = data.as_object_mut()
        && !obj.contains_key("brand")
    {
        let brand = st.store.brand(tenant_id).await?;
        let brand: Value = brand.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(json!({}));
        obj.insert("brand".into(), brand);
    }
    Ok(data)
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
        let own = versions.iter().map(|v| (v.name.clone(), source_of(v))).collect();
        let lib = Arc::new(Library::new(epistle_render::builtin::with_builtins(own)));
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
    let stored = st.store.template_version(tenant_id, name, version).await?;
    let (source, used) = match (stored, version) {
        (Some(v), _) => (source_of(&v), v.version),
        // A built-in the tenant has not replaced: version 0, not counted.
        (None, None) if builtin(name).is_some() => (Source::default(), 0),
        (None, Some(n)) => {
            return Err(ApiError::invalid("template_version", format!("template `{name}` has no version {n}")));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "template",
                format!("no template `{name}` in this tenant; see GET /v1/templates"),
            ));
        }
    };
    let lib = st.templates.library(&st.store, tenant_id).await?;
    let data = with_brand(st, tenant_id, data).await?;
    let source = version.map(|_| source);
    let name = name.to_string();
    let rendered = off_runtime(move || match &source {
        None => lib.render(&name, &data),
        Some(src) => lib.render_source(&name, src, &data),
    })
    .await?
    .map_err(|e| render_error("data", &e))?;
    Ok((rendered, used))
}

/// Rendering is CPU work (MiniJinja, MJML, CSS inlining): it runs on the
/// blocking pool, not on the threads that serve requests.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

/// The data to render with: the request's, else the sample data of the
/// stored version or of the built-in.
async fn data_or_sample(
    st: &AppState,
    tenant_id: &str,
    name: &str,
    version: Option<i64>,
    data: Option<serde_json::Map<String, Value>>,
) -> Result<Value, ApiError> {
    if let Some(d) = data {
        return Ok(Value::Object(d));
    }
    match st.store.template_version(tenant_id, name, version).await? {
        Some(v) => Ok(serde_json::from_str(&v.sample_data).unwrap_or(json!({}))),
        None if version.is_none() => builtin(name).map(|b| b.sample_data.clone()).ok_or_else(|| not_found(name)),
        None => Err(not_found(name)),
    }
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
    preheader: Option<String>,
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
    let given = |p: &Option<String>| p.as_deref().is_some_and(|s| !s.is_empty());
    if !given(&t.html) && !given(&t.text) && !given(&t.mjml) {
        return Err(ApiError::invalid("html", "give a body: `html` or `mjml`, and/or `text`"));
    }
    if given(&t.html) && given(&t.mjml) {
        return Err(ApiError::invalid("mjml", "give either `html` or `mjml`, not both"));
    }
    if t.subject.trim().is_empty() {
        return Err(ApiError::invalid("subject", "`subject` is required"));
    }
    let nonempty = |p: Option<String>| p.filter(|s| !s.is_empty());
    let v = NewTemplateVersion {
        subject: t.subject,
        html: nonempty(t.html),
        text: nonempty(t.text),
        mjml: nonempty(t.mjml),
        preheader: nonempty(t.preheader),
        sample_data: Value::Object(t.sample_data.unwrap_or_default()).to_string(),
        category: t.category,
    };
    epistle_render::check(t.name.as_deref().unwrap_or("template"), &source_new(&v)).map_err(|e| {
        let field = if e.part == "text" { "text".to_string() } else { e.part.clone() };
        render_error(&field, &e)
    })?;
    Ok(v)
}

fn source_new(v: &NewTemplateVersion) -> Source {
    source(&v.subject, &v.html, &v.text, &v.mjml, &v.preheader)
}

/// A template that cannot render its own sample data is refused when saved.
async fn try_sample(st: &AppState, tenant_id: &str, name: &str, v: &NewTemplateVersion) -> Result<(), ApiError> {
    let sample: Value = serde_json::from_str(&v.sample_data).unwrap_or(json!({}));
    if sample.as_object().is_none_or(|o| o.is_empty()) {
        return Ok(());
    }
    let lib = st.templates.library(&st.store, tenant_id).await?;
    let data = with_brand(st, tenant_id, &sample).await?;
    let (name, source) = (name.to_string(), source_new(v));
    off_runtime(move || lib.render_source(&name, &source, &data))
        .await?
        .map(|_| ())
        .map_err(|e| render_error("sample_data", &e))
}

fn version_view(v: &TemplateVersion, active: i64, category: Option<&str>) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "active_version": active,
        "active": v.version == active,
        "category": category,
        "subject": v.subject,
        "preheader": v.preheader,
        "html": v.html,
        "mjml": v.mjml,
        "text": v.text,
        "sample_data": serde_json::from_str::<Value>(&v.sample_data).unwrap_or(json!({})),
        "uses": v.uses,
        "builtin": false,
        "replaces_builtin": builtin(&v.name).is_some(),
        "created_at": rfc3339(v.created_at),
    })
}

fn builtin_view(b: &epistle_render::builtin::Builtin) -> Value {
    json!({
        "name": b.name,
        "builtin": true,
        "version": 0,
        "active_version": 0,
        "active": true,
        "category": b.category,
        "subject": b.source.subject,
        "mjml": b.source.mjml,
        "text": b.source.text,
        "sample_data": b.sample_data,
    })
}

async fn view(st: &AppState, tenant_id: &str, name: &str, version: Option<i64>) -> Result<Value, ApiError> {
    let list = st.store.list_templates(tenant_id).await?;
    let Some(t) = list.iter().find(|t| t.name == name) else {
        return match (builtin(name), version) {
            (Some(b), None | Some(0)) => Ok(builtin_view(b)),
            _ => Err(not_found(name)),
        };
    };
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
    try_sample(&st, &caller.tenant_id, &name, &v).await?;
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
    try_sample(&st, &caller.tenant_id, &name, &v).await?;
    let now = st.clock.now_ms();
    let saved = match st.store.save_template(&caller.tenant_id, &name, &v, false, now).await? {
        // The first version of the tenant's own copy of a built-in.
        None if builtin(&name).is_some() => st.store.save_template(&caller.tenant_id, &name, &v, true, now).await?,
        other => other,
    };
    match saved {
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
                "builtin": false,
                "created_at": rfc3339(t.created_at),
                "updated_at": rfc3339(t.updated_at),
            })
        })
        .collect();
    let mut data = data;
    for b in builtins() {
        if !data.iter().any(|d| d["name"] == b.name) {
            data.push(
                json!({"name": b.name, "active_version": 0, "category": b.category, "uses": null, "builtin": true}),
            );
        }
    }
    data.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
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
    } else if builtin(&name).is_some() {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("`{name}` is built in and cannot be deleted; PUT replaces it with your own version"),
        ))
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

pub async fn preview(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson { value: body, .. }: ApiJson<PreviewIn>,
) -> Result<Response, ApiError> {
    caller.require("templates:read")?;
    let data = data_or_sample(&st, &caller.tenant_id, &name, body.version, body.data).await?;
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
    let data = data_or_sample(&st, &caller.tenant_id, &name, body.version, body.data).await?;
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

/// `GET /v1/brand`: the tenant's brand, given to templates as `brand`.
pub async fn get_brand(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("templates:read")?;
    let brand = st.store.brand(&caller.tenant_id).await?;
    let v: Value = brand.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(json!({}));
    Ok(axum::Json(v).into_response())
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrandIn {
    #[serde(skip_serializing_if = "Option::is_none")]
    company_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    website_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accent_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_color: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    background_color: Option<String>,
    /// The postal address a legal footer shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    postal_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    support_email: Option<String>,
}

/// `PUT /v1/brand`: replaces the brand.
pub async fn put_brand(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson { value: b, .. }: ApiJson<BrandIn>,
) -> Result<Response, ApiError> {
    caller.require("templates:write")?;
    for (field, v) in [("logo_url", &b.logo_url), ("website_url", &b.website_url)] {
        if let Some(u) = v
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(ApiError::invalid(field, format!("`{field}` must be an http(s) URL")));
        }
    }
    for (field, v) in [
        ("primary_color", &b.primary_color),
        ("accent_color", &b.accent_color),
        ("text_color", &b.text_color),
        ("background_color", &b.background_color),
    ] {
        if let Some(c) = v
            && !(c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|x| x.is_ascii_hexdigit()))
        {
            return Err(ApiError::invalid(field, format!("`{field}` must be a colour like #1f6feb")));
        }
    }
    if let Some(e) = &b.support_email {
        epistle_core::EmailAddress::parse(e).map_err(|err| ApiError::invalid("support_email", err.to_string()))?;
    }
    let json = serde_json::to_string(&b).map_err(ApiError::internal)?;
    st.store.set_brand(&caller.tenant_id, &json, st.clock.now_ms()).await?;
    Ok(axum::Json(serde_json::from_str::<Value>(&json).unwrap_or_default()).into_response())
}
