//! From a request body to a message ready to commit: every field checked,
//! with an error that names the field and says how to fix it.

use std::collections::HashSet;

use axum::http::StatusCode;
use base64::Engine as _;
use epistle_core::{Mailbox, MessageId, RecipientStatus, Stream, timefmt};
use epistle_mail::{Attachment, Composition, HeaderName, build_message, check_header_value};
use epistle_store::{NewMessage, NewRecipient};

use crate::error::ApiError;
use crate::state::HttpSettings;
use crate::wire::{Accepted, RecipientState, SendRequest};

const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 100;
const MAX_METADATA_BYTES: usize = 8 * 1024;
const MAX_SUBJECT_LEN: usize = 998;

fn address_list(field: &str, v: Option<serde_json::Value>) -> Result<Vec<Mailbox>, ApiError> {
    let items: Vec<(String, serde_json::Value)> = match v {
        None | Some(serde_json::Value::Null) => return Ok(vec![]),
        Some(serde_json::Value::String(s)) => vec![(field.to_string(), serde_json::Value::String(s))],
        Some(serde_json::Value::Array(a)) => {
            a.into_iter().enumerate().map(|(i, v)| (format!("{field}[{i}]"), v)).collect()
        }
        Some(_) => {
            return Err(ApiError::invalid(field, format!("`{field}` must be an address or a list of addresses")));
        }
    };
    items
        .into_iter()
        .map(|(f, v)| match v {
            serde_json::Value::String(s) => {
                Mailbox::parse(&s).map_err(|e| ApiError::invalid(&f, format!("`{f}`: {e}")))
            }
            _ => Err(ApiError::invalid(&f, format!("`{f}` must be a string such as \"Jane Doe <jane@example.com>\""))),
        })
        .collect()
}

fn no_control(field: &str, value: &str) -> Result<(), ApiError> {
    check_header_value(value).map_err(|e| ApiError::invalid(field, format!("`{field}`: {e}")))
}

/// Per-recipient links to put in a message: tracking and unsubscribe.
#[derive(Debug, Clone, Default)]
pub struct Personalize {
    /// Signs the links; `None` makes none.
    pub key: Option<epistle_core::token::TokenKey>,
    /// `https://mail.example.com`, no trailing slash.
    pub public_url: String,
    pub track_opens: bool,
    pub track_clicks: bool,
    /// Add `List-Unsubscribe` and `List-Unsubscribe-Post`.
    pub unsubscribe: bool,
    /// For the `mailto:` form of List-Unsubscribe.
    pub mailto_domain: Option<String>,
    pub store_ip: bool,
}

/// A checked message, ready for the store, and the reply to give.
pub struct Prepared {
    pub message: NewMessage,
    pub reply: Accepted,
}

