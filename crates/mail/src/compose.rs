//! Building the MIME message.

use epistle_core::Mailbox;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;

use crate::header::HeaderName;

/// A file attached to a message.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// Everything that goes into the message body and headers. Every field is
/// already validated (typed addresses, checked header names and values).
#[derive(Debug, Clone)]
pub struct Composition {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    pub attachments: Vec<Attachment>,
    /// A calendar invitation: a `text/calendar` alternative (what mail
    /// clients act on) and the same object as `invite.ics`.
    pub calendar: Option<crate::calendar::Event>,
    /// Unix seconds for the Date header.
    pub date: i64,
    /// Unique part of the Message-ID; the domain is the sender's.
    pub unique: String,
}

impl Composition {
    /// `<unique@sender-domain>`, so the id is on the sender's domain.
    pub fn message_id(&self) -> String {
        format!("{}@{}", self.unique, self.from.email.domain())
    }
}

fn address(m: &Mailbox) -> Address<'static> {
    match &m.name {
        Some(n) => Address::from((n.clone(), m.email.as_str().to_string())),
        None => Address::from(m.email.as_str().to_string()),
    }
}

fn address_list(list: &[Mailbox]) -> Address<'static> {
    Address::new_list(list.iter().map(address).collect())
}

/// Builds the RFC 5322 message (CRLF line endings, no Bcc header).
pub fn build_message(c: &Composition) -> Vec<u8> {
    let mut b = MessageBuilder::new()
        .from(address(&c.from))
        .subject(Text::new(c.subject.clone()))
        .message_id(c.message_id())
        .date(c.date);
    if !c.to.is_empty() {
        b = b.to(address_list(&c.to));
    }
    if !c.cc.is_empty() {
        b = b.cc(address_list(&c.cc));
    }
    if let Some(r) = &c.reply_to {
        b = b.reply_to(address(r));
    }
    for (name, value) in &c.headers {
        // Printable ASCII goes as it is (folded at white space only): an
        // encoded word would hide structured values such as
        // List-Unsubscribe's URLs from the receiver. Anything else is
        // encoded (RFC 2047).
        if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            b = b.header(name.as_str().to_string(), Raw::new(value.clone()));
        } else {
            b = b.header(name.as_str().to_string(), Text::new(value.clone()));
        }
    }
    if let Some(event) = &c.calendar {
        b = b.body(with_calendar(c, event));
    } else {
        if let Some(t) = &c.text {
            b = b.text_body(t.clone());
        }
        if let Some(h) = &c.html {
            b = b.html_body(h.clone());
        }
        for a in &c.attachments {
            b = b.attachment(a.content_type.clone(), a.filename.clone(), a.content.clone());
        }
    }
    let mut out = b.write_to_vec().unwrap_or_default();
    normalize_line_endings(&mut out);
    out
}

/// multipart/mixed [ multipart/alternative [ text, html, text/calendar ],
/// invite.ics, attachments… ], the layout Gmail, Outlook and Apple Mail
/// turn into an invitation.
fn with_calendar(c: &Composition, event: &crate::calendar::Event) -> MimePart<'static> {
    let ics = crate::calendar::ics(event);
    let method = event.method.as_str();
    let mut alternatives = Vec::new();
    if let Some(t) = &c.text {
        alternatives.push(MimePart::new("text/plain", t.clone()));
    }
    if let Some(h) = &c.html {
        alternatives.push(MimePart::new("text/html", h.clone()));
    }
    alternatives.push(MimePart::new(
        ContentType::new("text/calendar").attribute("charset", "utf-8").attribute("method", method),
        ics.clone(),
    ));
    let mut mixed = vec![MimePart::new("multipart/alternative", alternatives)];
    mixed.push(
        MimePart::new(ContentType::new("application/ics").attribute("name", "invite.ics"), ics.into_bytes())
            .attachment("invite.ics"),
    );
    for a in &c.attachments {
        mixed.push(MimePart::new(a.content_type.clone(), a.content.clone()).attachment(a.filename.clone()));
    }
    MimePart::new("multipart/mixed", mixed)
}

