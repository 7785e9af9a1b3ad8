//! Reading the mail: MIME parts, RFC 3464 / RFC 5965 fields, and plain-text bounces.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::Recipient;
use super::lda;
use super::mta::{Mta, detect, hint};
use super::notification::{Kind, Reported, ses_notification, settled};
use super::provider::provider_reason;
use super::reason::{
    Reason, decide_with, held_if_worded, normalize, permanent, reason_from_text, status_name, weighed,
};
use super::rhost::{self, Fact, host_in, received_from_hosts};
use super::text::{
    addresses, command_word, cut_original, first_address, is_status, phase_in, recipient_on_line, reply_code_in,
    reply_code_of_class, status_in, statuses_in, strip_html, transcript_phase,
};

/// What the parts of the mail hold.
#[derive(Default)]
struct Parts {
    plain: String,
    html: String,
    dsn: Vec<String>,
    arf: Vec<String>,
    /// Recipients of the returned original (its To / Cc), in order.
    original_to: Vec<String>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\r', "")
}

fn header_text(msg: &Message<'_>, name: &str) -> Option<String> {
    let root = msg.parts.first()?;
    let h = root.headers().iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let raw = msg.raw_message.get(h.offset_start as usize..h.offset_end as usize)?;
    Some(lossy(raw).trim().to_string())
}

fn all_headers_text(msg: &Message<'_>) -> String {
    let Some(root) = msg.parts.first() else { return String::new() };
    let end = (root.offset_body as usize).min(msg.raw_message.len());
    lossy(msg.raw_message.get(..end).unwrap_or_default())
}

fn original_recipients(m: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["To", "Cc"] {
        if let Some(v) = header_text(m, name) {
            out.extend(addresses(&v).into_iter().map(|(_, a)| a));
        }
    }
    out
}

fn collect(msg: &Message<'_>) -> Parts {
    let mut p = Parts::default();
    for part in &msg.parts {
        let (ctype, sub) = match part.content_type() {
            Some(ct) => (ct.ctype().to_ascii_lowercase(), ct.subtype().unwrap_or("").to_ascii_lowercase()),
            None => ("text".to_string(), "plain".to_string()),
        };
        let body_text = match &part.body {
            PartType::Text(t) | PartType::Html(t) => Some(t.replace('\r', "")),
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(lossy(b)),
            _ => None,
        };
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => p.dsn.extend(body_text),
            ("message", "feedback-report") => p.arf.extend(body_text),
            ("message", "rfc822" | "global") | ("text", "rfc822-headers") => {
                if let PartType::Message(m) = &part.body {
                    if p.original_to.is_empty() {
                        p.original_to = original_recipients(m);
                    }
                } else if let Some(t) = body_text
                    && p.original_to.is_empty()
                {
                    p.original_to = headers_block_recipients(&t);
                }
            }
            ("text", "html") => {
                if let Some(t) = body_text {
                    p.html.push_str(&strip_html(&t));
                    p.html.push('\n');
                }
            }
            ("text", _) => {
                if let Some(t) = body_text {
                    // A text part that is really a DSN (some MTAs label it text/plain).
                    if t.lines().any(|l| l.to_ascii_lowercase().starts_with("final-recipient:"))
                        && t.lines().any(|l| l.to_ascii_lowercase().starts_with("status:"))
                        && sub != "plain"
                    {
                        p.dsn.push(t);
                    } else {
                        p.plain.push_str(&t);
                        p.plain.push('\n');
                    }
                }
            }
            _ => {}
        }
    }
    p
}