/// Validates a send request and builds the message.
pub fn prepare(
    req: SendRequest,
    tenant_id: &str,
    now_ms: i64,
    settings: &HttpSettings,
    idempotency: Option<(String, String)>,
    personal: &Personalize,
) -> Result<Prepared, ApiError> {
    let from = Mailbox::parse(&req.from).map_err(|e| ApiError::invalid("from", format!("`from`: {e}")))?;
    let to = address_list("to", req.to)?;
    let cc = address_list("cc", req.cc)?;
    let bcc = address_list("bcc", req.bcc)?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ApiError::invalid("to", "give at least one recipient in `to`, `cc` or `bcc`"));
    }
    let reply_to = match &req.reply_to {
        Some(r) => Some(Mailbox::parse(r).map_err(|e| ApiError::invalid("reply_to", format!("`reply_to`: {e}")))?),
        None => None,
    };
    let subject = req.subject.unwrap_or_default();
    if subject.trim().is_empty() {
        return Err(ApiError::invalid("subject", "`subject` is required and must not be empty"));
    }
    no_control("subject", &subject)?;
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(ApiError::invalid("subject", format!("`subject` is longer than {MAX_SUBJECT_LEN} bytes")));
    }
    let text = req.text.filter(|t| !t.is_empty());
    let html = req.html.filter(|t| !t.is_empty());
    if text.is_none() && html.is_none() {
        return Err(ApiError::invalid("text", "give a body: `text`, `html` or both"));
    }

    let mut headers = Vec::with_capacity(req.headers.len());
    for (name, value) in req.headers {
        let field = format!("headers.{name}");
        let n = HeaderName::parse(&name).map_err(|e| ApiError::invalid(&field, e.to_string()))?;
        no_control(&field, &value)?;
        headers.push((n, value));
    }

    if req.tags.len() > MAX_TAGS {
        return Err(ApiError::invalid("tags", format!("at most {MAX_TAGS} tags per message")));
    }
    for (i, t) in req.tags.iter().enumerate() {
        if t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("tags[{i}]"),
                format!("tags must be 1 to {MAX_TAG_LEN} characters without control characters"),
            ));
        }
    }
    let mut tags = req.tags;
    tags.sort();
    tags.dedup();

    let metadata = serde_json::Value::Object(req.metadata.unwrap_or_default());
    if metadata.to_string().len() > MAX_METADATA_BYTES {
        return Err(ApiError::invalid(
            "metadata",
            format!("`metadata` is larger than {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }

    let category = match req.category {
        None => None,
        Some(c) => {
            epistle_core::suppression::parse_scope(&format!("category:{c}")).map_err(|_| {
                ApiError::invalid("category", "`category` is 1–64 letters, digits, - and _, e.g. marketing")
            })?;
            Some(c)
        }
    };
    let stream = match req.stream.as_deref() {
        None => Stream::Transactional,
        Some(s) => s.parse::<Stream>().map_err(|e| ApiError::invalid("stream", e))?,
    };

    let send_at = match req.send_at.as_deref() {
        None => None,
        Some(s) => {
            Some(timefmt::parse_rfc3339(s).map_err(|e| ApiError::invalid("send_at", format!("`send_at`: {e}")))?)
        }
    };

    let mut attachments = Vec::with_capacity(req.attachments.len());
    for (i, a) in req.attachments.into_iter().enumerate() {
        let field = format!("attachments[{i}]");
        if a.filename.trim().is_empty() {
            return Err(ApiError::invalid(format!("{field}.filename"), "an attachment needs a `filename`"));
        }
        no_control(&format!("{field}.filename"), &a.filename)?;
        let content_type = a.content_type.unwrap_or_else(|| "application/octet-stream".into());
        let ct_ok = content_type.split_once('/').is_some_and(|(t, s)| {
            let tok =
                |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
            tok(t) && tok(s)
        });
        if !ct_ok {
            return Err(ApiError::invalid(
                format!("{field}.content_type"),
                format!("`{content_type}` is not a MIME type such as application/pdf"),
            ));
        }
        let cleaned: String = a.content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let content = base64::engine::general_purpose::STANDARD
            .decode(cleaned.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cleaned.trim_end_matches('=')))
            .map_err(|e| {
                ApiError::invalid(format!("{field}.content"), format!("`content` is not valid base64: {e}"))
            })?;
        attachments.push(Attachment { filename: a.filename, content_type, content });
    }

    // One envelope recipient per address, whatever list it came in.
    let mut seen = HashSet::new();
    let mut recipients = Vec::new();
    for (list, kind) in [(&to, "to"), (&cc, "cc"), (&bcc, "bcc")] {
        for m in list {
            if seen.insert(m.email.as_str().to_ascii_lowercase()) {
                recipients.push(NewRecipient { email: m.email.to_string(), kind, suppressed: None });
            }
        }
    }
    if recipients.len() > settings.max_recipients {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_recipients",
            format!(
                "at most {} recipients per message; split the list or use the batch endpoint",
                settings.max_recipients
            ),
        ));
    }

    let calendar = match req.calendar {
        Some(c) => Some(calendar_event(c, &from, &to, &cc, now_ms)?),
        None => None,
    };

    let id = MessageId::generate();
    let unique = id.as_str().trim_start_matches("msg_").to_string();
    let date_ms = send_at.filter(|t| *t > now_ms).unwrap_or(now_ms);
    let composition = Composition {
        from: from.clone(),
        to: to.clone(),
        cc: cc.clone(),
        reply_to,
        subject: subject.clone(),
        text,
        html,
        headers,
        attachments,
        calendar,
        date: date_ms / 1000,
        unique,
    };
    let (raw, variants, personalized) = personalize(&composition, id.as_str(), recipients.len(), personal, now_ms);
    let status = match send_at {
        Some(t) if t > now_ms => RecipientStatus::Scheduled,
        _ => RecipientStatus::Queued,
    };
    let reply = Accepted {
        id: id.to_string(),
        status: status.as_str().into(),
        recipients: recipients
            .iter()
            .map(|r| RecipientState { email: r.email.clone(), status: status.as_str().into() })
            .collect(),
    };
    let message = NewMessage {
        tenant_id: tenant_id.to_string(),
        id: id.to_string(),
        from: from.to_string(),
        envelope_from: from.email.to_string(),
        subject,
        to: to.iter().map(ToString::to_string).collect(),
        cc: cc.iter().map(ToString::to_string).collect(),
        tags,
        metadata,
        stream: stream.as_str().into(),
        header_message_id: composition.message_id(),
        raw,
        send_at,
        recipients,
        idempotency,
        response: serde_json::to_string(&reply).unwrap_or_default(),
        template: None,
        category,
        variants,
        personalized,
    };
    Ok(Prepared { message, reply })
}

