//! Our MIME taken apart for the providers whose APIs want structured JSON
//! (SendGrid, Postmark): addresses, subject, bodies, attachments and the
//! headers they let us pass on.

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders};

use crate::transport::Envelope;

#[derive(Debug, Clone, Default)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub content_b64: String,
    /// Set for inline parts referenced as `cid:` from the HTML.
    pub content_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Parts {
    /// `Name <addr>` or `addr`.
    pub from: String,
    pub from_email: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    /// Envelope recipients split by where the headers put them; those in
    /// neither To nor Cc are Bcc.
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Headers passed through (List-Unsubscribe, In-Reply-To, X-…).
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
}

/// Headers the structured APIs set themselves or refuse.
const OWN_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "reply-to",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "received",
    "return-path",
    "sender",
];

pub fn split(envelope: &Envelope, raw: &[u8]) -> Result<Parts, String> {
    let msg = MessageParser::default().parse(raw).ok_or("the message cannot be parsed as MIME")?;
    let mut p = Parts::default();
    let from = msg.from().and_then(|a| a.first()).ok_or("the message has no From address")?;
    p.from_email = from.address().unwrap_or_default().to_string();
    p.from_name = from.name().map(str::to_string);
    p.from = match &p.from_name {
        Some(n) => format!("\"{}\" <{}>", n.replace(['"', '\\'], ""), p.from_email),
        None => p.from_email.clone(),
    };
    p.reply_to = msg.reply_to().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_string);
    p.subject = msg.subject().unwrap_or_default().to_string();
    let listed = |a: Option<&mail_parser::Address<'_>>, rcpt: &str| {
        a.is_some_and(|a| a.iter().any(|x| x.address().is_some_and(|e| e.eq_ignore_ascii_case(rcpt))))
    };
    for rcpt in &envelope.rcpts {
        if listed(msg.to(), rcpt) {
            p.to.push(rcpt.clone());
        } else if listed(msg.cc(), rcpt) {
            p.cc.push(rcpt.clone());
        } else {
            p.bcc.push(rcpt.clone());
        }
    }
    // When every recipient is blind, the structured APIs (which need
    // someone in To) get one copy per recipient: nobody sees the others.
    p.text = msg.body_text(0).map(|t| t.into_owned()).filter(|_| !msg.text_body.is_empty());
    p.html = msg.body_html(0).map(|h| h.into_owned()).filter(|_| !msg.html_body.is_empty());
    // mail-parser turns a lone HTML body into text and back; keep only the
    // parts the message really has.
    if let Some(&i) = msg.text_body.first()
        && msg.parts.get(i as usize).and_then(|p| p.content_type()).is_some_and(|c| c.subtype() == Some("html"))
    {
        p.text = None;
    }
    if let Some(&i) = msg.html_body.first()
        && msg.parts.get(i as usize).and_then(|p| p.content_type()).is_some_and(|c| c.subtype() == Some("plain"))
    {
        p.html = None;
    }
    for (name, value) in msg.headers_raw() {
        let lower = name.to_ascii_lowercase();
        if !OWN_HEADERS.contains(&lower.as_str()) {
            let value =
                value.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
            p.headers.push((name.to_string(), value));
        }
    }
    for a in msg.attachments() {
        let ct = a
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")))
            .unwrap_or_else(|| "application/octet-stream".into());
        p.attachments.push(Attachment {
            filename: a.attachment_name().unwrap_or("attachment").to_string(),
            content_type: ct,
            content_b64: base64::engine::general_purpose::STANDARD.encode(a.contents()),
            content_id: a.content_id().map(|c| c.trim_matches(['<', '>']).to_string()),
        });
    }
    Ok(p)
}