/// The body of the mail as written, without MIME boundary lines and the part headers after
/// them.
fn raw_body_text(msg: &Message<'_>) -> String {
    let Some(root) = msg.parts.first() else { return String::new() };
    let body = lossy(msg.raw_message.get(root.offset_body as usize..).unwrap_or_default());
    let mut out = String::new();
    let mut in_part_headers = false;
    for line in body.lines() {
        if line.starts_with("--") && !line.contains(' ') {
            in_part_headers = true;
            continue;
        }
        if in_part_headers {
            let l = line.to_ascii_lowercase();
            if line.trim().is_empty() {
                in_part_headers = false;
            } else if l.starts_with("content-") || l.starts_with("boundary=") || line.starts_with([' ', '\t']) {
                continue;
            } else {
                in_part_headers = false;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// To / Cc addresses of a header block given as text.
fn headers_block_recipients(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_rcpt = false;
    for line in t.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if in_rcpt {
                out.extend(addresses(line).into_iter().map(|(_, a)| a));
            }
            continue;
        }
        let l = line.to_ascii_lowercase();
        in_rcpt = l.starts_with("to:") || l.starts_with("cc:");
        if in_rcpt {
            out.extend(addresses(line).into_iter().map(|(_, a)| a));
        }
    }
    out
}

/// One field group of a DSN / ARF body: unfolded `name: value` pairs, names lower-cased.
fn field_groups(text: &str) -> Vec<Vec<(String, String)>> {
    let mut groups = vec![Vec::new()];
    for line in text.lines() {
        let group = groups.last_mut().map(|g: &mut Vec<(String, String)>| g);
        let Some(group) = group else { break };
        if line.trim().is_empty() {
            if !group.is_empty() {
                groups.push(Vec::new());
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = group.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

#[derive(Default, Clone)]
struct DsnRecord {
    final_rcpt: String,
    orig_rcpt: String,
    action: String,
    status: String,
    /// The comment of the Status field (`5.0.0 (host name lookup failure)`).
    status_note: String,
    diag: String,
    /// The type of the Diagnostic-Code (`smtp`, `x-unix`, `x-postfix`), lower-cased.
    diag_type: String,
    /// PowerMTA's own classification (`X-PowerMTA-BounceCategory: bad-mailbox`).
    category: String,
    /// The host that answered (`Remote-MTA: dns; mx.example.net`).
    remote_mta: String,
}

/// The code of a DSN Status field (`5.1.1 (user unknown)` → `5.1.1`), success codes included.
fn dsn_status(value: &str) -> String {
    let code = value.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    if is_status(code) { code.to_string() } else { status_in(value).unwrap_or_default() }
}

/// The host of a `Reporting-MTA` / `Remote-MTA` value (`dns; mx.example.net [192.0.2.1]`).
fn mta_host(value: &str) -> String {
    let v = value.split_once(';').map_or(value, |(_, h)| h).trim();
    let h = v.split([' ', '[', '(']).next().unwrap_or("").trim_end_matches('.').to_ascii_lowercase();
    if rhost::is_host(&h) { h } else { String::new() }
}

/// The `Reporting-MTA` of the DSN parts, if any names a host.
fn reporting_mta(dsn: &[String]) -> Option<String> {
    dsn.iter().flat_map(|t| t.lines()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let h = name.trim().eq_ignore_ascii_case("reporting-mta").then(|| mta_host(value))?;
        (!h.is_empty()).then_some(h)
    })
}

/// The hosts around a bounce: the one that answered, if the mail names it, and the one that
/// wrote the bounce.
#[derive(Default, Clone)]
struct Hosts {
    remote: Option<String>,
    local: Option<String>,
    /// `from` hosts of the bounce's Received headers, newest first.
    received: Vec<String>,
}

impl Hosts {
    /// The remote host from `texts` (the MTA's framing around the reply), else the oldest
    /// Received hop's sender.
    fn remote_for(&self, texts: &[&str]) -> Option<String> {
        self.remote
            .clone()
            .or_else(|| texts.iter().find_map(|t| host_in(t)))
            .or_else(|| self.received.iter().rev().find(|h| !h.is_empty()).cloned())
    }

    fn local(&self) -> Option<String> {
        self.local.clone().or_else(|| self.received.iter().find(|h| !h.is_empty()).cloned())
    }
}

fn dsn_records(text: &str) -> Vec<DsnRecord> {
    let mut out = Vec::new();
    for group in field_groups(text) {
        let mut rec: Option<DsnRecord> = None;
        for (name, value) in group {
            let r = rec.get_or_insert_with(DsnRecord::default);
            match name.as_str() {
                "final-recipient" | "original-recipient" | "x-actual-recipient" => {
                    let addr = value.split_once(';').map_or(value.as_str(), |(_, a)| a).trim().to_string();
                    let slot_taken = match name.as_str() {
                        "final-recipient" => !r.final_rcpt.is_empty(),
                        "original-recipient" => !r.orig_rcpt.is_empty(),
                        _ => false,
                    };
                    if slot_taken {
                        out.extend(rec.take());
                    }
                    let r = rec.get_or_insert_with(DsnRecord::default);
                    match name.as_str() {
                        "final-recipient" => r.final_rcpt = addr,
                        "original-recipient" => r.orig_rcpt = addr,
                        _ => {}
                    }
                }
                "action" => r.action = value.to_ascii_lowercase(),
                "status" => {
                    r.status = dsn_status(&value);
                    r.status_note = value
                        .split_once('(')
                        .map(|(_, n)| n.trim_end().trim_end_matches(')').to_string())
                        .unwrap_or_default();
                }
                "x-powermta-bouncecategory" => r.category = value.to_ascii_lowercase(),
                "remote-mta" => r.remote_mta = mta_host(&value),
                "diagnostic-code" => {
                    r.diag = value.split_once(';').map_or(value.as_str(), |(_, d)| d).trim().to_string();
                    r.diag_type = value.split_once(';').map(|(t, _)| t.trim().to_ascii_lowercase()).unwrap_or_default();
                }
                _ => {}
            }
        }
        if let Some(r) = rec
            && (!r.final_rcpt.is_empty() || !r.orig_rcpt.is_empty())
        {
            out.push(r);
        }
    }
    out
}

fn recipient(email: String, status: String, code: Option<u16>, reason: Reason, hard: bool, diag: &str) -> Recipient {
    Recipient {
        email,
        status,
        reply_code: code.map(|c| c.to_string()).unwrap_or_default(),
        reason,
        hard_bounce: hard,
        feedback_type: String::new(),
        diagnostic: diag.trim().chars().take(500).collect(),
        delayed: false,
    }
}

/// Which of two enhanced status codes to believe: `field`, from the report's `Status:` (or
/// what the reporting MTA states), or `in_text`, quoted in the diagnostic text, given the
/// reply code. The text's code is the remote server's own and often more precise; the
/// field wins where the text's says less (`X.0.0`) or where the two disagree on the class
/// and the reply code sides with the field. The same choice as sisimai's, so that figures
/// compare.
fn preferred_status(field: &str, in_text: &str, reply: Option<u16>) -> String {
    if field.len() < 5 || in_text.is_empty() {
        return if field.len() < 5 && !in_text.is_empty() { in_text } else { field }.to_string();
    }
    if in_text.len() < 5 || field == in_text {
        return field.to_string();
    }
    let (f, t) = (field.as_bytes()[0], in_text.as_bytes()[0]);
    if f != t
        && let Some(r) = reply.and_then(|r| r.to_string().bytes().next())
    {
        if r == f {
            return field.to_string();
        }
        if r == t {
            return in_text.to_string();
        }
    }
    let says_little = |s: &str| s.contains(".0");
    let says_nothing = |s: &str| s.get(1..) == Some(".0.0");
    let text_wins = if says_nothing(field) {
        !says_nothing(in_text)
    } else if says_little(field) && !says_little(in_text) {
        true
    } else if says_nothing(in_text) {
        false
    } else if matches!(field, "4.4.7" | "4.7.0")
        || field.starts_with("5.3.")
        || [".5.1", ".5.2", ".5.4", ".5.5"].iter().any(|c| field.get(1..5) == Some(c))
    {
        // A queue that gave up, "too many errors", a system error, a command the server
        // did not take: the remote's own code says why.
        true
    } else if field == "5.1.1" {
        // A missing mailbox, unless the text's code says less or is about the command.
        !(says_little(in_text) || in_text.starts_with("5.5."))
    } else {
        field == "5.1.3" && in_text.starts_with("5.7.")
    };
    if text_wins { in_text } else { field }.to_string()
}

/// Status, reply code and reason from several candidate texts, most specific first: the
/// first that names a reason by its phrases is used, else the codes decide. The SMTP phase the
/// reply answered (named in the texts, or in an SMTP transcript) then adjusts it.
#[allow(clippy::too_many_arguments)]
fn judge(
    mta: Mta,
    hosts: &Hosts,
    category: Option<Reason>,
    status: &str,
    addr: &str,
    phase_texts: &[&str],
    transcript: &str,
    texts: &[&str],
) -> (String, Option<u16>, Reason, bool, String) {
    // Where a text quotes the remote server's own reply, that reply is read instead of the
    // reporting MTA's framing around it ("… was rejected by the recipient domain").
    let texts: Vec<&str> = texts.iter().map(|t| remote_reply(t).unwrap_or(t)).collect();
    let texts = texts.as_slice();
    let code = texts.iter().find_map(|t| reply_code_in(t));
    // A text may hold several codes (the reporting MTA's and the remote's, or a multi-line
    // reply's): they are weighed against each other as against the field, the catch-all ones
    // (x.0.0, 4.4.7) last. The reply code that settles a clash of classes with the field is
    // one of the text code's own class.
    let in_text = texts
        .iter()
        .find_map(|t| {
            let mut all = statuses_in(t);
            all.sort_by_key(|c| c.get(1..) == Some(".0.0") || c == "4.4.7");
            all.into_iter().reduce(|kept, next| preferred_status(&kept, &next, None))
        })
        .unwrap_or_default();
    let reply = texts.iter().find_map(|t| reply_code_of_class(t, in_text.chars().next()));
    let mut status = preferred_status(status, &in_text, reply);
    if matches!(mta, Mta::ReceivingSes | Mta::AmazonWorkMail) && (status.ends_with(".0.0") || status.ends_with(".1.0"))
    {
        // SES quotes the receiving server's own reply after its summary:
        // "5.1.0 - Unknown address error 550-'5.7.1 …'"; that reply's status is the real one.
        let quoted = texts.iter().find_map(|t| t.find("-'").or_else(|| t.find("-\"")).map(|i| &t[i + 2..]));
        if let Some(s) = quoted.and_then(status_in) {
            status = s;
        }
    }
    let chosen = texts.iter().find(|t| reason_from_text(t).is_some()).copied().unwrap_or("");
    let mut hint = hint(mta, addr, &phase_texts.join("\n"));
    hint.reason = category.or(hint.reason);
    let phase = hint
        .phase
        .or_else(|| phase_texts.iter().find_map(|t| phase_in(t)))
        .or_else(|| phase_texts.iter().chain([&transcript]).find_map(|t| transcript_phase(t, addr)))
        .or_else(|| phase_texts.iter().find_map(|t| command_word(t)));
    // A service's own rules come after what the reporting MTA's own wording says for sure,
    // and before the general reading.
    let service = rhost::provider_of_mail(addr, hosts.remote_for(phase_texts).as_deref(), hosts.local().as_deref())
        .filter(|_| hint.reason.is_none_or(weighed));
    let by_service = || {
        let diag = texts.iter().find(|t| !t.trim().is_empty()).copied().unwrap_or("");
        service.and_then(|p| rhost::reason(p, &Fact { status: &status, code, diag, phase }))
    };
    // A local delivery agent's own words come first, unless the reporting MTA's said for sure.
    let by_agent = || hint.reason.is_none_or(weighed).then(|| lda::reason(phase_texts, phase)).flatten();
    let reason = match by_agent()
        .or_else(|| {
            // Like the service's rules: not over what the reporting MTA said for sure.
            hint.reason.is_none_or(weighed).then(|| texts.iter().find_map(|t| provider_reason(&normalize(t))))?
        })
        .or_else(by_service)
    {
        Some(r) => r,
        None => decide_with(&status, code.unwrap_or(0), chosen, phase, hint.reason).0,
    };
    // Only the recipient's own diagnostic texts count as words, not the subject.
    let reason = held_if_worded(reason, phase_texts.iter().any(|t| !t.trim().is_empty()));
    let hard = reason.is_hard(permanent(&status, code.unwrap_or(0)));
    let diag = texts.iter().find(|t| !t.trim().is_empty()).copied().unwrap_or("").to_string();
    (status, code, reason, hard, diag)
}

/// Where MTAs quote the remote server's reply: Gmail's "The error that the other server
/// returned was:", Exchange's "Remote Server returned", qmail's and Yahoo's "Remote host
/// said:".
const REMOTE_REPLY_MARKERS: &[&str] =
    &["the error that the other server returned was:", "remote server returned", "remote host said:"];

/// How Exim frames the reply it quotes: "SMTP error from remote mail server after RCPT
/// TO:<a>:\n host mx [192.0.2.1]: 550 …". The command it names is the phase, not a wording.
const COMMAND_FRAMES: &[&str] = &["smtp error from remote mail server after", "lmtp error after"];

/// The remote server's reply quoted in `t`, up to the end of its paragraph.
fn remote_reply(t: &str) -> Option<&str> {
    let lower = t.to_ascii_lowercase();
    if let Some(i) = COMMAND_FRAMES.iter().find_map(|m| lower.find(m)) {
        let rest = &t[i..];
        let end = rest.find("\n\n").unwrap_or(rest.len());
        let rest = &rest[..end];
        // The reply starts at its code: three digits, 4xx or 5xx, then a space or a dash.
        let b = rest.as_bytes();
        let start = (0..b.len().saturating_sub(3)).find(|&k| {
            (k == 0 || !b[k - 1].is_ascii_alphanumeric() && b[k - 1] != b'.')
                && matches!(b[k], b'4' | b'5')
                && b[k + 1].is_ascii_digit()
                && b[k + 2].is_ascii_digit()
                && matches!(b.get(k + 3), Some(b' ' | b'-'))
        });
        if let Some(k) = start {
            return Some(rest[k..].trim());
        }
    }
    let (i, m) = REMOTE_REPLY_MARKERS.iter().find_map(|m| lower.find(m).map(|i| (i, m)))?;
    let rest = t.get(i + m.len()..)?;
    let end = rest.find("\n\n").unwrap_or(rest.len());
    let reply = rest[..end].trim().trim_matches(['\'', '"']);
    (!reply.is_empty()).then_some(reply)
}

const DAEMONS: &[&str] =
    &["mailer-daemon", "postmaster", "post_master", "mail-daemon", "maildaemon", "mailerdaemon", "mdaemon"];

fn is_daemon(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
    DAEMONS.iter().any(|d| local == *d)
        || local.contains("mailer-daemon")
        || local.starts_with("postmaster")
        || local.contains("bounce")
}

const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery",
    "failure",
    "failed",
    "returned mail",
    "returned to sender",
    "could not send",
    "not delivered",
    "bounce",
    "rejected",
    "nondeliverable",
    "non remis",
    "unzustellbar",
    "no entregado",
    "mail error",
    "error",
    "warning",
];

const AUTOREPLY_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "auto reply",
    "autoreply",
    "auto-reply",
    "automatic reply",
    "auto response",
    "autoresponse",
    "auto-response",
    "vacation",
    "away from",
    "away until",
    "on leave",
    "abwesen",
    "absence",
    "absent",
    "auto:",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
];

/// Splits an mbox file (messages each introduced by a `From ` line) into its messages; any
/// other input is one message.
fn mbox_messages(raw: &[u8]) -> Vec<&[u8]> {
    if !raw.starts_with(b"From ") {
        return vec![raw];
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while let Some(off) = raw[i..].windows(7).position(|w| w == b"\n\nFrom ") {
        let cut = i + off + 2;
        out.push(&raw[start..cut]);
        start = cut;
        i = cut;
    }
    out.push(&raw[start..]);
    out
}

pub(super) fn classify(raw: &[u8]) -> Vec<Recipient> {
    mbox_messages(raw).into_iter().flat_map(classify_one).collect()
}

fn classify_one(raw: &[u8]) -> Vec<Recipient> {
    classify_one_at(raw, 0)
}

/// `depth` counts the attached mails read as the bounce itself, so that a mail nesting
/// itself cannot recurse without end.
fn classify_one_at(raw: &[u8], depth: u8) -> Vec<Recipient> {
    let Some(msg) = MessageParser::default().parse(raw) else { return Vec::new() };
    if msg.parts.is_empty() {
        return Vec::new();
    }
    let mut parts = collect(&msg);
    if parts.plain.trim().is_empty() && parts.html.trim().is_empty() && parts.dsn.is_empty() && parts.arf.is_empty() {
        // MIME the parser could not follow (a boundary parameter on an unfolded line, say):
        // the body as written, without boundary and part-header lines, is the text.
        parts.plain = raw_body_text(&msg);
    }
    let subject = msg.subject().unwrap_or("").to_string();
    let subject_l = subject.to_lowercase();
    let from = msg.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or("").to_string();
    let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or("").to_string();
    let headers = all_headers_text(&msg).to_ascii_lowercase();

    // Apple Mail's "Unsubscribe" button, for a list whose List-Unsubscribe is a mailto: address,
    // sends a mail from the subscriber marked with this header: an opt-out by that address.
    if header_text(&msg, "X-Apple-Unsubscribe").is_some_and(|v| v.eq_ignore_ascii_case("true")) && from.contains('@') {
        let mut r = recipient(from, String::new(), None, Reason::Feedback, false, &subject);
        r.feedback_type = "opt-out".into();
        return vec![r];
    }
    // A report declared as a feedback report whose report part is missing or mislabelled,
    // and the complaint mails of Outlook.com's JMRP and SES that carry no report part at all.
    let declared = msg
        .content_type()
        .and_then(|ct| ct.attribute("report-type"))
        .is_some_and(|t| t.trim_matches('"').eq_ignore_ascii_case("feedback-report"));
    let complaint_mail = subject_l.contains("complaint about message from ")
        && ["staff@hotmail.com", "complaints@email-abuse.amazonses.com"].iter().any(|a| from.eq_ignore_ascii_case(a));
    if !parts.arf.is_empty() || declared && parts.dsn.is_empty() || complaint_mail {
        return feedback(&parts, if complaint_mail { "abuse" } else { "" });
    }
    if let Some(reported) = ses_notification(&parts.plain) {
        return reported.iter().map(from_notification).collect();
    }

    let human_full = if parts.plain.trim().is_empty() { parts.html.clone() } else { parts.plain.clone() };
    let human = cut_original(&human_full);

    // A gateway that forwards the bounce it received as an attachment, with a text of its
    // own that names no address: the attached mail is the bounce.
    if parts.dsn.is_empty() && !human.contains('@') && depth < 3 {
        // The attached mail's own bytes (a nested message shares the outer one's buffer).
        let inner = msg.parts.iter().find_map(|p| match &p.body {
            PartType::Message(_) => msg.raw_message.get(p.offset_body as usize..p.offset_end as usize),
            _ => None,
        });
        if let Some(raw) = inner {
            let found = classify_one_at(raw, depth + 1);
            if !found.is_empty() {
                return found;
            }
        }
    }

    let hosts = Hosts { remote: None, local: reporting_mta(&parts.dsn), received: received_from_hosts(&headers) };
    let message_id = header_text(&msg, "Message-ID").unwrap_or_default();
    let mta = detect(&headers, &subject, &message_id, &human_full);
    let mut records: Vec<DsnRecord> = parts.dsn.iter().flat_map(|t| dsn_records(t)).collect();
    if records.is_empty() {
        // Some MTAs write the delivery-status fields into the text itself instead of a
        // message/delivery-status part. A block of them that names a recipient and says
        // what happened is read the same way.
        records = dsn_records(human)
            .into_iter()
            .filter(|r| !r.status.is_empty() || !r.action.is_empty() || !r.diag.is_empty())
            .collect();
    }
    if let Mta::Sendmail { replies: true, .. } = mta
        && let [only] = records.as_mut_slice()
    {
        // Sendmail's transcript holds the remote server's own replies (`<<< 550 …`); for
        // its one recipient they say more than the diagnostic it wrote from them.
        let mut said: Vec<&str> = Vec::new();
        for line in human.lines() {
            if let Some(r) = line.strip_prefix("<<< ")
                && !said.contains(&r.trim())
            {
                said.push(r.trim());
            }
        }
        only.diag = format!("{} {}", said.join(" "), only.diag).trim().to_string();
    }
    if !records.is_empty() {
        return records.into_iter().map(|r| from_dsn(mta, &hosts, r, human, &subject)).collect();
    }

    let daemon_sender = is_daemon(&from) || from.is_empty();
    let bounce_subject = BOUNCE_SUBJECTS.iter().any(|s| subject_l.contains(s));
    let auto_replied = headers.contains("auto-submitted: auto-replied")
        || headers.contains("\nx-autoreply:")
        || headers.contains("\nx-autorespond:")
        || headers.contains("\nx-auto-response-suppress:") && subject_l.contains("auto")
        || headers.contains("precedence: auto_reply");
    let autoreply_subject = AUTOREPLY_SUBJECTS.iter().any(|s| subject_l.contains(s));
    if !daemon_sender && (autoreply_subject || auto_replied && !bounce_subject) {
        let mut r = recipient(from, String::new(), None, Reason::Vacation, false, human);
        r.diagnostic = subject.clone();
        return vec![r];
    }

    // fml's notices come from the list's admin address, with the refusal as the subject.
    let list_notice = matches!(mta, Mta::Fml { subject: Some(_) });
    let bounce_like = daemon_sender || bounce_subject || list_notice || headers.contains("\nx-failed-recipients:");
    if !bounce_like {
        return Vec::new();
    }
    let mut out = plain_text(mta, &hosts, &msg, &parts, human, &subject, &from, &to);
    // Google Groups returns a post (in the poster's language) when the group does not exist
    // or does not take posts from the sender: the group refused the sender.
    for r in &mut out {
        if r.email.to_ascii_lowercase().ends_with("@googlegroups.com")
            && matches!(r.reason, Reason::Undefined | Reason::OnHold | Reason::Filtered | Reason::UserUnknown)
            && headers.contains("googlegroups")
        {
            r.reason = Reason::Rejected;
            r.hard_bounce = false;
        }
    }
    out
}

/// The recipients a complaint is about; `default_type`: the feedback type when the report
/// states none.
fn feedback(parts: &Parts, default_type: &str) -> Vec<Recipient> {
    let mut feedback_type = String::new();
    let mut rcpts = Vec::new();
    for text in &parts.arf {
        for group in field_groups(text) {
            for (name, value) in group {
                match name.as_str() {
                    "feedback-type" if feedback_type.is_empty() => feedback_type = value.to_ascii_lowercase(),
                    "original-rcpt-to" | "removal-recipient" => rcpts.extend(first_address(&value)),
                    _ => {}
                }
            }
        }
    }
    if rcpts.is_empty() {
        rcpts = parts.original_to.clone();
    }
    if rcpts.is_empty() {
        rcpts.push(String::new());
    }
    if feedback_type.is_empty() {
        feedback_type = default_type.to_string();
    }
    let mut seen = Vec::new();
    rcpts.retain(|r| {
        let k = r.to_ascii_lowercase();
        let fresh = !seen.contains(&k);
        seen.push(k);
        fresh
    });
    rcpts
        .into_iter()
        .map(|email| {
            let mut r = recipient(email, String::new(), None, Reason::Feedback, false, "");
            r.feedback_type = feedback_type.clone();
            r
        })
        .collect()
}

/// The lines of `human` around the first mention of `addr`: the paragraph it is in and the
/// next one.
fn segment_about<'a>(human: &'a str, addr: &str) -> &'a str {
    segment_range(human, addr).and_then(|(start, end)| human.get(start..end)).unwrap_or("")
}

/// The lines of `human` from its start to the end of [`segment_about`] (all of it when the
/// address is not there).
fn segment_from_top<'a>(human: &'a str, addr: &str) -> &'a str {
    segment_range(human, addr).and_then(|(_, end)| human.get(..end)).unwrap_or(human)
}

