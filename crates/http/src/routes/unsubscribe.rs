//! Unsubscribe and preferences: `GET /u/{token}` (a page to confirm, and
//! the preference centre) and `POST /u/{token}` (RFC 8058 one-click, or the
//! page's form).
//!
//! One-click unsubscribes from what the mail was: its category when it has
//! one, else its stream. The page also offers every category of the
//! tenant, "all mail of this kind", and resubscribing.

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use epistle_core::suppression::applies;
use epistle_core::token::TokenKind;
use epistle_store::UnsubscribeSubject;

use crate::error::ApiError;
use crate::state::AppState;

type Subject = UnsubscribeSubject;

fn invalid() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This unsubscribe link is not valid. If you copied it, check that it is complete.</p>",
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{t}</title><style>\
         body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1f2933;line-height:1.5}}\
         @media (prefers-color-scheme: dark){{body{{background:#111827;color:#e5e7eb}}}}\
         fieldset{{border:1px solid #9aa5b1;border-radius:6px;padding:1rem}} label{{display:block;margin:.4rem 0}}\
         button{{font:inherit;padding:.5rem 1rem;margin:.5rem .5rem 0 0;border-radius:6px;border:1px solid #52606d;cursor:pointer}}\
         .primary{{background:#1f2933;color:#fff}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

async fn resolve(st: &AppState, token: &str) -> Result<Option<Subject>, ApiError> {
    let Some(fb) = &st.feedback else { return Ok(None) };
    let Some(t) = fb.key.open(token, TokenKind::Unsubscribe) else { return Ok(None) };
    Ok(st.store.unsubscribe_subject(&t.recipient_id()).await?)
}

async fn suppress(st: &AppState, s: &Subject, scope: &str, source: &str) -> Result<(), ApiError> {
    st.store.unsubscribe(s, scope, source, st.clock.now_ms()).await?;
    if let Some(fb) = &st.feedback {
        fb.events.poke();
    }
    Ok(())
}

/// `GET /u/{token}`
pub async fn show(State(st): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let Some(s) = resolve(&st, &token).await? else { return Ok(invalid()) };
    preferences(&st, &s, None).await
}

async fn preferences(st: &AppState, s: &Subject, notice: Option<&str>) -> Result<Response, ApiError> {
    let fb = st.feedback.as_ref().ok_or_else(|| ApiError::internal("feedback is not set up"))?;
    let settings = fb.settings(&st.store, &s.tenant).await?;
    let current = st.store.suppressions_of(&s.tenant, std::slice::from_ref(&s.email)).await?;
    let brand: Option<serde_json::Value> =
        st.store.brand(&s.tenant).await.ok().flatten().and_then(|b| serde_json::from_str(&b).ok());
    let company = brand
        .as_ref()
        .and_then(|b| b.get("company_name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| "the sender".into());
    let stopped = |scope: &str| current.iter().any(|(_, sc)| sc == scope || sc.is_empty());
    let blocked_here = current.iter().any(|(_, sc)| applies(sc, &s.stream, s.category.as_deref()));
    let mut body = String::new();
    if let Some(n) = notice {
        body.push_str(&format!("<p role=\"status\"><strong>{}</strong></p>", esc(n)));
    }
    let what = match &s.category {
        Some(c) => {
            settings.categories.iter().find(|x| &x.name == c).map(|x| x.label.clone()).unwrap_or_else(|| c.clone())
        }
        None if s.stream == "broadcast" => "newsletters and announcements".into(),
        None => "these messages".into(),
    };
    body.push_str(&format!("<p>Mail from {} to <strong>{}</strong>.</p>", esc(&company), esc(&s.email)));
    body.push_str("<form method=\"post\">");
    if blocked_here {
        body.push_str(&format!(
            "<p>You are unsubscribed from {}.</p><button class=\"primary\" name=\"action\" value=\"resubscribe\">Subscribe again</button>",
            esc(&what)
        ));
    } else {
        body.push_str(&format!(
            "<p>Stop receiving {}?</p><button class=\"primary\" name=\"action\" value=\"unsubscribe\">Unsubscribe</button>",
            esc(&what)
        ));
    }
    body.push_str("</form>");
    if !settings.categories.is_empty() {
        body.push_str("<form method=\"post\" id=\"preferences\"><fieldset><legend>Choose what you receive</legend>");
        for c in &settings.categories {
            let checked = if stopped(&format!("category:{}", c.name)) { "" } else { " checked" };
            body.push_str(&format!(
                "<label><input type=\"checkbox\" name=\"category\" value=\"{n}\"{checked}> {l}{d}</label>",
                n = esc(&c.name),
                l = esc(&c.label),
                d = c.description.as_deref().map(|d| format!(" <small>— {}</small>", esc(d))).unwrap_or_default()
            ));
        }
        body.push_str(
            "</fieldset><button name=\"action\" value=\"preferences\">Save preferences</button>\
             <button name=\"action\" value=\"unsubscribe_all\">Unsubscribe from everything</button></form>",
        );
    }
    Ok(page(StatusCode::OK, "Email preferences", &body))
}

/// `POST /u/{token}`: one-click (any body, RFC 8058 sends
/// `List-Unsubscribe=One-Click`) or the page's form (`action=…`).
pub async fn post(State(st): State<AppState>, Path(token): Path<String>, req: Request) -> Result<Response, ApiError> {
    let Some(s) = resolve(&st, &token).await? else { return Ok(invalid()) };
    let bytes = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the form is too large"))?;
    let fields: Vec<(String, String)> = form_urlencoded(&bytes);
    let action = fields.iter().find(|(k, _)| k == "action").map(|(_, v)| v.as_str());
    let scope = s.default_scope();
    match action {
        None => {
            // RFC 8058 one-click: done at once, no page needed.
            suppress(&st, &s, &scope, "one-click").await?;
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Unsubscribed.\n")
                .into_response())
        }
        Some("unsubscribe") => {
            suppress(&st, &s, &scope, "preference-page").await?;
            preferences(&st, &s, Some("You are unsubscribed.")).await
        }
        Some("unsubscribe_all") => {
            suppress(&st, &s, "", "preference-page").await?;
            preferences(&st, &s, Some("You will receive no more mail from us.")).await
        }
        Some("resubscribe") => {
            // Only what the person chose themselves: bounces and complaints stay.
            for sc in [scope.as_str(), ""] {
                remove_unsubscribe(&st, &s, sc).await?;
            }
            preferences(&st, &s, Some("You are subscribed again.")).await
        }
        Some("preferences") => {
            let fb = st.feedback.as_ref().ok_or_else(|| ApiError::internal("feedback is not set up"))?;
            let settings = fb.settings(&st.store, &s.tenant).await?;
            let wanted: Vec<&str> = fields.iter().filter(|(k, _)| k == "category").map(|(_, v)| v.as_str()).collect();
            for c in &settings.categories {
                let sc = format!("category:{}", c.name);
                if wanted.contains(&c.name.as_str()) {
                    remove_unsubscribe(&st, &s, &sc).await?;
                } else {
                    suppress(&st, &s, &sc, "preference-page").await?;
                }
            }
            remove_unsubscribe(&st, &s, "").await?;
            preferences(&st, &s, Some("Your preferences are saved.")).await
        }
        Some(_) => Ok(page(StatusCode::BAD_REQUEST, "Unknown choice", "<p>Go back and choose one of the buttons.</p>")),
    }
}

/// Lifts the person's own unsubscribe of `scope`; a bounce, complaint or
/// manual entry of the same scope stays.
async fn remove_unsubscribe(st: &AppState, s: &Subject, scope: &str) -> Result<(), ApiError> {
    let filter = epistle_store::SuppressionFilter {
        email: Some(s.email.clone()),
        scope: Some(scope.to_string()),
        limit: 1,
        ..Default::default()
    };
    let entry = st.store.suppression_page(&s.tenant, &filter).await?;
    if entry.first().is_some_and(|x| x.reason == "unsubscribe") {
        st.store.delete_suppression(&s.tenant, &s.email, Some(scope)).await?;
    }
    Ok(())
}

/// Reads `application/x-www-form-urlencoded`.
fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_urlencoded(b"action=preferences&category=a%2Db&category=x+y&bad=%zz&end=%4"),
            vec![
                ("action".into(), "preferences".into()),
                ("category".into(), "a-b".into()),
                ("category".into(), "x y".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
        assert_eq!(
            form_urlencoded(b"List-Unsubscribe=One-Click"),
            vec![("List-Unsubscribe".into(), "One-Click".into())]
        );
    }
}
