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
    Qmail,
    Gmail,
    InterScan,
    OpenSmtpd,
    Courier,
    DragonFly,
    Notes,
    Domino,
    /// KDDI (au); `spam_signed`: its `X-SPASIGN: NG` header says its filter refused the mail.
    Kddi {
        spam_signed: bool,
    },
    IMail,
    /// Oracle (Sun) Communications Messaging Server.
    MessagingServer,
    /// Amazon SES receiving mail for its customers (receipt rules that bounce): its summary
    /// status (`5.1.0`) gives way to the one in the reply it quotes.
    ReceivingSes,
    /// Amazon WorkMail (sends through SES too).
    AmazonWorkMail,
    /// The fml mailing-list manager; `subject`: the reason its notice's subject names.
    Fml {
        subject: Option<Reason>,
    },
    /// Verizon Wireless' SMS/MMS gateways (vtext.com, vzwpix.com).
    Verizon,
    /// au / KDDI's EZweb; `spam_signed` as for [`Mta::Kddi`].
    Ezweb {
        spam_signed: bool,
    },
    Gmx,
    Zoho,
    McAfee,
    Biglobe,
    EinsUndEins,
    MailRu,
    /// Exchange 2000/2003 (`MSEXCH:` diagnostics with a hex code).
    Exchange2003,
    /// Outlook.com / Hotmail's older DSN format.
    Outlook,
    Aol,
    /// Sendmail ("Returned mail: see transcript for details"): `command` is the first client
    /// command of its session transcript (`>>> DATA`), which is the one the failure answered
    /// (Sendmail writes only the failed command, or the pipelined group it belongs to);
    /// `replies`: the transcript has server replies (`<<< 550 …`).
    Sendmail {
        command: Option<Phase>,
        replies: bool,
    },
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

/// The header fields of lower-cased header text, unfolded: (`name`, value).
pub(crate) fn fields(headers_lower: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in headers_lower.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim(), value.trim().to_string()));
        }
    }
    out
}