/// Where [`segment_about`] starts and ends in `human`.
fn segment_range(human: &str, addr: &str) -> Option<(usize, usize)> {
    if addr.is_empty() {
        return None;
    }
    let lower = human.to_ascii_lowercase();
    let pos = lower.find(&addr.to_ascii_lowercase())?;
    let start = lower[..pos].rfind("\n\n").map_or(0, |i| i + 2);
    let mut end = pos;
    for _ in 0..2 {
        match lower[end..].find("\n\n") {
            Some(i) => end += i + 2,
            None => {
                end = lower.len();
                break;
            }
        }
    }
    Some((start, end))
}

fn from_dsn(mta: Mta, hosts: &Hosts, r: DsnRecord, human: &str, subject: &str) -> Recipient {
    let email = pick_email(&r);
    let mut hosts = hosts.clone();
    if !r.remote_mta.is_empty() {
        hosts.remote = Some(r.remote_mta.clone());
    }
    let action = r.action.split_whitespace().next().unwrap_or("");
    let delivered = matches!(action, "delivered" | "relayed" | "expanded" | "deliverable") || r.status.starts_with('2');
    let seg = match mta {
        // EZweb states the reason in a paragraph of its own above the address lines ("The
        // user(s) account is disabled." over "<a@ezweb.ne.jp>: 550 user unknown"): it
        // counts for the recipients below it.
        Mta::Ezweb { .. } => segment_from_top(human, &email),
        _ => segment_about(human, &email),
    };
    // A comment on the Status: field ("Status: 5.0.0 (mailbox full)") is part of the
    // diagnosis: read with the Diagnostic-Code, so that a full or disabled mailbox it names
    // weighs against a missing one the code's text names.
    let diagnosis = format!("{} {}", r.diag, r.status_note);
    let texts = [diagnosis.trim(), seg, subject];
    let (status, code, mut reason, mut hard, diag) =
        judge(mta, &hosts, powermta_category(&r.category), &r.status, &email, &[&r.diag, seg], human, &texts);
    // The comment was read with the diagnostic; the recipient's diagnostic stays the server's.
    let diag = match diag.strip_suffix(r.status_note.as_str()) {
        Some(d) if !r.status_note.is_empty() && !d.trim().is_empty() => d.trim_end().to_string(),
        _ => diag,
    };
    let named = texts.iter().any(|t| reason_from_text(t).is_some());
    if delivered {
        reason = Reason::Delivered;
        hard = false;
    } else if matches!(action, "delayed" | "expired")
        && matches!(
            reason,
            Reason::NetworkError | Reason::SystemError | Reason::Undefined | Reason::OnHold | Reason::Expired
        )
        && !texts.iter().any(|t| reason_from_text(t) == Some(Reason::HostUnknown))
    {
        // The MTA kept the message queued and is (or was) still retrying; unless the name
        // could not be resolved, what it reports is the time the message spent in the queue.
        reason = Reason::Expired;
        hard = false;
    } else if r.diag_type == "x-unix"
        && !matches!(reason, Reason::MailboxFull | Reason::SystemFull | Reason::MesgTooBig | Reason::ExceedLimit)
        && texts.iter().any(|t| local_program_failed(t))
    {
        // A local program (a pipe, a filter) ran and failed, and says so: whatever status
        // code it exited with, the mailer failed, not the address.
        reason = Reason::MailerError;
        hard = false;
    } else if !named
        && status_name(&status).is_none()
        && matches!(r.diag_type.as_str(), "x-unix" | "x-postfix")
        && !matches!(status.get(1..3), Some(".6" | ".7"))
    {
        // The local delivery agent (a pipe, a program, Postfix's own local delivery) failed,
        // not a remote server, and its words name no cause.
        reason = Reason::MailerError;
        hard = false;
    } else if !named && status_name(&status).is_none() && code.is_none() {
        // A failure that gives neither a diagnostic nor a specific status code: nothing to
        // judge the reason from.
        reason = Reason::OnHold;
        hard = false;
    }
    let mut out = recipient(email, status, code, reason, hard, &diag);
    out.delayed = action == "delayed";
    out
}

