//! Open pixels (`GET /t/o/{token}`) and tracked links (`GET /t/c/{token}`).
//!
//! Both answer from the token alone (no database read): the pixel at once,
//! the link with a 302 to the address the token carries, which is the one
//! in the mail and nothing else. A token that does not verify is a 404,
//! so these endpoints can never be used as an open redirect. The event is
//! queued for the recorder, which writes in batches.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use epistle_core::token::{Token, TokenKind, flags};
use epistle_store::Engagement;

use crate::state::AppState;

/// A transparent 1×1 GIF.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "This link is not valid.\n")
        .into_response()
}

fn client_ip(req: &Request) -> Option<String> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

fn event(
    st: &AppState,
    t: &Token,
    kind: &'static str,
    headers: &HeaderMap,
    head: bool,
    ip: Option<String>,
) -> Engagement {
    let now = st.clock.now_ms();
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect::<String>();
    let age = now / 1000 - i64::from(t.issued);
    let reason = crate::feedback::machine_reason(&ua, head, age, kind == "clicked");
    let mut data = serde_json::json!({"user_agent": ua, "machine": reason.is_some()});
    if let Some(r) = reason {
        data["machine_reason"] = serde_json::json!(r);
    }
    if let Some(url) = &t.url {
        data["url"] = serde_json::json!(url);
    }
    if t.flags & flags::STORE_IP != 0
        && let Some(ip) = ip
    {
        data["ip"] = serde_json::json!(ip);
    }
    Engagement { recipient_id: t.recipient_id(), kind, detail: t.url.clone(), data: Some(data.to_string()), at: now }
}

/// `GET /t/o/{token}`: the pixel.
pub async fn open(State(st): State<AppState>, Path(token): Path<String>, method: Method, req: Request) -> Response {
    let Some(fb) = st.feedback.clone() else { return not_found() };
    let Some(t) = fb.key.open(&token, TokenKind::Open) else { return not_found() };
    let e = event(&st, &t, "opened", req.headers(), method == Method::HEAD, client_ip(&req));
    fb.record(e).await;
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, no-cache, must-revalidate, max-age=0"),
        ],
        GIF,
    )
        .into_response()
}

/// `GET /t/c/{token}`: records the click, then 302 to the link's address.
pub async fn click(State(st): State<AppState>, Path(token): Path<String>, method: Method, req: Request) -> Response {
    let Some(fb) = st.feedback.clone() else { return not_found() };
    let Some(t) = fb.key.open(&token, TokenKind::Click) else { return not_found() };
    let Some(url) = t.url.clone() else { return not_found() };
    let Ok(location) = header::HeaderValue::from_str(&url) else { return not_found() };
    let e = event(&st, &t, "clicked", req.headers(), method == Method::HEAD, client_ip(&req));
    fb.record(e).await;
    let no_store = header::HeaderValue::from_static("no-store");
    (StatusCode::FOUND, [(header::LOCATION, location), (header::CACHE_CONTROL, no_store)]).into_response()
}