/// Which MTA wrote the mail, by the marks each puts in its bounces (sender, subject, message
/// id, Received line, opening sentence).
pub(crate) fn detect(headers_lower: &str, subject: &str, message_id: &str, body: &str) -> Mta {
    let subject = subject.to_ascii_lowercase();
    let all = fields(headers_lower);
    // The unfolded value of the first `name:` header.
    let header = |name: &str| all.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v.as_str());
    let from = header("from");
    let received = |mark: &str| all.iter().any(|(n, v)| *n == "received" && v.contains(mark));
    let marks = usize::from(from.contains("mail delivery system"))
        + usize::from(EXIM_SUBJECTS.iter().any(|s| subject.contains(s)))
        + usize::from(exim_message_id(message_id));
    let mxlogic = ["\nx-mx-bounce:", "\nx-mxl-hash:", "\nx-mxl-notehash:"].iter().any(|h| headers_lower.contains(h))
        || message_id.contains("<mxl~");
    let has = |name: &str| all.iter().any(|(n, _)| *n == name);
    let message_id_l = message_id.to_ascii_lowercase();
    let mailer = if has("x-original-mailer") { header("x-original-mailer") } else { header("x-mailer") };
    let ezweb_marks = usize::from(from.contains("postmaster@ezweb.ne.jp"))
        + usize::from(from.contains("postmaster@au.com"))
        + usize::from(subject == "mail system error - returned mail")
        + usize::from(received("ezweb.ne.jp (ezweb mail) with") || received(".au.com ("))
        + usize::from(message_id_l.contains(".ezweb.ne.jp>") || message_id_l.contains(".au.com>"));
    let mailru_marks = usize::from(from.contains("mailer-daemon@") && from.contains("mail.ru"))
        + usize::from(message_id_l.contains(".mail.ru>") || message_id_l.contains("smailru.net>"))
        + usize::from(EXIM_SUBJECTS.iter().any(|s| subject.contains(s)));
    if has("x-ses-outgoing") && mailer == "amazon workmail" {
        Mta::AmazonWorkMail
    } else if has("x-ses-outgoing") {
        Mta::ReceivingSes
    } else if has("x-mlserver") && from.contains("-admin@") && message_id_l.contains(".fml") {
        Mta::Fml { subject: table(&subject, FML_SUBJECTS) }
    } else if from.contains("post_master@vtext.com") || from.contains("sysadmin@") && from.contains(".vzwpix.com") {
        Mta::Verizon
    } else if ezweb_marks >= 2 {
        Mta::Ezweb { spam_signed: header("x-spasign") == "ng" }
    } else if has("x-gmx-antispam") {
        Mta::Gmx
    } else if has("x-zohomail") {
        Mta::Zoho
    } else if header("x-nai-header").contains("modified by mcafee") && subject == "delivery status" {
        Mta::McAfee
    } else if from.contains("postmaster@")
        && subject.starts_with("returned mail:")
        && ["@biglobe.ne.jp", "@inacatv.ne.jp", "@tmtv.ne.jp", "@ttv.ne.jp"].iter().any(|d| from.contains(d))
    {
        Mta::Biglobe
    } else if from.starts_with("\"mail delivery system\"")
        && subject == "mail delivery failed: returning message to sender"
    {
        Mta::EinsUndEins
    } else if mailru_marks >= 3 {
        Mta::MailRu
    } else if has("x-ms-embedded-report")
        || header("x-mailer").starts_with("internet mail service (")
        || header("x-mailer").starts_with("microsoft exchange server internet mail connector")
        || header("x-mimeole").starts_with("produced by microsoft exchange")
        || received(" with internet mail service (")
    {
        Mta::Exchange2003
    } else if has("x-aol-ip") {
        Mta::Aol
    } else if usize::from(subject.contains("delivery status notification"))
        + usize::from(has("x-message-delivery"))
        + usize::from(has("x-message-info"))
        + usize::from(received(".hotmail.com"))
        >= 2
    {
        Mta::Outlook
    } else if from.contains("mailer-daemon@googlemail.com") && subject.contains("delivery status notification") {
        Mta::Gmail
    } else if received(" (dragonfly mail agent") {
        Mta::DragonFly
    } else if received(" (opensmtpd) with ") || body.contains("This is the MAILER-DAEMON, please DO NOT REPLY") {
        Mta::OpenSmtpd
    } else if marks >= 2
        || mxlogic
        || body.contains("This message was created automatically by mail delivery software.")
    {
        Mta::Exim
    } else if from.starts_with("\"interscan")
        || header("content-type").contains("interscan")
        || body.contains(" InterScan ")
    {
        Mta::InterScan
    } else if from.contains("courier mail server at ")
        || subject.contains("notice: mail delivery status.")
        || subject.contains("warning: delayed mail.")
        || message_id.trim().starts_with("<courier.")
    {
        Mta::Courier
    } else if subject.starts_with("undeliverable message") && body.contains("------- Failure Reasons") {
        Mta::Notes
    } else if subject.starts_with("delivery failure:") || subject.contains("delivery_failure") {
        Mta::Domino
    } else if from.contains(".dion.ne.jp")
        || header("reply-to").contains("no-reply@app.auone-net.jp")
        || received("ezweb.ne.jp (")
        || received(".au.com (")
    {
        Mta::Kddi { spam_signed: header("x-spasign") == "ng" }
    } else if subject.starts_with("undeliverable mail ") || header("x-mailer").starts_with("<smtp32 v") {
        Mta::IMail
    } else if header("content-type").contains("boundary_(id_") || subject.starts_with("delivery notification: ") {
        Mta::MessagingServer
    } else if subject.ends_with("see transcript for details") || subject.starts_with("warning: ") {
        let mut command = None;
        let mut replies = false;
        for line in body.lines() {
            if let Some(c) = line.strip_prefix(">>> ")
                && command.is_none()
            {
                command = sendmail_command(c);
            }
            replies |= line.starts_with("<<< ");
        }
        Mta::Sendmail { command, replies }
    } else if subject == "failure notice" || received("(qmail ") {
        // Last: a qmail hop may be anywhere on the way, whoever wrote the bounce.
        Mta::Qmail
    } else {
        Mta::Other
    }
}

