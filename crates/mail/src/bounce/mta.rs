//! What a known reporting MTA's own wording says. A bounce written by Exim names the cause in
//! Exim's own words (its source's `addr->message` strings: "Unrouteable address", "retry
//! timeout exceeded", …), which mean more coming from Exim than from an arbitrary remote
//! reply. The reader turns those into a hint that [`super::reason::decide_with`] weighs.

use super::reason::Reason;
use super::text::{Phase, command_word};

/// The MTA that wrote the bounce, where its format says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Mta {
    Exim,
    #[default]
    Other,
}

/// Subjects Exim gives its bounces and warnings.
const EXIM_SUBJECTS: &[&str] = &[
    "mail delivery failed",
    "mail failure",
    "message frozen",
    "warning: message ",
    "error(s) in forwarding or filtering",
    "delivery status notification",
];

/// Exim's message ids: `1rJ9Xx-000Abc-Def0` style, `<` 7-6-2 (before 4.97) or 6-11-4 (since).
fn exim_message_id(id: &str) -> bool {
    let id = id.trim().trim_start_matches('<');
    let Some((local, _)) = id.split_once('@') else { return false };
    let lens: Vec<usize> = local.split('-').map(str::len).collect();
    (lens == [7, 6, 2] || lens == [6, 11, 4]) && local.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Which MTA wrote the mail: two of Exim's marks (its sender name, its subjects, its message
/// ids), Exim's opening sentence, or the headers of Exim-based MXLogic.
pub(crate) fn detect(headers_lower: &str, subject: &str, message_id: &str, body: &str) -> Mta {
    let subject = subject.to_ascii_lowercase();
    let marks = usize::from(headers_lower.contains("from: mail delivery system"))
        + usize::from(EXIM_SUBJECTS.iter().any(|s| subject.contains(s)))
        + usize::from(exim_message_id(message_id));
    let mxlogic = ["\nx-mx-bounce:", "\nx-mxl-hash:", "\nx-mxl-notehash:"].iter().any(|h| headers_lower.contains(h))
        || message_id.contains("<mxl~");
    if marks >= 2 || mxlogic || body.contains("This message was created automatically by mail delivery software.") {
        Mta::Exim
    } else {
        Mta::Other
    }
}

/// Exim's own failure messages and the reason each means.
const EXIM_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::UserUnknown, &["user not found"]),
    (
        Reason::HostUnknown,
        &[
            "all host address lookups failed permanently",
            "all relevant mx records point to non-existent hosts",
            "unrouteable address",
        ],
    ),
    (Reason::MailboxFull, &["mailbox is full", "error: quota exceed"]),
    (
        Reason::NotAccept,
        &["an mx or srv record indicated no smtp service", "no host found for existing smtp connection"],
    ),
    (
        Reason::SyntaxError,
        &[
            "angle-brackets nested too deep",
            "expected word or \"<\"",
            "domain missing in source-routed address",
            "malformed address:",
        ],
    ),
    (
        Reason::SystemError,
        &["delivery to file forbidden", "delivery to pipe forbidden", "local delivery failed", "lmtp error after "],
    ),
    (Reason::ContentError, &["too many \"received\" headers"]),
];

/// Exim's words for a message it still holds or gave up retrying.
const EXIM_DELAYED: &[&str] = &[
    "retry timeout exceeded",
    "no action is required on your part",
    "retry time not reached for any host after a long failure period",
    "all hosts have been failing for a long time",
    "delay reason: ",
    "has been frozen",
    "was frozen on arrival by ",
];

/// What the reporting MTA's own wording in `text` (the recipient's error lines) says.
pub(crate) fn hint(mta: Mta, text: &str) -> Option<Reason> {
    match mta {
        Mta::Other => None,
        Mta::Exim => {
            let t = text.to_ascii_lowercase();
            let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
            // The remote server refused us before any recipient: at HELO the client was
            // blocked; at MAIL FROM the reply alone must say why. (Refused at the greeting,
            // "after initial connection", the reply says why.)
            if t.contains("smtp error from remote") {
                match command_word(text) {
                    Some(Phase::Connect) => return Some(Reason::Blocked),
                    Some(Phase::MailFrom) => return Some(Reason::OnHold),
                    _ => {}
                }
            }
            EXIM_MESSAGES
                .iter()
                .find(|(_, words)| words.iter().any(|w| t.contains(w)))
                .map(|(r, _)| *r)
                .or_else(|| EXIM_DELAYED.iter().any(|w| t.contains(w)).then_some(Reason::Expired))
                .or_else(|| t.contains("pipe to |").then_some(Reason::MailerError))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exim_is_known_by_two_marks_or_its_opening_sentence() {
        let h = "from: mail delivery system <mailer-daemon@mx.example>\n";
        assert_eq!(detect(h, "Mail delivery failed: returning message to sender", "", ""), Mta::Exim);
        assert_eq!(detect("", "Mail delivery failed", "<E1P1YNN-0003AD-Ga@example.org>", ""), Mta::Exim);
        assert_eq!(detect("", "Mail delivery failed", "<1rJ9Xx-000AbcDEFgh-Def0@example.org>", ""), Mta::Exim);
        assert_eq!(detect("", "Mail delivery failed", "<abc@example.org>", ""), Mta::Other);
        assert_eq!(
            detect("", "", "", "This message was created automatically by mail delivery software.\n"),
            Mta::Exim
        );
        assert_eq!(detect("", "Undelivered Mail Returned to Sender", "", ""), Mta::Other);
    }

    #[test]
    fn exim_wordings_give_their_reasons() {
        let e = |t: &str| hint(Mta::Exim, t);
        assert_eq!(e("  a@b.example\n    Unrouteable address"), Some(Reason::HostUnknown));
        assert_eq!(e("retry timeout exceeded"), Some(Reason::Expired));
        assert_eq!(e("Too many \"Received\" headers - suspected mail loop"), Some(Reason::ContentError));
        assert_eq!(
            e("SMTP error from remote mail server after MAIL FROM:<s@x.example>: 550 go away"),
            Some(Reason::OnHold)
        );
        assert_eq!(e("SMTP error from remote mail server after EHLO x.example: 554 no"), Some(Reason::Blocked));
        // Refused at the greeting: the reply says why.
        assert_eq!(e("SMTP error from remote mail server after initial connection: 554 no PTR"), None);
        assert_eq!(e("SMTP error from remote mail server after RCPT TO:<a@b.example>: 550 5.1.1 unknown"), None);
        assert_eq!(hint(Mta::Other, "Unrouteable address"), None);
    }
}