/// Builds the message once, or once per recipient when it carries
/// per-recipient links: `(body of the first, bodies of the others, per
/// recipient?)`.
fn personalize(
    c: &Composition,
    message_id: &str,
    n: usize,
    p: &Personalize,
    now_ms: i64,
) -> (Vec<u8>, Vec<Vec<u8>>, bool) {
    use crate::feedback::UNSUBSCRIBE_PLACEHOLDER;
    use epistle_core::token::{Token, TokenKind, flags};
    let has_placeholder = |s: &Option<String>| s.as_deref().is_some_and(|t| t.contains(UNSUBSCRIBE_PLACEHOLDER));
    let own_header = c.headers.iter().any(|(h, _)| h.as_str().eq_ignore_ascii_case("list-unsubscribe"));
    let unsubscribe = p.unsubscribe && !own_header;
    let track = c.html.is_some() && (p.track_opens || p.track_clicks);
    let Some(key) =
        p.key.as_ref().filter(|_| track || unsubscribe || has_placeholder(&c.html) || has_placeholder(&c.text))
    else {
        return (build_message(c), Vec::new(), false);
    };
    let base = p.public_url.trim_end_matches('/');
    let issued = (now_ms / 1000).clamp(0, u32::MAX as i64) as u32;
    let flags = if p.store_ip { flags::STORE_IP } else { 0 };
    let mut bodies = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let index = i as u16;
        let token = |kind, url: Option<&str>| {
            key.seal(&Token {
                kind,
                flags,
                message_id: message_id.to_string(),
                recipient: index,
                issued,
                url: url.map(str::to_string),
            })
        };
        let mut m = c.clone();
        let unsub_url = token(TokenKind::Unsubscribe, None).map(|t| format!("{base}/u/{t}"));
        if let Some(u) = &unsub_url {
            let placeholder = format!("{base}/u/{UNSUBSCRIBE_PLACEHOLDER}");
            for body in [&mut m.html, &mut m.text].into_iter().flatten() {
                if body.contains(UNSUBSCRIBE_PLACEHOLDER) {
                    *body = body.replace(&placeholder, u).replace(UNSUBSCRIBE_PLACEHOLDER, u);
                }
            }
        }
        if track && let Some(html) = &m.html {
            let pixel =
                p.track_opens.then(|| token(TokenKind::Open, None).map(|t| format!("{base}/t/o/{t}"))).flatten();
            let own = format!("{base}/u/");
            let rewritten = epistle_render::tracking::rewrite(
                html,
                |url| {
                    if !p.track_clicks || url.starts_with(&own) {
                        return None;
                    }
                    token(TokenKind::Click, Some(url)).map(|t| format!("{base}/t/c/{t}"))
                },
                pixel.as_deref(),
            );
            m.html = Some(rewritten);
        }
        if unsubscribe && let Some(u) = &unsub_url {
            let mut value = format!("<{u}>");
            if let Some(domain) = &p.mailto_domain
                && let Some(local) = key.address_local("unsubscribe", message_id, index)
            {
                value.push_str(&format!(", <mailto:{local}@{domain}?subject=unsubscribe>"));
            }
            if let (Ok(a), Ok(b)) = (HeaderName::parse("List-Unsubscribe"), HeaderName::parse("List-Unsubscribe-Post"))
            {
                m.headers.push((a, value));
                m.headers.push((b, "List-Unsubscribe=One-Click".into()));
            }
        }
        bodies.push(build_message(&m));
    }
    let mut it = bodies.into_iter();
    let first = it.next().unwrap_or_default();
    (first, it.collect(), true)
}