/// The SMTP phase of a client command as Sendmail's transcript writes it (`RCPT To:<a>`).
fn sendmail_command(c: &str) -> Option<Phase> {
    let word = c.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
    match word.as_str() {
        "HELO" | "EHLO" | "STARTTLS" | "AUTH" => Some(Phase::Connect),
        "MAIL" => Some(Phase::MailFrom),
        "RCPT" => Some(Phase::RcptTo),
        "DATA" | "BDAT" | "QUIT" | "." => Some(Phase::Data),
        _ => None,
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

/// qmail's and qmail-ldap's own messages.
const QMAIL_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::HostUnknown, &["sorry, i couldn't find any host "]),
    (Reason::MailboxFull, &["disk quota exceeded"]),
    (Reason::MesgTooBig, &["message size exceeds fixed maximum message size"]),
    (
        Reason::NetworkError,
        &[
            "sorry, i wasn't able to establish an smtp connection",
            "although i'm listed as a best-preference mx or a for that host",
        ],
    ),
    (Reason::NotAccept, &["sorry, i couldn't find a mail exchanger or ip address"]),
    (Reason::SystemFull, &["mailbox unavailable (not enough free space)"]),
    (Reason::UserUnknown, &["no mailbox here by that name"]),
    (Reason::ExceedLimit, &["exeeded the maximum size the user accepts", "exceeded the maximum size the user accepts"]),
    (Reason::Suspend, &["mailaddress is administrativ"]),
    (
        Reason::SystemError,
        &[
            "bad interpreter: no such file or directory",
            "system error",
            "automatic homedir creator crashed",
            "illegal value in ldap attribute",
            "ldap attribute is not given but mandatory",
            "timeout while performing search on ldap server",
            "too many results returned but needs to be unique",
            "error while executing qmail-forward",
            "error in automatic homedir creation",
            "temporary failure in ldap lookup",
            "unable to contact ldap server",
            "unable to login into ldap server",
        ],
    ),
];

const OPENSMTPD_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::Expired, &["envelope expired"]),
    (Reason::SecurityError, &["could not retrieve credentials"]),
    (Reason::HostUnknown, &["invalid domain name", "domain does not exist"]),
    (
        Reason::NetworkError,
        &[
            "address family mismatch on destination mxs",
            "all routes to destination blocked",
            "bad dns lookup error code",
            "could not retrieve source address",
            "loop detected",
            "network error on destination mxs",
            "no valid route to remote mx",
            "no valid route to destination",
            "temporary failure in mx lookup",
        ],
    ),
    (
        Reason::NotAccept,
        &["destination seem to reject all mails", "no mx found for domain", "no mx found for destination"],
    ),
];

const COURIER_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::HostUnknown, &["no such domain."]),
    (Reason::SystemError, &["this domain's dns violates rfc 1035."]),
    (Reason::NetworkError, &["dns lookup failed."]),
];

const DRAGONFLY_MESSAGES: &[(Reason, &[&str])] =
    &[(Reason::Expired, &["could not deliver for the last "]), (Reason::HostUnknown, &["dns lookup failure: host "])];

const NOTES_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::NetworkError, &["message has exceeded maximum hop count"]),
    (Reason::UserUnknown, &["user not listed in public name & address book"]),
];

const DOMINO_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::Filtered, &["cannot route mail to user"]),
    (Reason::SystemError, &["several matches found in domino directory"]),
    (
        Reason::UserUnknown,
        &[
            "not listed in domino directory",
            "not listed in public name & address book",
            "no se encuentra en el directorio de domino",
            "dans l'annuaire domino",
        ],
    ),
];

const KDDI_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::MailboxFull, &["as their mailbox is full"]),
    (Reason::NoRelaying, &["due to the following smtp relay error"]),
    (Reason::HostUnknown, &["as the remote domain doesnt exist", "as the remote domain doesn't exist"]),
];

const IMAIL_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::HostUnknown, &["unknown host"]),
    (Reason::UserUnknown, &["unknown user", "invalid final delivery userid"]),
    (Reason::MailboxFull, &["user mailbox exceeds allowed size"]),
    (Reason::VirusDetected, &["requested action not taken: virus detected"]),
    (Reason::SpamDetected, &["blacklisted url in message"]),
    (Reason::Expired, &["delivery failed "]),
];

