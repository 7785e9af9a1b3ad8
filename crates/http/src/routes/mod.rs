//! The router: one module per area.

pub mod domains;
pub mod events;
pub mod health;
pub mod hooks;
pub mod messages;
pub mod rules;
pub mod stats;
pub mod suppressions;
pub mod templates;
pub mod tracking;
pub mod transports;
pub mod ui;
pub mod unsubscribe;
pub mod webhooks;
pub mod workflows;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_request_bytes;
    Router::new()
        .route("/v1/messages", post(messages::send).get(messages::list))
        .route("/v1/messages/batch", post(messages::send_batch))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/messages/{id}/raw", get(messages::raw))
        .route("/v1/messages/{id}/cancel", post(messages::cancel))
        .route("/v1/domains", post(domains::create).get(domains::list))
        .route("/v1/domains/{name}", get(domains::get).delete(domains::delete))
        .route("/v1/domains/{name}/verify", post(domains::verify))
        .route("/v1/domains/{name}/rotate", post(domains::rotate))
        .route("/v1/domains/{name}/keys/{selector}", axum::routing::delete(domains::delete_key))
        .route("/v1/templates", post(templates::create).get(templates::list))
        .route("/v1/templates/{name}", get(templates::get).put(templates::update).delete(templates::delete))
        .route("/v1/templates/{name}/preview", post(templates::preview))
        .route("/v1/templates/{name}/test", post(templates::test_send))
        .route("/v1/brand", get(templates::get_brand).put(templates::put_brand))
        .route("/v1/transports", get(transports::list))
        .route("/v1/suppressions", get(suppressions::list).post(suppressions::create))
        .route("/v1/suppressions/{email}", axum::routing::delete(suppressions::delete))
        .route("/v1/settings", get(suppressions::get_settings).put(suppressions::put_settings))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/events/stream", get(webhooks::stream))
        .route("/v1/events", post(events::create))
        .route("/v1/events/{id}", get(events::get))
        .route("/v1/dead-letters", get(events::dead_letters))
        .route("/v1/rules", post(rules::create).get(rules::list))
        .route("/v1/rules/{id}", get(rules::get).put(rules::update).delete(rules::delete))
        .route("/v1/workflows", post(workflows::create).get(workflows::list))
        .route("/v1/workflows/{id}", get(workflows::get).put(workflows::update).delete(workflows::delete))
        .route("/v1/workflows/{id}/runs", get(workflows::runs))
        .route("/v1/workflows/{id}/runs/{run}", get(workflows::run))
        .route("/t/o/{token}", get(tracking::open))
        .route("/t/c/{token}", get(tracking::click))
        .route("/u/{token}", get(unsubscribe::show).post(unsubscribe::post))
        .route("/hooks/ses", post(hooks::ses))
        .route("/hooks/mailgun", post(hooks::mailgun))
        .route("/hooks/sendgrid", post(hooks::sendgrid))
        .route("/hooks/postmark", post(hooks::postmark))
        .route("/v1/stats/costs", get(stats::costs))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(ui::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see docs/api.md for the list")
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see docs/api.md",
    )
}