/// Wordings of a local delivery program's failure: its exit, its output quoted back. Narrower
/// than the `mailererror` phrases (which also hold "signal", "permission denied", …): here
/// they overrule a status code, so only words a program's own failure gives count.
fn local_program_failed(t: &str) -> bool {
    let t = normalize(t);
    ["command died", "command failed", "command output:", "mailer error", "procmail", "pipe to |", " || exit "]
        .iter()
        .any(|w| t.contains(w))
}

/// A recipient of an SES notification mailed by SNS.
fn from_notification(r: &Reported) -> Recipient {
    if let Some(done) = settled(r) {
        return done;
    }
    let diag = r.diagnostic.split_once(';').map_or(r.diagnostic.as_str(), |(_, d)| d).trim();
    let (status, code, reason, hard, diag) =
        judge(Mta::Other, &Hosts::default(), None, &r.status, &r.email, &[diag], "", &[diag]);
    let mut out = recipient(r.email.clone(), status, code, reason, hard, &diag);
    out.delayed = r.kind == Kind::Delay;
    out
}

/// PowerMTA's bounce categories, as its documentation names them.
fn powermta_category(category: &str) -> Option<Reason> {
    Some(match category {
        "bad-domain" => Reason::HostUnknown,
        "bad-mailbox" => Reason::UserUnknown,
        "inactive-mailbox" => Reason::Suspend,
        "message-expired" => Reason::Expired,
        "no-answer-from-host" => Reason::NetworkError,
        "policy-related" => Reason::PolicyViolation,
        "quota-issues" => Reason::MailboxFull,
        "routing-errors" => Reason::SystemError,
        "spam-related" => Reason::SpamDetected,
        _ => return None,
    })
}