const FML_MESSAGES: &[(Reason, &[&str])] = &[
    (
        Reason::Rejected,
        &[
            " header may cause mail loop",
            "not member article from ",
            "reject mail from ",
            "reject spammers:",
            "you are not a member of this mailing list",
        ],
    ),
    (Reason::SystemError, &[" has detected a loop condition so that", "duplicated message-id", "loop back warning:"]),
    (Reason::SecurityError, &["security alert:"]),
];

/// What fml's notice subjects say.
const FML_SUBJECTS: &[(Reason, &[&str])] = &[
    (
        Reason::Rejected,
        &[" are not member", "not member article from ", "reject mail ", "spam mail from a spammer is rejected"],
    ),
    (
        Reason::SystemError,
        &["fml system error message", "loop alert: ", "loop back warning: ", "warning: unix from loop"],
    ),
    (Reason::SecurityError, &["security alert"]),
];

const VERIZON_MESSAGES: &[(Reason, &[&str])] =
    &[(Reason::UserUnknown, &["550 - requested action not taken: no such user here", "no valid recipients"])];

const EZWEB_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::Expired, &["your message was not delivered within "]),
    (Reason::MailboxFull, &["the user(s) account is temporarily over quota"]),
    (Reason::OnHold, &["each of the following recipients was rejected by a remote mail server"]),
    (Reason::Suspend, &["the user(s) account is disabled.", "the user(s) account is temporarily limited."]),
];

const BIGLOBE_MESSAGES: &[(Reason, &[&str])] = &[
    (Reason::Filtered, &["mail delivery failed... user unknown"]),
    (Reason::MailboxFull, &["the number of messages in recipient's mailbox exceeded the local limit."]),
];

/// Exchange 2000/2003's `MSEXCH:` codes (the hex number in parentheses).
const EXCHANGE2003_CODES: &[(&str, Reason)] = &[
    ("000c05a6", Reason::UserUnknown),
    ("000c0595", Reason::Filtered),
    ("00010256", Reason::SystemError),
    ("000d06b5", Reason::SystemError),
    ("00120270", Reason::NetworkError),
    ("00050311", Reason::ContentError),
    ("000502cc", Reason::ContentError),
    ("000b0981", Reason::SecurityError),
    ("000b099c", Reason::OnHold),
    ("000b09aa", Reason::OnHold),
    ("000b09b6", Reason::OnHold),
];

/// Gmail's relay states: the SMTP command its attempt had reached, and what a failure there
/// means.
fn gmail_state(t: &str) -> Option<(Phase, Reason)> {
    let i = t.find("(state ")?;
    let n: String = t[i + 7..].chars().take_while(char::is_ascii_digit).collect();
    Some(match n.as_str() {
        "6" => (Phase::MailFrom, Reason::FailedStartTls),
        "8" => (Phase::Connect, Reason::SystemError),
        "9" => (Phase::Connect, Reason::FailedStartTls),
        "13" => (Phase::Connect, Reason::Blocked),
        "14" => (Phase::RcptTo, Reason::UserUnknown),
        "15" | "17" | "18" => (Phase::Data, Reason::Filtered),
        _ => return None,
    })
}

/// Exchange's categorised error codes (`RESOLVER.ADR.RecipNotFound`, `QUEUE.Expired`, …).
fn exchange_code(t: &str) -> Option<Reason> {
    const CODES: &[(&str, Reason)] = &[
        ("resolver.adr.recipnotfound", Reason::UserUnknown),
        ("resolver.adr.recipientnotfound", Reason::UserUnknown),
        ("resolver.adr.exrecipnotfound", Reason::UserUnknown),
        ("resolver.adr.badprimary", Reason::SystemError),
        ("resolver.adr.invalidinsmtp", Reason::SystemError),
        ("resolver.adr.ambiguous", Reason::SystemError),
        ("resolver.adr.reciplimit", Reason::TooManyConn),
        ("resolver.rst.authrequired", Reason::SecurityError),
        ("resolver.rst.notauthorized", Reason::Rejected),
        ("resolver.rst.recipsizelimit", Reason::ExceedLimit),
        ("queue.expired", Reason::Expired),
    ];
    CODES.iter().find(|(code, _)| t.contains(code)).map(|(_, r)| *r)
}

