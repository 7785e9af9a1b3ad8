//! Epistle's HTTP surface: API v1 (`/v1/...`), health (`/healthz`,
//! `/readyz`, `/metrics`) and the web pages (`/`).
//!
//! Wire types live in [`wire`], apart from the domain types; every error
//! leaves through [`error::ApiError`] as the JSON error of the API contract.

pub mod auth;
pub mod cron;
pub mod error;
pub mod feedback;
pub mod json;
pub mod paging;
pub mod routes;
pub mod rules;
pub mod state;
pub mod validate;
pub mod wire;
pub mod workflows;

pub use auth::{generate_api_key, hash_api_key};
pub use routes::router;
pub use state::{AppState, HttpSettings};