fn pick_email(r: &DsnRecord) -> String {
    first_address(&r.final_rcpt)
        .or_else(|| first_address(&r.orig_rcpt))
        .unwrap_or_else(|| r.final_rcpt.trim_matches(['<', '>']).to_string())
}

#[allow(clippy::too_many_arguments)]
fn plain_text(
    mta: Mta,
    hosts: &Hosts,
    msg: &Message<'_>,
    parts: &Parts,
    human: &str,
    subject: &str,
    from: &str,
    to: &str,
) -> Vec<Recipient> {
    let own = |a: &str| a.eq_ignore_ascii_case(from) || a.eq_ignore_ascii_case(to);
    // Per address: the text of every stretch of lines it heads.
    let mut order: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut current: Option<usize> = None;
    // Sendmail's transcripts end each address's stanza with the address's own line: the
    // conversation before it (`>>> DATA`, `<<< 550 …`, `550 host (smtp)... …`) is the one it
    // failed in, and a host line after it opens the next address's stanza. Such lines wait
    // here for the address they lead to.
    let sendmail = matches!(mta, Mta::Sendmail { .. })
        || human.to_ascii_lowercase().contains("----- transcript of session follows -----");
    let mut pending = String::new();
    for line in human.lines() {
        if let Some(a) = recipient_on_line(line).filter(|a| !own(a) && !is_daemon(a)) {
            let key = a.to_ascii_lowercase();
            let idx = match order.iter().position(|o| o.to_ascii_lowercase() == key) {
                Some(i) => i,
                None => {
                    order.push(a);
                    texts.push(String::new());
                    order.len() - 1
                }
            };
            if sendmail {
                texts[idx].push_str(&std::mem::take(&mut pending));
            }
            current = Some(idx);
        } else if sendmail && (!pending.is_empty() || opens_sendmail_stanza(line)) {
            if sendmail_conversation(line) {
                // A new conversation: what waited belongs to the one before.
                if let Some(t) = current.and_then(|i| texts.get_mut(i)) {
                    t.push_str(&std::mem::take(&mut pending));
                }
            }
            pending.push_str(line);
            pending.push('\n');
            continue;
        }
        if let Some(i) = current
            && let Some(t) = texts.get_mut(i)
        {
            t.push_str(line);
            t.push('\n');
        }
    }
    if let Some(t) = current.and_then(|i| texts.get_mut(i)) {
        t.push_str(&pending);
    }
    if mta == Mta::Verizon {
        // Verizon's gateways name the recipient only in the returned message.
        let original =
            if parts.original_to.is_empty() { inline_original_to(&parts.plain) } else { parts.original_to.clone() };
        if !original.is_empty() {
            order = original;
            texts = vec![human.to_string(); order.len()];
        }
    }
    if order.is_empty()
        && let Some(h) = header_text(msg, "X-Failed-Recipients")
    {
        order.extend(addresses(&h).into_iter().map(|(_, a)| a));
    }
    if order.is_empty() {
        order.extend(addresses(human).into_iter().map(|(_, a)| a).filter(|a| !own(a) && !is_daemon(a)).take(1));
    }
    if order.is_empty() {
        order.extend(parts.original_to.iter().cloned());
        if order.is_empty() {
            order.extend(inline_original_to(&parts.plain));
        }
    }
    if order.is_empty() {
        order.push(String::new());
    }
    texts.resize(order.len(), String::new());
    let whole = format!("{human}\n{subject}");
    order
        .into_iter()
        .zip(texts)
        .map(|(email, t)| {
            let (status, code, reason, hard, diag) = judge(mta, hosts, None, "", &email, &[&t], human, &[&t, &whole]);
            recipient(email, status, code, reason, hard, &diag)
        })
        .collect()
}

