//! Mail that comes back: what arrives for the bounce domain
//! (`feedback.bounce_domain`).
//!
//! Every recipient of ours is sent with its own signed return path,
//! `bounce+<token>@<bounce domain>` (VERP), and a `mailto:` unsubscribe
//! address, `unsubscribe+<token>@<bounce domain>`. The listener accepts
//! exactly these, plus the role addresses `postmaster`, `abuse` and `fbl`
//! (where feedback-loop reports and misdirected bounces land), from anyone
//! and without AUTH, as an MX would. Anything else on that domain is `550`.
//!
//! What a mail says comes from the bounce classifier
//! ([`epistle_mail::bounce::classify_mail`]): a delivery status
//! notification moves the recipient to `bounced` (a hard bounce also
//! suppresses the address), `deferred` (`Action: delayed`) or `delivered`;
//! an ARF report is a complaint (and suppresses); an out-of-office reply is
//! recorded as `auto_replied` and changes nothing. Who it is about comes
//! from the envelope address's token; mail to a role address is matched
//! through the VERP return path or the Message-ID of our message quoted
//! inside it.

use epistle_core::token::{TokenKey, recipient_id};
use epistle_core::{EmailAddress, RecipientStatus};
use epistle_mail::bounce::{self, Reason};
use epistle_store::{FeedbackUpdate, RecipientRef};
use serde_json::json;

use crate::hooks::MessageRef;

/// Role addresses on the bounce domain that take reports without a token.
pub const ROLE_ADDRESSES: [&str; 3] = ["postmaster", "abuse", "fbl"];

/// The bounce domain and the key its addresses are signed with.
#[derive(Clone)]
pub struct Inbound {
    domain: String,
    key: TokenKey,
}

/// Whom a mail to the bounce domain is about, from its envelope address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `bounce+<token>`: a report on this recipient (row id).
    Bounce(String),
    /// `unsubscribe+<token>`: this recipient asks to be taken off.
    Unsubscribe(String),
    /// A role address: the mail itself must say whom it is about.
    Role,
}

impl Inbound {
    pub fn new(domain: &str, key: TokenKey) -> Self {
        Self { domain: domain.trim().trim_end_matches('.').to_ascii_lowercase(), key }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether the address is on the bounce domain.
    pub fn is_ours(&self, a: &EmailAddress) -> bool {
        a.domain().trim_end_matches('.').eq_ignore_ascii_case(&self.domain)
    }

    /// Whom mail to this bounce-domain address is about; `None` when nobody
    /// here takes it (a forged or damaged token, an unknown name).
    pub fn target(&self, a: &EmailAddress) -> Option<Target> {
        let local = a.local_part();
        if let Some((m, i)) = self.key.open_verp(local) {
            return Some(Target::Bounce(recipient_id(&m, i)));
        }
        if let Some((m, i)) = self.key.open_address_local("unsubscribe", local) {
            return Some(Target::Unsubscribe(recipient_id(&m, i)));
        }
        ROLE_ADDRESSES.iter().any(|r| local.eq_ignore_ascii_case(r)).then_some(Target::Role)
    }

    /// The recipients whose VERP addresses (with a valid token) appear
    /// anywhere in a returned mail, usually as the `Return-Path` of the
    /// original message it quotes. In order, without repeats.
    pub fn quoted_recipients(&self, raw: &[u8]) -> Vec<String> {
        const PREFIX: &[u8] = b"bounce+";
        const HEX: usize = 52;
        let mut out: Vec<String> = vec![];
        let mut i = 0;
        while i + PREFIX.len() + HEX < raw.len() {
            if !raw[i..i + PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
                i += 1;
                continue;
            }
            let end = i + PREFIX.len() + HEX;
            let candidate = &raw[i..end];
            let boundary = raw.get(end) == Some(&b'@');
            if boundary
                && let Ok(local) = std::str::from_utf8(candidate)
                && let Some((m, idx)) = self.key.open_verp(local)
            {
                let id = recipient_id(&m, idx);
                if !out.contains(&id) {
                    out.push(id);
                }
                i = end;
            } else {
                i += 1;
            }
        }
        out
    }
}

/// Our messages whose Message-ID a returned mail quotes (the original's
/// headers inside a DSN or ARF report), leaving out the returned mail's own.
pub fn quoted_messages(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n');
    let mut own: Option<String> = None;
    // The outer head: its Message-ID is the report's own.
    for line in lines.by_ref() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if let Some(v) = header_value(line, "message-id") {
            own = Some(v.to_string());
        }
    }
    let mut out: Vec<String> = vec![];
    for line in lines {
        let line = line.trim_end_matches('\r').trim_start_matches('>').trim_start();
        let Some(v) = header_value(line, "message-id") else { continue };
        if own.as_deref() == Some(v) {
            continue;
        }
        if let Some(id) = MessageRef::HeaderMessageId(v.to_string()).our_id()
            && !out.contains(&id)
        {
            out.push(id);
        }
    }
    out
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, v) = line.split_once(':')?;
    n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

