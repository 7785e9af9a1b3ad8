//! Bearer authentication: `Authorization: Bearer ep_…` (keys are made and
//! hashed in `epistle_core::apikey`).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
pub use epistle_core::apikey::{generate_api_key, hash_api_key};

use crate::error::ApiError;
use crate::state::AppState;

/// The caller, once their key checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub tenant_name: String,
    pub scopes: Vec<String>,
}

impl Caller {
    /// Scopes are `resource:action` (`messages:send`, `messages:read`);
    /// `*` and `resource:*` grant more.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if epistle_core::apikey::scope_allows(&self.scopes, scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_scope",
                format!(
                    "this API key lacks the `{scope}` scope; create one with `epistle keys create --scopes {scope}`"
                ),
            ))
        }
    }
}

pub async fn caller_for_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let rec = state.store.find_api_key(&hash_api_key(key)).await?;
    match rec {
        Some(r) => Ok(Caller { tenant_id: r.tenant_id, tenant_name: r.tenant_name, scopes: r.scopes }),
        None => Err(unauthorized("this API key is not known (revoked, or from another server)")),
    }
}

fn unauthorized(why: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("send your API key as `Authorization: Bearer <key>`"))?;
        let value = header.to_str().map_err(|_| unauthorized("the Authorization header is not readable text"))?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("use `Authorization: Bearer <key>`"))?;
        caller_for_key(state, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let c = Caller { tenant_id: "t".into(), tenant_name: "d".into(), scopes: vec!["messages:read".into()] };
        assert!(c.require("messages:read").is_ok());
        assert_eq!(c.require("messages:send").unwrap_err().status, StatusCode::FORBIDDEN);
        let all = Caller { scopes: vec!["messages:*".into()], ..c.clone() };
        assert!(all.require("messages:send").is_ok());
        let root = Caller { scopes: vec!["*".into()], ..c };
        assert!(root.require("anything:at_all").is_ok());
    }
}