/// Exim's own failure and delay messages (Mail.Ru runs Exim and writes the same).
fn exim_words(t: &str) -> Option<Reason> {
    table(t, EXIM_MESSAGES).or_else(|| EXIM_DELAYED.iter().any(|w| t.contains(w)).then_some(Reason::Expired))
}

fn table(t: &str, table: &[(Reason, &[&str])]) -> Option<Reason> {
    table.iter().find(|(_, words)| words.iter().any(|w| t.contains(w))).map(|(r, _)| *r)
}

/// What the reporting MTA's own words say about one recipient.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hint {
    /// The reason its wording names (weighed by [`super::reason::decide_with`]).
    pub reason: Option<Reason>,
    /// The SMTP command its format names, over what the text seems to say.
    pub phase: Option<Phase>,
}

/// What the reporting MTA's own wording in `text` (the recipient's error lines) says.
pub(crate) fn hint(mta: Mta, addr: &str, text: &str) -> Hint {
    let t = text.to_ascii_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    let reason = |r: Option<Reason>| Hint { reason: r, phase: None };
    if let Some(r) = exchange_code(&t) {
        return reason(Some(r));
    }
    match mta {
        Mta::Other => Hint::default(),
        Mta::Exim => {
            // The remote server refused us before any recipient: at HELO the client was
            // blocked; at MAIL FROM the reply alone must say why. (Refused at the greeting,
            // "after initial connection", the reply says why.)
            if t.contains("smtp error from remote") {
                match command_word(text) {
                    Some(Phase::Connect) => return reason(Some(Reason::Blocked)),
                    Some(Phase::MailFrom) => return reason(Some(Reason::OnHold)),
                    _ => {}
                }
            }
            reason(exim_words(&t).or_else(|| t.contains("pipe to |").then_some(Reason::MailerError)))
        }
        Mta::Qmail => {
            if t.contains(" but my name was rejected") {
                return Hint { reason: Some(Reason::Blocked), phase: Some(Phase::Connect) };
            }
            let long = t.contains("this message has been in the queue too long");
            if long && t.contains("does not like recipient") {
                return reason(Some(Reason::OnHold));
            }
            reason(table(&t, QMAIL_MESSAGES).or(long.then_some(Reason::Expired)))
        }
        Mta::Gmail => match gmail_state(&t) {
            // A specific status code in the reply says more than the state.
            Some((phase, r)) => {
                let status = super::text::status_in(text).filter(|s| !s.contains(".0"));
                let r = match status {
                    Some(s) => super::reason::status_name(&s),
                    None => Some(r),
                };
                Hint { reason: r, phase: Some(phase) }
            }
            None if t.contains("dns error: domain name not found")
                || t.contains("dns error: dns server returned answer with no data") =>
            {
                reason(Some(Reason::HostUnknown))
            }
            None if t.contains("dns error: could not contact dns servers")
                || t.contains("the recipient server did not accept our requests to connect") =>
            {
                reason(Some(Reason::Expired))
            }
            None => Hint::default(),
        },
        // The command of the transcript, else one the diagnostic names; replies without a
        // command answered the greeting or EHLO.
        Mta::Sendmail { command, replies } => Hint {
            reason: None,
            phase: command
                .or_else(|| super::text::phase_in(text))
                .or_else(|| command_word(text))
                .or(replies.then_some(Phase::Connect)),
        },
        Mta::ReceivingSes | Mta::AmazonWorkMail => Hint::default(),
        Mta::Fml { subject } => reason(table(&t, FML_MESSAGES).or(subject)),
        Mta::Verizon => reason(table(&t, VERIZON_MESSAGES)),
        Mta::Ezweb { spam_signed } => {
            if spam_signed {
                return reason(Some(Reason::Filtered));
            }
            // A refusal EZweb relays about an address elsewhere, quoting it first: the
            // address is unknown there.
            let domain = addr.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
            let elsewhere = !addr.is_empty() && domain != "ezweb.ne.jp" && domain != "au.com";
            reason(
                table(&t, EZWEB_MESSAGES)
                    .or_else(|| (elsewhere && text.trim_start().starts_with('<')).then_some(Reason::UserUnknown)),
            )
        }
        Mta::Gmx => reason(t.contains("delivery retry timeout exceeded").then_some(Reason::Expired)),
        Mta::Zoho => reason(t.contains("host not reachable").then_some(Reason::Expired)),
        // McAfee's gateway quotes the remote reply without saying at which command it came:
        // its "no such user" may be a filter's (the labels read it so), left to the reply.
        Mta::McAfee => Hint::default(),
        Mta::Biglobe => reason(table(&t, BIGLOBE_MESSAGES)),
        Mta::EinsUndEins => reason(t.contains("mail size limit exceeded").then_some(Reason::MesgTooBig)),
        Mta::MailRu => {
            // Mail.Ru runs Exim: a refusal at MAIL FROM is about the sender, at HELO about
            // the client.
            match command_word(text) {
                Some(Phase::MailFrom) if t.contains("smtp error from remote") => reason(Some(Reason::Rejected)),
                Some(Phase::Connect) if t.contains("smtp error from remote") => reason(Some(Reason::Blocked)),
                _ => reason(exim_words(&t)),
            }
        }
        Mta::Exchange2003 => {
            let code = t.split("msexch:").nth(1).and_then(|rest| {
                let inner = rest.split_once('(')?.1.split_once(')')?.0;
                Some(inner.trim().to_string())
            });
            reason(code.and_then(|c| EXCHANGE2003_CODES.iter().find(|(k, _)| *k == c).map(|(_, r)| *r)))
        }
        // Their own wordings are the ones their servers answer with (see `rhost`).
        Mta::Outlook => reason(super::rhost::words(&t, super::rhost::OUTLOOK)),
        Mta::Aol => reason(super::rhost::words(&t, super::rhost::AOL)),
        Mta::MessagingServer => reason(t.contains("illegal host/domain name found").then_some(Reason::HostUnknown)),
        Mta::InterScan => reason(t.contains("unable to deliver").then_some(Reason::UserUnknown)),
        Mta::OpenSmtpd => reason(table(&t, OPENSMTPD_MESSAGES)),
        Mta::Courier => reason(table(&t, COURIER_MESSAGES)),
        Mta::DragonFly => reason(table(&t, DRAGONFLY_MESSAGES)),
        Mta::Notes => reason(table(&t, NOTES_MESSAGES)),
        Mta::Domino => reason(table(&t, DOMINO_MESSAGES)),
        Mta::Kddi { spam_signed } => {
            if spam_signed {
                return reason(Some(Reason::Filtered));
            }
            reason(table(&t, KDDI_MESSAGES))
        }
        Mta::IMail => reason(table(&t, IMAIL_MESSAGES)),
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
    fn other_mtas_are_known_by_their_marks() {
        // A qmail hop on the way does not make InterScan's notice a qmail bounce.
        let h = "received: (qmail 20255 invoked from network)\nreceived: from x by y with interscan messaging\n";
        assert_eq!(
            detect(h, "Mail could not be delivered", "", "****** Message from InterScan Messaging ******"),
            Mta::InterScan
        );
        assert_eq!(detect(h, "failure notice", "", ""), Mta::Qmail);
        // KDDI's filter mark, on a folded header block.
        let h = "from: no-reply@dion.ne.jp\nx-spasign: ng\nreceived: from a by\n lsean.ezweb.ne.jp (x)\n";
        assert_eq!(detect(h, "", "", ""), Mta::Kddi { spam_signed: true });
        assert_eq!(hint(Mta::Kddi { spam_signed: true }, "", "550 whatever").reason, Some(Reason::Filtered));
        assert_eq!(
            hint(Mta::Kddi { spam_signed: false }, "", "As their mailbox is full").reason,
            Some(Reason::MailboxFull)
        );
    }

    #[test]
    fn exim_wordings_give_their_reasons() {
        let e = |t: &str| hint(Mta::Exim, "", t).reason;
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
        assert_eq!(hint(Mta::Other, "", "Unrouteable address").reason, None);
    }
}