/// Checks an `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub fn idempotency_key(v: &str) -> Result<String, ApiError> {
    if v.is_empty() || v.len() > 255 || !v.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "an Idempotency-Key is 1 to 255 printable ASCII characters without spaces, e.g. order-1042-confirmation",
        ));
    }
    Ok(v.to_string())
}

/// The `calendar` of a message, checked, with organizer and attendees
/// defaulting to the message's sender and recipients.
fn calendar_event(
    c: crate::wire::CalendarIn,
    from: &Mailbox,
    to: &[Mailbox],
    cc: &[Mailbox],
    now_ms: i64,
) -> Result<epistle_mail::calendar::Event, ApiError> {
    use epistle_mail::calendar::{Event, Method, Person, parse_time};
    let method = match c.method.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("request") => Method::Request,
        Some("cancel") => Method::Cancel,
        Some(m) => return Err(ApiError::invalid("calendar.method", format!("`{m}`: use `request` or `cancel`"))),
    };
    if c.uid.trim().is_empty() || c.uid.len() > 255 || c.uid.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "calendar.uid",
            "`uid` names the event in every message about it: 1–255 characters, e.g. appointment-42@shop.example",
        ));
    }
    let start = parse_time(&c.start, c.timezone.as_deref()).map_err(|e| ApiError::invalid("calendar.start", e))?;
    let end = parse_time(&c.end, c.timezone.as_deref()).map_err(|e| ApiError::invalid("calendar.end", e))?;
    if end <= start {
        return Err(ApiError::invalid("calendar.end", "`end` must be after `start`"));
    }
    if c.summary.trim().is_empty() {
        return Err(ApiError::invalid("calendar.summary", "`summary` (the event's title) is required"));
    }
    if let Some(u) = &c.url
        && !epistle_mail::calendar::is_uri(u)
    {
        return Err(ApiError::invalid("calendar.url", "`url` must be an http(s) link without spaces or line breaks"));
    }
    let person = |field: &str, s: &str| {
        Mailbox::parse(s)
            .map(|m| Person { email: m.email.to_string(), name: m.name })
            .map_err(|e| ApiError::invalid(field, format!("`{s}`: {e}")))
    };
    let organizer = match &c.organizer {
        Some(o) => person("calendar.organizer", o)?,
        None => Person { email: from.email.to_string(), name: from.name.clone() },
    };
    let attendees = match &c.attendees {
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, a)| person(&format!("calendar.attendees[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?,
        None => to.iter().chain(cc).map(|m| Person { email: m.email.to_string(), name: m.name.clone() }).collect(),
    };
    Ok(Event {
        method,
        uid: c.uid,
        sequence: c.sequence,
        start,
        end,
        summary: c.summary,
        description: c.description,
        location: c.location,
        url: c.url,
        organizer,
        attendees,
        stamp: now_ms / 1000,
    })
}
