//! Bounce classification: what a bounce, delivery status notification (RFC 3464), abuse
//! report (RFC 5965 ARF) or auto-reply says about each recipient.
//!
//! [`classify_mail`] reads a whole returned mail; [`classify_reply`] reads one live SMTP
//! reply. Both end in the same decision ([`reason::decide`]): the reasons a specific status
//! code or wording names, in a fixed order (a missing mailbox counts against the address only
//! at RCPT TO, with an x.1.x code or in words of a directory lookup), then the looser
//! wordings, the reason the code names, the code's class and the reply code.
//! `docs/bounces.md` describes it.

mod lda;
mod mta;
mod notification;
mod parse;
mod provider;
mod reason;
mod rhost;
mod text;

use serde::Serialize;

pub use reason::Reason;

/// One recipient a returned mail reports on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// The recipient address (lower-cased domain untouched), or empty when the mail names none.
    pub email: String,
    /// RFC 3463 enhanced status code (`5.1.1`), or empty.
    pub status: String,
    /// SMTP reply code (`550`), or empty.
    pub reply_code: String,
    pub reason: Reason,
    /// The address itself is bad: stop sending to it.
    pub hard_bounce: bool,
    /// For complaints (`reason` = `feedback`): the ARF Feedback-Type (`abuse`, `opt-out`, …).
    pub feedback_type: String,
    /// The diagnostic text the reason was read from (may be empty).
    pub diagnostic: String,
    /// The reporting server still holds the message and keeps trying (a DSN with
    /// `Action: delayed`): a warning, not a final failure.
    pub delayed: bool,
}

/// Classifies a returned mail: one entry per recipient it reports on, in the order they
/// appear. Mail that is not a bounce, report or auto-reply gives an empty list. Never panics.
pub fn classify_mail(raw: &[u8]) -> Vec<Recipient> {
    parse::classify(raw)
}

/// Classifies a live SMTP reply (`550`, `Some("5.1.1")`, `"user unknown"`): the reason and
/// whether it is a hard bounce, read as the answer to RCPT TO. Uses the same rules as
/// [`classify_mail`]. [`classify_reply_to`] also knows whom the reply was about.
pub fn classify_reply(code: u16, enhanced: Option<&str>, text: &str) -> (Reason, bool) {
    classify_reply_to("", code, enhanced, text)
}

/// [`classify_reply`] for a reply about `recipient`: where the recipient's domain belongs to
/// a service with documented replies of its own (Gmail, Outlook.com, Yahoo, NTT DOCOMO, …),
/// or the text names such a service's host, that service's reading comes before the general
/// one, as for returned mail.
pub fn classify_reply_to(recipient: &str, code: u16, enhanced: Option<&str>, text: &str) -> (Reason, bool) {
    let status = enhanced.and_then(text::status_in).or_else(|| text::status_in(text)).unwrap_or_default();
    let permanent = reason::permanent(&status, code);
    let phase = Some(text::Phase::RcptTo);
    let by_service = || {
        let remote = rhost::host_in(text);
        let p = rhost::provider(recipient, remote.as_deref(), None)?;
        // The services' wordings are written as whole replies ("550 Unknown user").
        let whole = match (code, text.trim_start().starts_with(&code.to_string())) {
            (0, _) | (_, true) => text.to_string(),
            _ => format!("{code} {text}"),
        };
        let code = (code != 0).then_some(code);
        rhost::reason(p, &rhost::Fact { status: &status, code, diag: &whole, phase })
    };
    match provider::provider_reason(&reason::normalize(text)).or_else(by_service) {
        Some(r) => (r, r.is_hard(permanent)),
        None => {
            let (r, hard) = reason::decide(&status, code, text, phase);
            (reason::held_if_worded(r, !text.trim().is_empty()), hard)
        }
    }
}

/// Whether an ARF report of this `Feedback-Type` is the recipient
/// objecting to the mail. `not-spam` says the opposite (the recipient took
/// it out of the spam folder), and `auth-failure` (RFC 6591) is a receiving
/// system telling the sender that SPF, DKIM or DMARC failed: neither is a
/// reason to stop mailing the person, and both are recorded as `feedback`
/// events only. Every other type (`abuse`, `fraud`, `virus`, `other`, none
/// or one we do not know) counts as a complaint, as mailbox providers'
/// feedback loops mean them.
pub fn is_complaint(feedback_type: &str) -> bool {
    !(feedback_type.eq_ignore_ascii_case("not-spam") || feedback_type.eq_ignore_ascii_case("auth-failure"))
}
