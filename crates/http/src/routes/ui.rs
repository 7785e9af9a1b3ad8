//! The small web page at `/`: recent messages of the signed-in tenant, and
//! one message (headers, text, rendered HTML in a sandboxed frame). Sign-in
//! is the API key, kept in an HttpOnly, SameSite=Strict cookie.

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use epistle_core::{summarize, timefmt};
use epistle_store::ListFilter;
use serde::Deserialize;

use crate::auth::{Caller, caller_for_key};
use crate::state::AppState;

const COOKIE: &str = "epistle_key";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/messages/{id}", get(show))
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str, signed_in: bool) -> Response {
    let signout =
        if signed_in { r#"<form method="post" action="/ui/logout"><button>Sign out</button></form>"# } else { "" };
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Epistle</title>
<style>
body{{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}}
header{{background:#1d2433;color:#fff;padding:.7rem 1.5rem;display:flex;justify-content:space-between;align-items:center}}
header a{{color:#fff;text-decoration:none;font-weight:600}} main{{max-width:1100px;margin:1.5rem auto;padding:0 1rem}}
table{{width:100%;border-collapse:collapse;background:#fff;border-radius:8px;overflow:hidden}}
th,td{{text-align:left;padding:.55rem .8rem;border-bottom:1px solid #e6e8ec;vertical-align:top}} th{{background:#eef0f4;font-size:13px}}
.s{{display:inline-block;padding:0 .5rem;border-radius:9px;font-size:12px;background:#e6e8ec}}
.sent,.delivered{{background:#d8f3e3}} .bounced,.failed,.complained{{background:#fbdcdc}} .deferred{{background:#fdf0cc}}
pre{{background:#fff;padding:1rem;border-radius:8px;overflow:auto;white-space:pre-wrap}} iframe{{width:100%;height:600px;border:1px solid #e6e8ec;border-radius:8px;background:#fff}}
.card{{background:#fff;padding:1.5rem;border-radius:8px;max-width:480px;margin:3rem auto}} input[type=password]{{width:100%;padding:.5rem;font:inherit}}
button{{padding:.45rem 1rem;font:inherit;cursor:pointer}} .muted{{color:#667}} .when{{white-space:nowrap}}
</style></head><body><header><a href="/">Epistle</a>{signout}</header><main>{body}</main></body></html>"#
    );
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-src 'self'; form-action 'self'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        Html(html),
    )
        .into_response()
}

fn login_page(error: Option<&str>) -> Response {
    let err = error.map(|e| format!("<p style=\"color:#b00\">{}</p>", esc(e))).unwrap_or_default();
    page(
        "Sign in",
        &format!(
            r#"<div class="card"><h2>Sign in</h2>{err}<p class="muted">Paste an API key. The first one was printed when the server first started
(or create one with <code>epistle keys create --tenant default</code>).</p>
<form method="post" action="/ui/login"><input type="password" name="key" placeholder="ep_…" autofocus required>
<p><button>Sign in</button></p></form></div>"#
        ),
        false,
    )
}

async fn caller_from_cookie(st: &AppState, headers: &HeaderMap) -> Option<Caller> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let key =
        cookies.split(';').filter_map(|c| c.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v)?;
    caller_for_key(st, key).await.ok()
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(State(st): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let key = f.key.trim();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return login_page(Some("That does not look like an Epistle API key."));
    }
    match caller_for_key(&st, key).await {
        Ok(_) => {
            let cookie = format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/; Max-Age=86400");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(_) => login_page(Some("This key is not known to this server.")),
    }
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn index(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let Some(caller) = caller_from_cookie(&st, &headers).await else { return login_page(None) };
    let rows = match st.store.list_messages(&caller.tenant_id, &ListFilter { limit: 100, ..Default::default() }).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}")).into_response(),
    };
    let mut body = format!(
        "<h2>Recent messages</h2><p class=\"muted\">Tenant <b>{}</b> · delivery: {}</p>",
        esc(&caller.tenant_name),
        esc(&st.settings.delivery_mode)
    );
    if rows.is_empty() {
        body.push_str(
            "<p>No messages yet. Send one:</p><pre>curl -X POST http://127.0.0.1:8787/v1/messages \\\n  -H \"Authorization: Bearer $EPISTLE_API_KEY\" \\\n  -H 'Content-Type: application/json' \\\n  -d '{\"from\":\"you@example.com\",\"to\":\"friend@example.com\",\"subject\":\"Hello\",\"text\":\"It works!\"}'</pre>",
        );
    } else {
        body.push_str("<table><tr><th>When</th><th>From</th><th>To</th><th>Subject</th><th>Status</th></tr>");
        for r in rows {
            let st = summarize(r.statuses.iter().copied());
            body.push_str(&format!(
                "<tr><td class=\"when\">{}</td><td>{}</td><td>{}</td><td><a href=\"/ui/messages/{}\">{}</a></td><td><span class=\"s {}\">{}</span></td></tr>",
                esc(&timefmt::rfc3339(r.message.created_at).replace('T', " ")),
                esc(&r.message.from),
                esc(&r.message.to.join(", ")),
                esc(&r.message.id),
                esc(&r.message.subject),
                st.as_str(),
                st.as_str()
            ));
        }
        body.push_str("</table>");
    }
    page("Messages", &body, true)
}

async fn show(State(st): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(caller) = caller_from_cookie(&st, &headers).await else { return login_page(None) };
    let not_found =
        || (StatusCode::NOT_FOUND, page("Not found", "<p>No such message in this tenant.</p>", true)).into_response();
    if epistle_core::MessageId::parse(&id).is_none() {
        return not_found();
    }
    let (Ok(Some(m)), Ok(Some(raw)), Ok(rcpts)) = (
        st.store.get_message(&caller.tenant_id, &id).await,
        st.store.raw_message(&caller.tenant_id, &id).await,
        st.store.message_recipients(&caller.tenant_id, &id).await,
    ) else {
        return not_found();
    };
    let parsed = mail_parser::MessageParser::default().parse(&raw);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let headers_text = String::from_utf8_lossy(&raw[..head_end]);
    let text = parsed.as_ref().and_then(|p| p.body_text(0)).map(|t| t.into_owned()).unwrap_or_default();
    let html = parsed.as_ref().and_then(|p| p.body_html(0)).map(|t| t.into_owned());
    let mut body =
        format!("<h2>{}</h2><p class=\"muted\">{} · <a href=\"/\">back</a></p>", esc(&m.subject), esc(&m.id));
    body.push_str("<table><tr><th>Recipient</th><th>Status</th><th>Attempts</th><th>Last reply</th></tr>");
    for r in rcpts {
        body.push_str(&format!(
            "<tr><td>{}</td><td><span class=\"s {}\">{}</span></td><td>{}</td><td>{}</td></tr>",
            esc(&r.email),
            r.status.as_str(),
            r.status.as_str(),
            r.attempts,
            esc(r.last_response.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</table>");
    if let Some(h) = html {
        body.push_str(&format!(
            "<h3>HTML</h3><iframe sandbox=\"\" referrerpolicy=\"no-referrer\" srcdoc=\"{}\"></iframe>",
            esc(&h)
        ));
    }
    if !text.is_empty() {
        body.push_str(&format!("<h3>Text</h3><pre>{}</pre>", esc(&text)));
    }
    body.push_str(&format!("<h3>Headers</h3><pre>{}</pre>", esc(&headers_text)));
    page(&m.subject, &body, true)
}