/// The entry of a classification that matters most for one recipient: a
/// final failure or complaint over a delay, a delay over a success.
fn most_telling(found: &[bounce::Recipient]) -> Option<&bounce::Recipient> {
    let rank = |r: &bounce::Recipient| match r.reason {
        Reason::Feedback => 0,
        Reason::Delivered => 3,
        Reason::Vacation => 4,
        _ if r.delayed => 2,
        _ => 1,
    };
    found.iter().min_by_key(|r| rank(r))
}

/// What a returned mail does to the recipient it is about, as a store
/// update; `None` when the mail is no report, bounce or auto-reply.
pub fn update_of(recipient: RecipientRef, found: &[bounce::Recipient], now: i64) -> Option<FeedbackUpdate> {
    let r = most_telling(found)?;
    let detail = (!r.diagnostic.is_empty()).then(|| r.diagnostic.clone());
    let mut data = json!({"reason": r.reason.as_str()});
    if !r.status.is_empty() {
        data["status"] = json!(r.status);
    }
    if !r.reply_code.is_empty() {
        data["reply_code"] = json!(r.reply_code);
    }
    let (status, event, suppress, source) = match r.reason {
        Reason::Feedback => {
            if !r.feedback_type.is_empty() {
                data["feedback_type"] = json!(r.feedback_type);
            }
            if bounce::is_complaint(&r.feedback_type) {
                (Some(RecipientStatus::Complained), "complained", Some("complaint"), "arf")
            } else {
                (None, "feedback", None, "arf")
            }
        }
        Reason::Vacation => (None, "auto_replied", None, "auto-reply"),
        Reason::Delivered => (Some(RecipientStatus::Delivered), "delivered", None, "dsn"),
        _ if r.delayed => (Some(RecipientStatus::Deferred), "deferred", None, "dsn"),
        _ => {
            data["hard"] = json!(r.hard_bounce);
            (Some(RecipientStatus::Bounced), "bounced", r.hard_bounce.then_some("hard_bounce"), "dsn")
        }
    };
    data["source"] = json!(source);
    Some(FeedbackUpdate {
        recipient,
        status,
        event: event.into(),
        detail,
        data: Some(data.to_string()),
        suppress: suppress.map(str::to_string),
        source: source.into(),
        at: now,
    })
}

