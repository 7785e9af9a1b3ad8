//! Turning a message received over SMTP into a [`NewMessage`]: the raw
//! message is kept as the client wrote it, with a `Received` trace header
//! on top, a `Message-ID` and `Date` added when missing, and any `Bcc`
//! header removed.

use epistle_core::{EmailAddress, MessageId};
use epistle_store::{NewMessage, NewRecipient};
use mail_parser::{Address, HeaderName, MessageParser};
use time::OffsetDateTime;
use time::macros::format_description;

/// RFC 5322 date, e.g. `Sun, 22 Nov 2026 13:20:00 +0000`.
pub fn rfc5322_date(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    t.format(&f).unwrap_or_default()
}

fn addresses(a: Option<&Address>) -> Vec<(Option<String>, String)> {
    let Some(a) = a else { return vec![] };
    a.iter().filter_map(|addr| Some((addr.name().map(str::to_string), addr.address()?.to_string()))).collect()
}

fn display((name, email): &(Option<String>, String)) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{n} <{email}>"),
        _ => email.clone(),
    }
}

/// Removes every `Bcc` header (with its continuation lines) from the head.
fn strip_bcc(raw: &[u8]) -> Vec<u8> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(raw.len());
    let (head, body) = raw.split_at(head_end);
    let mut out = Vec::with_capacity(raw.len());
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation {
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

pub struct Received<'a> {
    pub tenant_id: &'a str,
    pub envelope_from: &'a str,
    pub rcpts: &'a [EmailAddress],
    pub data: &'a [u8],
    /// The `Received:` header line to prepend (without CRLF).
    pub trace: String,
    pub now_ms: i64,
}

/// Builds the message to commit, and its id.
pub fn new_message(r: Received<'_>) -> NewMessage {
    let id = MessageId::generate();
    let parsed = MessageParser::default().parse_headers(r.data);
    let (from_hdr, to, cc, subject, has_mid, has_date) = match &parsed {
        Some(m) => (
            addresses(m.from()).into_iter().next(),
            addresses(m.to()),
            addresses(m.cc()),
            m.subject().unwrap_or_default().to_string(),
            m.header(HeaderName::MessageId).is_some(),
            m.header(HeaderName::Date).is_some(),
        ),
        None => (None, vec![], vec![], String::new(), false, false),
    };
    let sender_domain = from_hdr
        .as_ref()
        .and_then(|(_, e)| EmailAddress::parse(e).ok())
        .map(|e| e.domain().to_string())
        .or_else(|| r.envelope_from.rsplit_once('@').map(|(_, d)| d.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let unique = id.as_str().trim_start_matches("msg_").to_string();
    let header_message_id = match parsed.as_ref().and_then(|m| m.message_id()) {
        Some(mid) => mid.to_string(),
        None => format!("{unique}@{sender_domain}"),
    };
    let mut prefix = format!("{}\r\n", r.trace);
    if !has_mid {
        prefix.push_str(&format!("Message-ID: <{header_message_id}>\r\n"));
    }
    if !has_date {
        prefix.push_str(&format!("Date: {}\r\n", rfc5322_date(r.now_ms)));
    }
    let mut raw = prefix.into_bytes();
    raw.extend_from_slice(&strip_bcc(r.data));

    let in_list = |list: &[(Option<String>, String)], e: &EmailAddress| {
        list.iter().any(|(_, a)| a.eq_ignore_ascii_case(e.as_str()))
    };
    let recipients = r
        .rcpts
        .iter()
        .map(|e| NewRecipient {
            email: e.to_string(),
            kind: if in_list(&to, e) {
                "to"
            } else if in_list(&cc, e) {
                "cc"
            } else {
                "bcc"
            },
            suppressed: None,
        })
        .collect();
    NewMessage {
        tenant_id: r.tenant_id.to_string(),
        id: id.to_string(),
        from: from_hdr.as_ref().map(display).unwrap_or_else(|| r.envelope_from.to_string()),
        envelope_from: r.envelope_from.to_string(),
        subject,
        to: to.iter().map(display).collect(),
        cc: cc.iter().map(display).collect(),
        tags: vec![],
        metadata: serde_json::json!({"submitted_by": "smtp"}),
        stream: "transactional".into(),
        header_message_id,
        raw,
        send_at: None,
        recipients,
        idempotency: None,
        response: String::new(),
        template: None,
        category: None,
        variants: vec![],
        personalized: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_is_removed_with_its_continuation() {
        let raw = b"From: a@x.example\r\nBcc: secret@y.example,\r\n  other@y.example\r\nTo: b@x.example\r\n\r\nBcc: in the body stays\r\n";
        let out = strip_bcc(raw);
        assert_eq!(out, b"From: a@x.example\r\nTo: b@x.example\r\n\r\nBcc: in the body stays\r\n");
    }

    #[test]
    fn adds_message_id_and_date_only_when_missing() {
        let rcpts = [EmailAddress::parse("b@x.example").unwrap(), EmailAddress::parse("hidden@x.example").unwrap()];
        let m = new_message(Received {
            tenant_id: "t",
            envelope_from: "a@shop.example",
            rcpts: &rcpts,
            data: b"From: Shop <a@shop.example>\r\nTo: b@x.example\r\nSubject: hi\r\n\r\nbody\r\n",
            trace: "Received: from test".into(),
            now_ms: 1_800_000_000_000,
        });
        let text = String::from_utf8(m.raw.clone()).unwrap();
        assert!(text.starts_with("Received: from test\r\nMessage-ID: <"), "{text}");
        assert!(text.contains("@shop.example>\r\nDate: Fri, 15 Jan 2027 08:00:00 +0000\r\n"), "{text}");
        assert_eq!(m.subject, "hi");
        assert_eq!(m.from, "Shop <a@shop.example>");
        assert_eq!(m.recipients[0].kind, "to");
        assert_eq!(m.recipients[1].kind, "bcc");

        let m = new_message(Received {
            tenant_id: "t",
            envelope_from: "a@shop.example",
            rcpts: &rcpts[..1],
            data: b"Message-ID: <given@shop.example>\r\nDate: Fri, 15 Jan 2027 08:00:00 +0000\r\n\r\nx\r\n",
            trace: "Received: from test".into(),
            now_ms: 0,
        });
        assert_eq!(m.header_message_id, "given@shop.example");
        assert_eq!(String::from_utf8(m.raw).unwrap().matches("Message-ID").count(), 1);
    }
}