/// Sendmail's `... while talking to mx.example.:` (v5: `While talking to mx.example:`).
fn sendmail_conversation(line: &str) -> bool {
    line.trim_start().trim_start_matches('.').trim_start().to_ascii_lowercase().starts_with("while talking to")
}

/// A line of a Sendmail transcript that starts a conversation or reports on a host rather
/// than an address: `While talking to mx.example:`, `>>> RCPT To:…`, `550 example.org
/// (smtp)... 550 Host unknown`.
fn opens_sendmail_stanza(line: &str) -> bool {
    if sendmail_conversation(line) || line.trim_start().starts_with(">>> ") {
        return true;
    }
    let l = line.trim_start().to_ascii_lowercase();
    // `NNN host (mailer)... text`: a reply code, a host name and the mailer in parentheses.
    let mut words = l.split_whitespace();
    let (Some(code), Some(host), Some(mailer)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && !host.contains('@')
        && host.contains('.')
        && mailer.starts_with('(')
        && mailer.ends_with(")...")
}

/// The To / Cc of an original message returned inline in the text.
fn inline_original_to(plain: &str) -> Vec<String> {
    let start = cut_original(plain).len();
    let rest = plain.get(start..).unwrap_or("");
    let mut out = Vec::new();
    for line in rest.lines() {
        let l = line.to_ascii_lowercase();
        if l.starts_with("to:") || l.starts_with("cc:") {
            out.extend(addresses(line).into_iter().map(|(_, a)| a));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::preferred_status;
    use crate::bounce::{Reason, classify_mail};

    fn dsn(status: &str, diagnostic: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: ann@shop.example\r\nSubject: Undelivered Mail\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
             Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: {status}\r\n\
             Diagnostic-Code: smtp; {diagnostic}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn every_code_of_a_diagnostic_is_weighed_and_the_reply_settles_classes_only_with_its_own() {
        // The text's 4.2.2 against the field's 5.1.1: the reply 550 is of neither the text's
        // class, so it does not side with the field; x.1.1 gives way to the more precise code.
        let got = classify_mail(&dsn("5.1.1", "550 4.2.2 <bob@example.org>... mailbox over quota"));
        assert_eq!((got[0].status.as_str(), got[0].reason), ("4.2.2", Reason::MailboxFull));
        // Two codes in one text: the catch-all 5.0.0 comes last, the specific 5.7.1 is read.
        let got = classify_mail(&dsn("5.1.1", "550 5.0.0 <bob@example.org>... 5.7.1 refused by policy"));
        assert_eq!(got[0].status, "5.7.1");
        assert!(!got[0].hard_bounce);
        // One code that agrees with the field: unchanged.
        let got = classify_mail(&dsn("5.1.1", "550 5.1.1 <bob@example.org>... User unknown"));
        assert_eq!((got[0].status.as_str(), got[0].reason, got[0].hard_bounce), ("5.1.1", Reason::UserUnknown, true));
    }

    #[test]
    fn a_sendmail_transcript_gives_each_address_the_conversation_that_led_to_its_line() {
        let mail = "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example>\r\n\
            To: ann@shop.example\r\nSubject: Returned mail: see transcript for details\r\n\r\n\
            The original message was received at Mon, 7 Dec 2026 01:00:00 GMT\r\n\r\n\
               ----- The following addresses had permanent fatal errors -----\r\n\
            <bob@b.example>\r\n<cat@c.example>\r\n\r\n\
               ----- Transcript of session follows -----\r\n\
            ... while talking to mx.c.example.:\r\n\
            >>> DATA\r\n\
            <<< 552 5.2.2 Mailbox full\r\n\
            554 5.0.0 <cat@c.example>... Service unavailable\r\n\
            ... while talking to mx.b.example.:\r\n\
            >>> RCPT To:<bob@b.example>\r\n\
            <<< 550 5.1.1 <bob@b.example>... User unknown\r\n\
            550 5.1.1 <bob@b.example>... User unknown\r\n";
        let got = classify_mail(mail.as_bytes());
        let of = |addr: &str| got.iter().find(|r| r.email == addr).expect(addr);
        // cat's stanza ends with cat's own line: the next host's conversation is bob's.
        assert_eq!(of("cat@c.example").reason, Reason::MailboxFull, "{got:#?}");
        assert!(of("cat@c.example").diagnostic.contains(">>> DATA"), "{got:#?}");
        assert!(!of("cat@c.example").diagnostic.contains("mx.b.example"), "{got:#?}");
        assert_eq!((of("bob@b.example").reason, of("bob@b.example").hard_bounce), (Reason::UserUnknown, true));
        assert!(of("bob@b.example").diagnostic.contains("while talking to mx.b.example"), "{got:#?}");
    }

    #[test]
    fn a_comment_on_the_status_field_is_read_with_the_diagnostic() {
        let got = classify_mail(&dsn("5.0.0 (mailbox is full)", "550 5.1.1 <bob@example.org>... User unknown"));
        assert_eq!((got[0].reason, got[0].hard_bounce), (Reason::MailboxFull, false));
        let got = classify_mail(&dsn("5.0.0 (permanent failure)", "550 5.1.1 <bob@example.org>... User unknown"));
        assert_eq!((got[0].reason, got[0].hard_bounce), (Reason::UserUnknown, true));
        // RFC 5321's stock 550 text names no cause: with no command named, a filter's.
        let got = classify_mail(&dsn("5.0.0", "550 Requested action not taken: mailbox unavailable"));
        assert_eq!((got[0].reason, got[0].hard_bounce), (Reason::Filtered, false));
    }

    #[test]
    fn the_remote_servers_own_status_is_believed_where_it_says_more() {
        // A report's x.1.1 gives way to the full mailbox the server itself named…
        assert_eq!(preferred_status("5.1.1", "5.2.2", Some(552)), "5.2.2");
        // … but not to a code that says less, or one about the command.
        assert_eq!(preferred_status("5.1.1", "5.1.0", Some(550)), "5.1.1");
        assert_eq!(preferred_status("5.1.1", "5.5.0", Some(550)), "5.1.1");
        assert_eq!(preferred_status("5.0.0", "5.7.1", Some(550)), "5.7.1");
        assert_eq!(preferred_status("5.7.1", "5.0.0", Some(550)), "5.7.1");
        // A queue that gave up says nothing of why; the remote's code does.
        assert_eq!(preferred_status("4.4.7", "4.2.2", Some(452)), "4.2.2");
        // Classes that disagree: the one the reply code shares.
        assert_eq!(preferred_status("5.1.1", "4.2.2", Some(550)), "5.1.1");
        assert_eq!(preferred_status("4.4.7", "5.1.1", Some(550)), "5.1.1");
        // One side missing or malformed.
        assert_eq!(preferred_status("", "5.1.1", None), "5.1.1");
        assert_eq!(preferred_status("5.2.1", "", None), "5.2.1");
        assert_eq!(preferred_status("5.2", "5.1.1", None), "5.1.1");
        // Otherwise the report's own field stands.
        assert_eq!(preferred_status("5.2.1", "5.7.1", Some(550)), "5.2.1");
    }
}