/// Everything a mail to a role address says, for the recipients it names:
/// through our VERP addresses quoted in it, else through our Message-ID
/// and the address the report gives.
pub fn role_updates(inbound: &Inbound, raw: &[u8], found: &[bounce::Recipient], now: i64) -> Vec<FeedbackUpdate> {
    let quoted = inbound.quoted_recipients(raw);
    if !quoted.is_empty() {
        return quoted.into_iter().filter_map(|id| update_of(RecipientRef::Id(id), found, now)).collect();
    }
    let messages = quoted_messages(raw);
    let mut out = vec![];
    for message_id in &messages {
        for r in found.iter().filter(|r| !r.email.is_empty()) {
            let one = std::slice::from_ref(r);
            let target = RecipientRef::Address { message_id: message_id.clone(), email: r.email.clone() };
            out.extend(update_of(target, one, now));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> Inbound {
        Inbound::new("Bounces.Shop.Example.", TokenKey::new([7; 32]))
    }

    const MSG: &str = "msg_01jd6b0k1x8n3r4s5t6v7w8x9y";

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn targets_come_from_signed_local_parts() {
        let ib = inbound();
        let key = TokenKey::new([7; 32]);
        let verp = key.verp_local(MSG, 3).unwrap();
        let unsub = key.address_local("unsubscribe", MSG, 4).unwrap();
        assert_eq!(
            ib.target(&addr(&format!("{verp}@bounces.shop.example"))),
            Some(Target::Bounce(recipient_id(MSG, 3)))
        );
        assert_eq!(
            ib.target(&addr(&format!("{}@bounces.shop.example", verp.to_ascii_uppercase()))),
            Some(Target::Bounce(recipient_id(MSG, 3))),
            "mail systems may fold the case of a local part"
        );
        assert_eq!(
            ib.target(&addr(&format!("{unsub}@bounces.shop.example"))),
            Some(Target::Unsubscribe(recipient_id(MSG, 4)))
        );
        assert_eq!(ib.target(&addr("Postmaster@bounces.shop.example")), Some(Target::Role));
        assert_eq!(ib.target(&addr("someone@bounces.shop.example")), None);
        // A token of another key, and one changed by a character, name nobody.
        let foreign = TokenKey::new([8; 32]).verp_local(MSG, 3).unwrap();
        assert_eq!(ib.target(&addr(&format!("{foreign}@bounces.shop.example"))), None);
        let mut tampered = verp.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(ib.target(&addr(&format!("{tampered}@bounces.shop.example"))), None);
        // The unsubscribe token is not a bounce token, nor the other way.
        assert_eq!(key.open_verp(&unsub), None);
        assert!(ib.is_ours(&addr("x@BOUNCES.shop.example")));
        assert!(!ib.is_ours(&addr("x@shop.example")));
    }

    #[test]
    fn quoted_return_paths_and_message_ids_are_found() {
        let ib = inbound();
        let key = TokenKey::new([7; 32]);
        let verp = key.verp_local(MSG, 1).unwrap();
        let forged = TokenKey::new([9; 32]).verp_local(MSG, 2).unwrap();
        let raw = format!(
            "From: MAILER-DAEMON@mx.example\r\nMessage-ID: <01jd6b0k1x8n3r4s5t6v7w8x90@mx.example>\r\n\r\n\
             --b\r\nContent-Type: message/rfc822\r\n\r\nReturn-Path: <{verp}@bounces.shop.example>\r\n\
             Return-Path: <{forged}@bounces.shop.example>\r\nReturn-Path: <{verp}@bounces.shop.example>\r\n\
             Message-ID: <01JD6B0K1X8N3R4S5T6V7W8X9Y@shop.example>\r\nMessage-ID: <not-ours@else.example>\r\n"
        );
        assert_eq!(ib.quoted_recipients(raw.as_bytes()), vec![recipient_id(MSG, 1)]);
        assert_eq!(quoted_messages(raw.as_bytes()), vec![MSG.to_string()], "the report's own id is left out");
        assert!(ib.quoted_recipients(b"bounce+").is_empty());
        assert!(quoted_messages(b"").is_empty());
    }

    fn found(reason: Reason, hard: bool, delayed: bool) -> bounce::Recipient {
        bounce::Recipient {
            email: "jane@example.com".into(),
            status: "5.1.1".into(),
            reply_code: "550".into(),
            reason,
            hard_bounce: hard,
            feedback_type: if reason == Reason::Feedback { "abuse".into() } else { String::new() },
            diagnostic: "user unknown".into(),
            delayed,
        }
    }

    #[test]
    fn reports_map_to_statuses_and_suppressions() {
        let id = || RecipientRef::Id("r".into());
        let u = update_of(id(), &[found(Reason::UserUnknown, true, false)], 5).unwrap();
        assert_eq!(
            (u.status, u.event.as_str(), u.suppress.as_deref()),
            (Some(RecipientStatus::Bounced), "bounced", Some("hard_bounce"))
        );
        let u = update_of(id(), &[found(Reason::MailboxFull, false, false)], 5).unwrap();
        assert_eq!((u.status, u.suppress), (Some(RecipientStatus::Bounced), None));
        let u = update_of(id(), &[found(Reason::MailboxFull, false, true)], 5).unwrap();
        assert_eq!((u.status, u.event.as_str()), (Some(RecipientStatus::Deferred), "deferred"));
        let u = update_of(id(), &[found(Reason::Feedback, false, false)], 5).unwrap();
        assert_eq!(
            (u.status, u.suppress.as_deref(), u.source.as_str()),
            (Some(RecipientStatus::Complained), Some("complaint"), "arf")
        );
        assert!(u.data.unwrap().contains("\"feedback_type\":\"abuse\""));
        // Reports that are not the recipient objecting change nothing but the log.
        for kind in ["not-spam", "auth-failure", "Auth-Failure"] {
            let mut f = found(Reason::Feedback, false, false);
            f.feedback_type = kind.into();
            let u = update_of(id(), &[f], 5).unwrap();
            assert_eq!((u.status, u.event.as_str(), u.suppress.as_deref()), (None, "feedback", None), "{kind}");
            assert!(u.data.unwrap().contains(&format!("\"feedback_type\":\"{kind}\"")));
        }
        for kind in ["fraud", "virus", "other", ""] {
            let mut f = found(Reason::Feedback, false, false);
            f.feedback_type = kind.into();
            let u = update_of(id(), &[f], 5).unwrap();
            assert_eq!(
                (u.status, u.suppress.as_deref()),
                (Some(RecipientStatus::Complained), Some("complaint")),
                "{kind}"
            );
        }
        let u = update_of(id(), &[found(Reason::Vacation, false, false)], 5).unwrap();
        assert_eq!((u.status, u.event.as_str(), u.suppress), (None, "auto_replied", None));
        // A failure outweighs a delay and a success reported in the same mail.
        let u = update_of(
            id(),
            &[
                found(Reason::Delivered, false, false),
                found(Reason::MailboxFull, false, true),
                found(Reason::UserUnknown, true, false),
            ],
            5,
        )
        .unwrap();
        assert_eq!(u.event, "bounced");
        assert!(update_of(id(), &[], 5).is_none());
    }
}
