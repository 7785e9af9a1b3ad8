//! Sending domains: `POST /v1/domains`, `GET /v1/domains`,
//! `GET|DELETE /v1/domains/{name}`, `POST /v1/domains/{name}/verify`,
//! `POST /v1/domains/{name}/rotate`,
//! `DELETE /v1/domains/{name}/keys/{selector}` (a retired key).

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use epistle_deliver::domains::{DomainError, Domains};
use epistle_mail::dkim::Algorithm;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::{ApiJson, parse, read_body};
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DkimRequest {
    #[serde(default)]
    algorithms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDomain {
    name: String,
    #[serde(default)]
    dkim: Option<DkimRequest>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    algorithm: Option<String>,
    /// Sign with the new key at once instead of when verify sees its record.
    #[serde(default)]
    immediate: bool,
}

fn domains(st: &AppState) -> Result<&Domains, ApiError> {
    st.domains.as_deref().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "sending domains are not set up on this server")
    })
}

fn algorithm(field: &str, s: &str) -> Result<Algorithm, ApiError> {
    s.parse().map_err(|e: String| ApiError::invalid(field, e))
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidName(_) => ApiError::invalid("name", e.to_string()),
            DomainError::Exists(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            DomainError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            DomainError::Key(m) => ApiError::internal(m),
            DomainError::Store(s) => ApiError::from(s),
        }
    }
}

pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson { value: body, .. }: ApiJson<CreateDomain>,
) -> Result<Response, ApiError> {
    caller.require("domains:write")?;
    let mut algs = Vec::new();
    for (i, a) in body.dkim.unwrap_or_default().algorithms.iter().enumerate() {
        algs.push(algorithm(&format!("dkim.algorithms[{i}]"), a)?);
    }
    let view = domains(&st)?.add(&caller.tenant_id, &body.name, &algs, st.clock.now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

pub async fn list(State(st): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require("domains:read")?;
    let data = domains(&st)?.list(&caller.tenant_id).await?;
    Ok(axum::Json(json!({ "data": data })).into_response())
}

pub async fn get(State(st): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    caller.require("domains:read")?;
    match domains(&st)?.get(&caller.tenant_id, &name).await? {
        Some(v) => Ok(axum::Json(v).into_response()),
        None => Err(DomainError::NotFound(name).into()),
    }
}

pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require("domains:write")?;
    if domains(&st)?.delete(&caller.tenant_id, &name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(DomainError::NotFound(name).into())
    }
}

pub async fn verify(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require("domains:write")?;
    let view = domains(&st)?.verify(&caller.tenant_id, &name, st.clock.now_ms()).await?;
    Ok(axum::Json(view).into_response())
}

pub async fn rotate(
    State(st): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require("domains:write")?;
    // The body is optional: no body rotates every algorithm that signs.
    let bytes = read_body(req, &st).await?;
    let body: Rotate = if bytes.iter().all(u8::is_ascii_whitespace) { Rotate::default() } else { parse(&bytes)? };
    let alg = body.algorithm.as_deref().map(|a| algorithm("algorithm", a)).transpose()?;
    let view = domains(&st)?.rotate(&caller.tenant_id, &name, alg, body.immediate, st.clock.now_ms()).await?;
    Ok(axum::Json(view).into_response())
}

pub async fn delete_key(
    State(st): State<AppState>,
    caller: Caller,
    Path((name, selector)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require("domains:write")?;
    let d = domains(&st)?;
    if d.get(&caller.tenant_id, &name).await?.is_none() {
        return Err(DomainError::NotFound(name).into());
    }
    if d.remove_key(&caller.tenant_id, &name, &selector).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("no retired key `{selector}` on {name}: only a key replaced by POST …/rotate can be removed"),
        ))
    }
}
