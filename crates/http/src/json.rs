//! JSON request bodies with errors in the API's shape: malformed JSON is a
//! 400, a well-formed body of the wrong shape a 422 naming the field, a
//! body over the limit a 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The raw body (for idempotency hashing) and its parsed value.
pub struct ApiJson<T> {
    pub value: T,
    pub bytes: Bytes,
}

pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if let Some(ct) = req.headers().get(axum::http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send JSON with `Content-Type: application/json`, not `{ct}`"),
            ));
        }
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts (limits.max_request_bytes); \
                 send fewer messages per batch or smaller attachments",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                format!("cannot read the request body: {rejection}"),
            )
        }
    })
}

/// Parses JSON, turning serde's errors into the API's.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, (String, serde_json::Error)> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|_| v).map_err(|e| (String::new(), e)));
    result.map_err(|(path, e)| {
        // A body that is not JSON at all is a 400 whatever else is wrong
        // with it; checked only on this error path.
        if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            return json_error(String::new(), syntax);
        }
        json_error(path, e)
    })
}

/// Deserializes an already-parsed JSON value (a batch item).
pub fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| json_error(e.path().to_string(), e.into_inner()))
}

fn json_error(path: String, e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
        }
        Category::Data => {
            let msg = e.to_string();
            // serde's own text, without the position suffix that means
            // nothing to a caller who sent a value, not a file.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            let mut field = if path == "." || path.is_empty() { None } else { Some(path) };
            // serde reports a missing field at its parent; name the field itself.
            if let Some(name) = msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                field = Some(match field {
                    Some(parent) => format!("{parent}.{name}"),
                    None => name.to_string(),
                });
            }
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                match &field {
                    Some(f) => format!("`{f}`: {msg}"),
                    None => msg,
                },
            );
            err.field = field;
            err
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        let value = parse(&bytes)?;
        Ok(Self { value, bytes })
    }
}