/// mail-builder writes CRLF everywhere it writes line breaks itself, but a
/// text body given with bare LF keeps them inside quoted-printable or 7bit
/// parts. SMTP wants CRLF only, so normalise once here.
fn normalize_line_endings(buf: &mut Vec<u8>) {
    let bare_lf = buf.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || buf[i - 1] != b'\r'));
    if !bare_lf {
        return;
    }
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 50);
    let mut prev = 0u8;
    for &b in buf.iter() {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    *buf = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn mb(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    fn sample() -> Composition {
        Composition {
            from: mb("Shop <orders@shop.example>"),
            to: vec![mb("Jane Doe <jane@example.com>")],
            cc: vec![],
            reply_to: Some(mb("support@shop.example")),
            subject: "Your order #1042".into(),
            text: Some("Thanks for your order.\n.\nA line with a dot above.".into()),
            html: Some("<p>Thanks for your order.</p>".into()),
            headers: vec![(HeaderName::parse("X-Order").unwrap(), "1042".into())],
            attachments: vec![],
            calendar: None,
            date: 1_795_000_000,
            unique: "01jabc".into(),
        }
    }

    #[test]
    fn an_invitation_has_a_calendar_alternative_and_an_ics_attachment() {
        use crate::calendar::{Event, Method, Person};
        let mut c = sample();
        c.attachments.push(Attachment {
            filename: "map.pdf".into(),
            content_type: "application/pdf".into(),
            content: b"%PDF".to_vec(),
        });
        c.calendar = Some(Event {
            method: Method::Request,
            uid: "appt-1@shop.example".into(),
            sequence: 0,
            start: 1_800_000_000,
            end: 1_800_001_800,
            summary: "Fitting".into(),
            description: None,
            location: None,
            url: None,
            organizer: Person { email: "orders@shop.example".into(), name: None },
            attendees: vec![Person { email: "jane@example.com".into(), name: None }],
            stamp: 1_795_000_000,
        });
        let raw = build_message(&c);
        lines_ok(&raw);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert!(m.body_text(0).unwrap().contains("Thanks for your order."));
        assert!(m.body_html(0).unwrap().contains("<p>Thanks"));
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Content-Type: text/calendar; charset=\"utf-8\"; method=\"REQUEST\""), "{text}");
        use mail_parser::MimeHeaders;
        let names: Vec<&str> = m.attachments().filter_map(|a| a.attachment_name()).collect();
        assert!(names.contains(&"invite.ics") && names.contains(&"map.pdf"), "{names:?}");
    }

    fn lines_ok(raw: &[u8]) {
        for line in raw.split(|b| *b == b'\n') {
            assert!(line.len() <= 1000, "line longer than RFC 5322 allows");
        }
        for (i, b) in raw.iter().enumerate() {
            if *b == b'\n' {
                assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
            }
        }
    }

    #[test]
    fn text_and_html_make_multipart_alternative() {
        let raw = build_message(&sample());
        lines_ok(&raw);
        let s = String::from_utf8_lossy(&raw);
        assert!(s.contains("Message-ID: <01jabc@shop.example>"), "{s}");
        assert!(s.contains("MIME-Version: 1.0"));
        assert!(s.contains("multipart/alternative"));
        assert!(!s.to_ascii_lowercase().contains("\nbcc:"));
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("Your order #1042"));
        assert_eq!(m.from().unwrap().first().unwrap().address(), Some("orders@shop.example"));
        assert!(m.date().is_some());
        assert_eq!(m.header_raw("X-Order").map(str::trim), Some("1042"));
        assert!(m.body_text(0).unwrap().contains("A line with a dot above."));
        assert!(m.body_html(0).unwrap().contains("Thanks for your order."));
    }

    #[test]
    fn non_ascii_headers_are_encoded_words() {
        let mut c = sample();
        c.subject = "Ihre Bestellung — Größe XL ✓".into();
        c.to = vec![mb("Zoë Ærø <zoe@bücher.example>")];
        let raw = build_message(&c);
        assert!(raw.is_ascii(), "headers and QP/base64 bodies must be 7-bit");
        let s = String::from_utf8_lossy(&raw);
        assert!(s.contains("=?utf-8?"), "{s}");
        assert!(s.contains("zoe@xn--bcher-kva.example"));
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("Ihre Bestellung — Größe XL ✓"));
        assert_eq!(m.to().unwrap().first().unwrap().name(), Some("Zoë Ærø"));
    }

    #[test]
    fn long_ascii_headers_are_folded_not_encoded() {
        let mut c = sample();
        let value = "<https://mail.shop.example/u/AXUBAaIERO-dNKDa0N0icSSQHAAAa0nSABsJvW2TNsucl7M9qA>, \
                     <mailto:unsubscribe+01a20444ef9d34a0dad0dd227124901c000089f8fca0d3af54d5@bounces.shop.example?subject=unsubscribe>";
        c.headers = vec![
            (HeaderName::parse("List-Unsubscribe").unwrap(), value.into()),
            (HeaderName::parse("X-Note").unwrap(), "grüße".into()),
        ];
        let raw = build_message(&c);
        lines_ok(&raw);
        let s = String::from_utf8_lossy(&raw);
        assert!(!s.contains("=?us-ascii?"), "{s}");
        let m = MessageParser::default().parse(&raw).unwrap();
        // Unfolding (RFC 5322 2.2.3) gives the value back, up to white space.
        let got = m.header_raw("List-Unsubscribe").unwrap().replace("\r\n", "");
        assert_eq!(got.split_whitespace().collect::<Vec<_>>(), value.split_whitespace().collect::<Vec<_>>());
        assert!(s.contains("X-Note: =?utf-8?"), "non-ASCII is still encoded: {s}");
    }

    #[test]
    fn attachments_make_multipart_mixed_with_base64() {
        let mut c = sample();
        let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        c.attachments.push(Attachment {
            filename: "invoice.pdf".into(),
            content_type: "application/pdf".into(),
            content: pdf.clone(),
        });
        let raw = build_message(&c);
        lines_ok(&raw);
        let s = String::from_utf8_lossy(&raw);
        assert!(s.contains("multipart/mixed"));
        let m = MessageParser::default().parse(&raw).unwrap();
        let att = m.attachments().next().unwrap();
        assert_eq!(mail_parser::MimeHeaders::attachment_name(att), Some("invoice.pdf"));
        assert_eq!(att.contents(), &pdf[..]);
    }

    #[test]
    fn long_lines_and_bare_lf_are_wrapped() {
        let mut c = sample();
        c.html = None;
        c.text = Some(format!("{}\nsecond line\n", "x".repeat(3000)));
        let raw = build_message(&c);
        lines_ok(&raw);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert!(m.body_text(0).unwrap().starts_with(&"x".repeat(3000)));
    }
}
