//! The one way errors leave the API:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no {what} with that id in this tenant"))
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "something went wrong on our side; it has been logged. Retry, and if it persists check the server log",
        )
    }
    pub fn unavailable(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database did not answer; nothing was accepted. Retry with the same Idempotency-Key",
        )
    }

    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            e["field"] = json!(f);
        }
        json!({ "error": e })
    }
}

impl From<epistle_store::StoreError> for ApiError {
    fn from(e: epistle_store::StoreError) -> Self {
        ApiError::from(&e)
    }
}

impl From<std::sync::Arc<epistle_store::StoreError>> for ApiError {
    fn from(e: std::sync::Arc<epistle_store::StoreError>) -> Self {
        ApiError::from(&*e)
    }
}

impl From<&epistle_store::StoreError> for ApiError {
    fn from(e: &epistle_store::StoreError) -> Self {
        match e {
            e if e.is_unavailable() => ApiError::unavailable(e),
            epistle_store::StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m.clone()),
            _ => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}
