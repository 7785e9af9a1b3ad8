//! Which large mail service answered, and what its own replies mean.
//!
//! A provider's replies carry wordings and codes whose meaning only that provider documents:
//! NTT DOCOMO answers "550 Unknown user" whether the mailbox is missing or a filter refused the
//! message, and only the SMTP command tells which; Google Workspace says "responded with code
//! NXDOMAIN" for a domain that does not exist and for one whose DNS failed just now. So the
//! service is recognised first, from the recipient's domain, the remote host that answered, or
//! the host that wrote the bounce, and its rules are read before the general ones.

use super::mta::fields;
use super::reason::Reason::{self, *};
use super::text::{Phase, is_status};

/// A mail service with rules of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Aol,
    Apple,
    Cloudflare,
    Cox,
    Facebook,
    FrancePtt,
    GoDaddy,
    Google,
    GSuite,
    Kddi,
    MessageLabs,
    Microsoft,
    Mimecast,
    NttDocomo,
    Outlook,
    Tencent,
    YahooInc,
    Zoho,
}

/// Host names (and the domains under them) that mark each service.
const HOSTS: &[(Provider, &[&str])] = &[
    (Provider::Aol, &["mail.aol.com", "mx.aol.com"]),
    (Provider::Apple, &["mail.icloud.com", "apple.com", "me.com"]),
    (Provider::Cloudflare, &["mx.cloudflare.net"]),
    (Provider::Cox, &["cox.net"]),
    (Provider::Facebook, &["facebook.com"]),
    (Provider::GoDaddy, &["smtp.secureserver.net", "mailstore1.secureserver.net"]),
    (Provider::FrancePtt, &["laposte.net", "orange.fr", "wanadoo.fr"]),
    (Provider::Google, &["aspmx.l.google.com", "gmail-smtp-in.l.google.com"]),
    (Provider::GSuite, &["googlemail.com"]),
    (Provider::Kddi, &["ezweb.ne.jp", "msmx.au.com"]),
    (Provider::MessageLabs, &["messagelabs.com"]),
    (Provider::Microsoft, &["prod.outlook.com", "protection.outlook.com", "onmicrosoft.com", "exchangelabs.com"]),
    (Provider::Mimecast, &["mimecast.com"]),
    (Provider::NttDocomo, &["mfsmax.docomo.ne.jp"]),
    (Provider::Outlook, &["hotmail.com"]),
    (Provider::Tencent, &["qq.com"]),
    (Provider::YahooInc, &["yahoodns.net"]),
    (Provider::Zoho, &["zoho.com", "zoho.eu"]),
];

/// Consumer mail domains whose mailboxes each service hosts: a recipient there is answered by
/// the service even when no host name is known (a live reply at RCPT TO).
const DOMAINS: &[(Provider, &[&str])] = &[
    (Provider::Aol, &["aol.com", "aim.com"]),
    (Provider::Apple, &["icloud.com", "mac.com"]),
    (Provider::Google, &["gmail.com"]),
    (Provider::Outlook, &["outlook.com", "live.com", "msn.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de"]),
    (Provider::YahooInc, &["yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de"]),
];

/// `host` is `mark` or a name under it.
fn under(host: &str, mark: &str) -> bool {
    host == mark || host.strip_suffix(mark).is_some_and(|h| h.ends_with('.'))
}

/// The service a host name belongs to.
fn of_host(host: &str) -> Option<Provider> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    HOSTS.iter().find(|(_, marks)| marks.iter().any(|m| under(&host, m))).map(|(p, _)| *p)
}

/// The service a recipient domain is hosted by: the domain is one of the service's marks or
/// a parent of one (`docomo.ne.jp` of `mfsmax.docomo.ne.jp`), counted from a dot so that
/// `me.com` is not a parent of `acme.com`.
fn of_domain(domain: &str, consumer: bool) -> Option<Provider> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if !d.contains('.') {
        return None;
    }
    if consumer && let Some((p, _)) = DOMAINS.iter().find(|(_, domains)| domains.contains(&d.as_str())) {
        return Some(*p);
    }
    HOSTS.iter().find(|(_, marks)| marks.iter().any(|m| under(m, &d))).map(|(p, _)| *p)
}

/// The service behind a live reply: the recipient's domain (a service's own host names, or
/// the consumer domains it hosts), then the host that answered, then the local host.
pub(crate) fn provider(recipient: &str, remote: Option<&str>, local: Option<&str>) -> Option<Provider> {
    provider_by(recipient, remote, local, true)
}

/// The service behind a returned mail: as [`provider`], but a consumer domain alone does not
/// name it. A bounce about `ann@gmail.com` may come from any relay on the way, and only the
/// hosts in it say whose rules apply (as the labels read it).
pub(crate) fn provider_of_mail(recipient: &str, remote: Option<&str>, local: Option<&str>) -> Option<Provider> {
    provider_by(recipient, remote, local, false)
}

fn provider_by(recipient: &str, remote: Option<&str>, local: Option<&str>, consumer: bool) -> Option<Provider> {
    let domain = recipient.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    of_domain(domain, consumer).or_else(|| remote.and_then(of_host)).or_else(|| local.and_then(of_host))
}

/// An Internet host name as RFC 1123 allows it: labels of letters, digits and hyphens, at
/// least one dot, a top-level label without digits.
pub(crate) fn is_host(h: &str) -> bool {
    if h.len() < 4 || h.len() > 255 || !h.contains('.') || h.contains("..") {
        return false;
    }
    if h.starts_with(['.', '-']) || h.ends_with('-') {
        return false;
    }
    if !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return false;
    }
    let tld = h.rsplit('.').next().unwrap_or("");
    !tld.is_empty() && tld.len() <= 63 && !tld.chars().any(|c| c.is_ascii_digit())
}

/// Where MTAs name the host that answered, as (text before, text after).
const FRAMES: &[(&str, &str)] = &[
    ("host ", " said:"),
    ("host ", " refused to talk to me"),
    ("while talking to ", ":"),
    ("host ", " ["),
    ("host ", "["),
    ("remote system: dns;", "("),
    ("remote-mta: dns;", "\n"),
    ("generating server: ", "\n"),
    ("smtp server <", ">"),
];

/// The remote host an error text names: inside the framing an MTA puts around it, else the
/// longest host name in the text.
pub(crate) fn host_in(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let tokens = |s: &str| -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || "()[]<>;:,'\"".contains(c))
            .map(|t| t.trim_end_matches('.').to_string())
            .filter(|t| is_host(t))
            .collect()
    };
    for (before, after) in FRAMES {
        let Some(i) = lower.find(before) else { continue };
        let rest = &lower[i + before.len()..];
        let end = rest.find(after).unwrap_or_else(|| {
            let mut e = rest.len().min(120);
            while !rest.is_char_boundary(e) {
                e -= 1;
            }
            e
        });
        if let Some(h) = tokens(&rest[..end]).into_iter().next() {
            return Some(h);
        }
    }
    tokens(&lower).into_iter().max_by_key(String::len)
}

/// The `from` host of each `Received:` header in a lower-cased header block, newest first.
pub(crate) fn received_from_hosts(headers_lower: &str) -> Vec<String> {
    fields(headers_lower)
        .into_iter()
        .filter(|(name, _)| *name == "received")
        .map(|(_, v)| {
            let host = v.strip_prefix("from ").and_then(|rest| rest.split([' ', '(', '[']).next()).unwrap_or("");
            let host = host.trim_end_matches('.');
            if is_host(host) { host.to_string() } else { String::new() }
        })
        .collect()
}

/// What a provider rule reads.
pub(crate) struct Fact<'a> {
    pub status: &'a str,
    pub code: Option<u16>,
    /// The remote server's reply or the diagnostic text, as written.
    pub diag: &'a str,
    pub phase: Option<Phase>,
}

/// The reason `p`'s own rules give, if any.
pub(crate) fn reason(p: Provider, f: &Fact<'_>) -> Option<Reason> {
    if f.diag.trim().is_empty() {
        return None;
    }
    let t = super::reason::normalize(f.diag);
    match p {
        Provider::GSuite => gsuite(f),
        Provider::NttDocomo => nttdocomo(f, &t),
        Provider::FrancePtt => france_ptt(&t),
        Provider::MessageLabs => super::provider::messagelabs_table(&t),
        Provider::Kddi => kddi(&t),
        Provider::Google => google(f, &t),
        Provider::Microsoft => microsoft(f, &t),
        Provider::Outlook => words(&t, OUTLOOK),
        Provider::Apple => words(&t, APPLE),
        Provider::Tencent => words(&t, TENCENT),
        Provider::YahooInc => words(&t, YAHOO),
        Provider::Aol => words(&t, AOL),
        Provider::Cloudflare => words(&t, CLOUDFLARE),
        Provider::GoDaddy => words(&t, GODADDY_WORDS),
        Provider::Cox => words(&t, COX_WORDS),
        Provider::Facebook => super::provider::facebook_code(&t),
        Provider::Mimecast => mimecast(f, &t),
        Provider::Zoho => words(&t, ZOHO),
    }
}

/// Mimecast's documented rejections, each with the reply code it comes with: both must match,
/// since several of the wordings ("invalid recipient", "too many recipients") are common at
/// other servers and mean Mimecast's reading only from Mimecast.
fn mimecast(f: &Fact<'_>, t: &str) -> Option<Reason> {
    let code = f.code.filter(|c| valid_reply(*c))?;
    MIMECAST.iter().find(|(_, reply, words)| *reply == code && t.contains(words)).map(|(r, ..)| *r)
}

const MIMECAST: &[(Reason, u16, &str)] = &[
    (AuthFailure, 550, "spf sender invalid - envelope rejected"),
    (AuthFailure, 550, "dkim sender invalid - envelope rejected"),
    (AuthFailure, 550, "dmarc sender invalid - envelope rejected"),
    // Greylisting of a sender with a poor reputation.
    (BadReputation, 451, "internal resources are temporarily unavailable"),
    (BadReputation, 550, "local ct ip reputation - (reject)"),
    (Blocked, 421, "sender address blocked"),
    (Blocked, 451, "recipient temporarily unavailable"),
    (Blocked, 451, "ip temporarily blacklisted"),
    (Expired, 550, "journal messages past the expiration"),
    (FailedStartTls, 454, "tls not available due to temporary reason"),
    (FailedStartTls, 553, "this route requires encryption (tls)"),
    (FailedStartTls, 553, "this route requires tls version 1.2 or greater"),
    (FailedStartTls, 553, "this route requires high-strength ciphers"),
    (FailedStartTls, 554, "configuration is invalid for this certificate"),
    (MesgTooBig, 554, "maximum email size exceeded"),
    (NetworkError, 451, "the incorrect hostname used for inbounds"),
    (NetworkError, 550, "the incorrect hostname used for inbounds"),
    (NetworkError, 554, "mail loop detected"),
    (NoRelaying, 451, "open relay not allowed"),
    (NoRelaying, 451, "open relay is not allowed"),
    (NotAccept, 451, "account inbounds disabled"),
    (OnHold, 451, "account outbounds disabled"),
    (OnHold, 451, "hostname is not authorized"),
    (OnHold, 550, "journal message past expiration"),
    (PolicyViolation, 550, "anti-spoofing policy - inbound not allowed"),
    (PolicyViolation, 550, "rejected by header-based anti-spoofing policy"),
    (PolicyViolation, 550, "message bounced due to content examination policy"),
    (PolicyViolation, 554, "host network not allowed"),
    (PolicyViolation, 554, "host network, not allowed"),
    (Rejected, 550, "administrative prohibition envelope blocked"),
    (Rejected, 550, "envelope blocked - user"),
    (Rejected, 550, "envelope blocked \u{2013} user"),
    (Rejected, 550, "rejected by header-based manually blocked senders"),
    (Rejected, 550, "rejected by header-based blocked senders"),
    (Rejected, 550, "envelope rejected - block policy for envelope from address"),
    (SecurityError, 535, "incorrect authentication data"),
    (SecurityError, 550, "submitter failed to"),
    (SystemError, 451, "unable to process connection at this time"),
    (SystemError, 451, "message ended early"),
    (SystemError, 451, "unable to process command"),
    (SystemError, 451, "unable to process an email at this time"),
    // Too many connections at once, too many recipients in one message.
    (TooManyConn, 451, "account service is temporarily unavailable"),
    (TooManyConn, 452, "too many recipients"),
    (TooManyConn, 550, "exceeding outbound thread limit"),
    (UserUnknown, 501, "invalid address"),
    (UserUnknown, 503, "user unknown"),
    (UserUnknown, 550, "invalid recipient"),
    (VirusDetected, 554, "email rejected due to security policies"),
];

/// Zoho Mail's rejections.
const ZOHO: &[(Reason, &str)] = &[
    (AuthFailure, "email rejected per dmarc policy"),
    (Blocked, "greylisted, try again after some time"),
    (Rejected, "email cannot be delivered. reason: email flagged as spam"),
    (Rejected, "mail rejected by destination domain"),
    (PolicyViolation, "email policy violation detected"),
    (PolicyViolation, "mailbox delivery restricted by policy error"),
    (SystemError, "temporary system error"),
    (UserUnknown, "user does not exist"),
    (VirusDetected, " detected by zoho mail"),
];

fn class(f: &Fact<'_>) -> (Option<char>, Option<char>) {
    (f.status.chars().next(), f.code.and_then(|c| c.to_string().chars().next()))
}

/// The first reason of `table` whose wording `t` (normalised) contains.
pub(crate) fn words(t: &str, table: &[(Reason, &str)]) -> Option<Reason> {
    table.iter().find(|(_, w)| t.contains(w)).map(|(r, _)| *r)
}

/// A reply code as SMTP allows it (211–556, second digit 0–5).
fn valid_reply(code: u16) -> bool {
    (211..=556).contains(&code) && code % 100 <= 59
}

/// Gmail's documented replies: each wording with the reply and status it comes with. The
/// class digit of either code is not compared (Gmail sends the same wording as 4xx and 5xx),
/// and a status matches where its subject and detail begin the listed one's (5.7.1 for
/// 5.7.14).
fn google(f: &Fact<'_>, t: &str) -> Option<Reason> {
    let code = f.code.filter(|c| valid_reply(*c))?;
    if !is_status(f.status) {
        return None;
    }
    let reply_tail = &code.to_string()[1..];
    let status_tail = &f.status[2..];
    GOOGLE
        .iter()
        .find(|(_, reply, status, words)| {
            t.contains(words) && reply.find(reply_tail) == Some(1) && status.find(status_tail).is_some_and(|i| i >= 2)
        })
        .map(|(r, ..)| *r)
}

/// Microsoft 365 / Exchange Online: each wording with the exact status it comes with (or a
/// range of details: `5.7.[606-649]`); else Outlook.com's own codes (`RP-001`, `SC-003`, …)
/// with their reply code.
fn microsoft(f: &Fact<'_>, t: &str) -> Option<Reason> {
    if !is_status(f.status) {
        return None;
    }
    let detail: u32 = f.status.rsplit('.').next()?.parse().ok()?;
    let status_fits = |listed: &str| match listed.split_once('[') {
        None => listed == f.status,
        Some((prefix, range)) => {
            let (lo, hi) = range.trim_end_matches(']').split_once('-').unwrap_or(("", ""));
            f.status.starts_with(prefix)
                && lo.parse::<u32>().is_ok_and(|lo| lo <= detail)
                && hi.parse::<u32>().is_ok_and(|hi| detail <= hi)
        }
    };
    if let Some((r, ..)) = MICROSOFT.iter().find(|(_, status, words)| status_fits(status) && t.contains(words)) {
        return Some(*r);
    }
    OUTLOOK_COM_CODES.iter().find(|(_, reply, c)| f.diag.contains(c) && f.code == Some(*reply)).map(|(r, ..)| *r)
}

/// Google Workspace relaying for its customers: a name lookup that failed is a missing
/// domain only when the reply is permanent.
///
/// Its wordings are read as Google writes them (case and all): "Domain name not found" is
/// Google's DNS report, while Postfix's "Host or domain name not found" and RFC 7505's
/// "null MX" in other servers' replies are left to the general reading.
fn gsuite(f: &Fact<'_>) -> Option<Reason> {
    let (status, reply) = class(f);
    let d = f.diag.split_whitespace().collect::<Vec<_>>().join(" ");
    let nxdomain = d.contains("responded with code NXDOMAIN") || d.contains("Domain name not found");
    if nxdomain && status == Some('5') && reply == Some('5') {
        return Some(HostUnknown);
    }
    if (nxdomain || d.contains(" had no relevant answers.")) && status != Some('5') && reply != Some('5') {
        return Some(NetworkError);
    }
    if d.contains("Null MX") {
        return Some(NotAccept);
    }
    if d.contains("because the address couldn't be found. Check for typos or unnecessary spaces and try again.") {
        return Some(UserUnknown);
    }
    None
}

/// NTT DOCOMO answers "550 Unknown user" for a missing mailbox and for its reception filter
/// alike; the status and the command it answered tell which.
fn nttdocomo(f: &Fact<'_>, t: &str) -> Option<Reason> {
    match f.status {
        "5.1.1" => return Some(UserUnknown),
        "5.2.0" => return Some(Filtered),
        _ => {}
    }
    let table: &[(&str, Reason)] = &[
        ("552 too much mail data", MailboxFull),
        ("503 bad sequence of commands", SyntaxError),
        ("504 command parameter not implemented", SyntaxError),
        ("552 too many recipients", TooManyConn),
    ];
    if let Some((_, r)) = table.iter().find(|(p, _)| t.contains(p)) {
        return Some(*r);
    }
    if f.status == "5.0.0" {
        return match f.phase {
            Some(Phase::RcptTo) => Some(UserUnknown),
            Some(Phase::Data) => Some(Rejected),
            _ => None,
        };
    }
    None
}

/// KDDI (au): "550 : User unknown", with no address before the colon, is its reception
/// filter; "550 <addr>: User unknown" a missing mailbox.
fn kddi(t: &str) -> Option<Reason> {
    if t.contains("550 : user unknown") {
        Some(Filtered)
    } else if t.contains(">: user unknown") {
        Some(UserUnknown)
    } else {
        None
    }
}

/// Orange, Wanadoo and La Poste: their reason numbers, else the SPF wording of their
/// refusal.
fn france_ptt(t: &str) -> Option<Reason> {
    super::provider::orange_code(t).or_else(|| t.contains("spf/dns de votre nom de domaine").then_some(AuthFailure))
}

// The services' own documented replies, as (reason, reply, status, wording) and
// (reason, wording); wordings lower-case.
const GOOGLE: &[(Reason, &str, &str, &str)] = &[
    (AuthFailure, "451", "4.7.24", "the spf record of the sending domain"),
    (AuthFailure, "550", "5.7.24", "the spf record of the sending domain"),
    (AuthFailure, "421", "4.7.26", "senders to authenticate with either spf or dkim"),
    (AuthFailure, "550", "5.7.26", "senders to authenticate with either spf or dkim"),
    (AuthFailure, "550", "5.7.26", "fails to pass spf checks for an spf record with a hard fail"),
    (AuthFailure, "550", "5.7.26", "has an spf record with a hard fail policy"),
    (AuthFailure, "451", "4.7.26", "is not accepted due to domain's dmarc policy"),
    (AuthFailure, "550", "5.7.26", "is not accepted due to domain's dmarc policy"),
    (AuthFailure, "550", "5.7.1", "fails to pass authentication checks"),
    (AuthFailure, "550", "5.7.26", "fails to pass authentication checks"),
    (AuthFailure, "421", "4.7.27", "senders to authenticate with spf"),
    (AuthFailure, "421", "4.7.27", "senders to authenticate their email with spf"),
    (AuthFailure, "550", "5.7.27", "senders to authenticate with spf"),
    (AuthFailure, "421", "4.7.30", "senders to authenticate their email with dkim"),
    (AuthFailure, "550", "5.7.30", "senders to authenticate with dkim"),
    (AuthFailure, "421", "4.7.32", "aligned with either the authenticated spf or dkim"),
    (AuthFailure, "421", "5.7.32", "aligned with either the authenticated spf or dkim"),
    (AuthFailure, "421", "4.7.40", "to add a dmarc record to "),
    (BadReputation, "421", "4.7.0", "very low reputation of the sending ip address"),
    (BadReputation, "421", "4.7.0", "very low reputation of the sending domain"),
    (BadReputation, "550", "5.7.1", "due to the very low reputation of the sending ip address"),
    (BadReputation, "550", "5.7.1", "due to the very low reputation of the sending domain"),
    (Blocked, "421", "4.7.0", "ip not in whitelist for rcpt domain"),
    (Blocked, "421", "4.7.0", "try again later, closing connection."),
    (Blocked, "501", "5.5.4", "empty helo/ehlo argument not allowed"),
    (Blocked, "501", "5.5.4", "helo/ehlo argument is invalid"),
    (Blocked, "421", "4.7.0", "an unusual rate of unsolicited mail"),
    (Blocked, "421", "4.7.28", "an unusual rate of mail"),
    (Blocked, "550", "5.7.1", "an unusual rate of unsolicited mail"),
    (Blocked, "550", "5.7.28", "an unusual rate of unsolicited mail"),
    (ExceedLimit, "552", "5.2.3", "exceeded google's message size limits"),
    (ExceedLimit, "552", "5.3.4", "exceeds google's limit of limit attachments."),
    (ExceedLimit, "552", "5.3.4", "your message exceeded google's message header size limits"),
    (ExceedLimit, "552", "5.3.4", "bytes per individual header size"),
    (ExceedLimit, "552", "5.3.4", "exceeds google's header name limit of"),
    (ExceedLimit, "552", "5.3.4", "exceeds google's message header size limit"),
    (Expired, "421", "4.7.0", "connection expired"),
    (Expired, "451", "4.4.2", "timeout - closing connection"),
    (FailedStartTls, "530", "5.7.0", "must issue a starttls command first"),
    (FailedStartTls, "454", "5.5.1", "starttls may not be repeated"),
    (FailedStartTls, "421", "4.7.0", "tls required for rcpt domain"),
    (FailedStartTls, "421", "4.7.29", "senders to use tls/ssl for smtp"),
    (FailedStartTls, "550", "5.7.29", "senders to use tls/ssl for smtp"),
    (MailboxFull, "452", "4.2.2", "inbox is out of storage space"),
    (MailboxFull, "552", "5.2.2", "inbox is out of storage space and inactive"),
    (MailboxFull, "452", "4.2.2", "is over quota"),
    (MailboxFull, "552", "5.2.2", "is over quota"),
    (MailboxFull, "550", "5.7.1", "email quota exceeded"),
    (MesgTooBig, "552", "5.3.4", "exceeded google's message size limits"),
    (MesgTooBig, "552", "5.3.4", "exceeds google's message size limit of"),
    (NetworkError, "554", "5.4.6", "message exceeded 50 hops"),
    (NetworkError, "554", "5.6.0", "message exceeded 50 hops"),
    (NoRelaying, "550", "5.7.0", "mail relay denied"),
    (NoRelaying, "550", "5.7.1", "invalid credentials for relay"),
    (NoRelaying, "550", "5.7.1", "is not authorized to send email directly to our servers"),
    (NotCompliantRfc, "550", "5.7.1", "missing a valid address in the from: header"),
    (NotCompliantRfc, "550", "5.7.1", "multiple addresses in from: header are not accepted"),
    (NotCompliantRfc, "550", "5.7.1", "is not rfc 5322 compliant"),
    (NotCompliantRfc, "550", "5.7.1", "missing a valid message-id: header"),
    (NotCompliantRfc, "550", "5.7.1", "contains a unicode character in a disallowed header"),
    (NotCompliantRfc, "550", "5.7.1", "encoded-word syntax is not permitted"),
    (NotCompliantRfc, "553", "5.1.7", "is not a valid rfc 5321 address"),
    (NotCompliantRfc, "554", "5.6.0", "mail message is malformed"),
    (PolicyViolation, "552", "5.7.0", "illegal attachment on your message"),
    (PolicyViolation, "552", "5.7.0", "blocked because its content presents a potential security issue"),
    (PolicyViolation, "550", "5.7.1", "you are sending to (or from) has a policy that prohibited"),
    (PolicyViolation, "421", "4.7.28", "sending messages with the same message-id:"),
    (Rejected, "550", "5.7.0", "mail sending denied"),
    (Rejected, "550", "5.7.1", "unauthenticated email is not accepted"),
    (RequirePtr, "421", "4.7.0", "does not have a ptr record"),
    (RequirePtr, "421", "4.7.23", " have a ptr record, or the ptr record"),
    (RequirePtr, "550", "5.7.1", "does not meet ipv6 sending guidelines regarding ptr records and authentication"),
    (RequirePtr, "550", "5.7.25", "does not have a ptr record"),
    (RequirePtr, "550", "5.7.25", "does not match the ip address of the hostname"),
    (SecurityError, "454", "4.7.0", "too many login attempts"),
    (SecurityError, "501", "5.5.2", "cannot decode response"),
    (SecurityError, "503", "5.7.0", "no identity changes permitted"),
    (SecurityError, "530", "5.5.1", "authentication required."),
    (SecurityError, "530", "5.7.0", "authentication required."),
    (SecurityError, "535", "5.7.1", "application-specific password required"),
    (SecurityError, "535", "5.7.9", "application-specific password required"),
    (SecurityError, "535", "5.7.1", "please log in with your web browser"),
    (SecurityError, "534", "5.7.9", "please log in with your web browser"),
    (SecurityError, "534", "5.7.14", "please log in through your web browser"),
    (SecurityError, "535", "5.7.1", "username and password not accepted"),
    (SecurityError, "535", "5.7.8", "username and password not accepted"),
    (SpamDetected, "421", "4.7.0", "due to the nature of the content or the links within"),
    (SpamDetected, "550", "5.7.1", "likely unsolicited mail"),
    (Speeding, "450", "4.2.1", "is receiving mail too quickly"),
    (Speeding, "450", "4.2.1", "peak smtp relay limit exceeded for customer"),
    (Speeding, "450", "4.2.1", "rate that prevents additional messages from being delivered"),
    (Speeding, "550", "5.2.1", "rate that prevents additional messages from being delivered"),
    (Speeding, "550", "5.4.5", "daily sending quota exceeded"),
    (Speeding, "550", "5.4.5", "daily user sending limit exceeded"),
    (Speeding, "550", "5.4.5", "daily smtp relay limit exceeded for"),
    (Speeding, "550", "5.7.1", "daily smtp relay limit exceeded for"),
    (Speeding, "550", "5.7.1", "daily smtp relay sending limit exceeded for"),
    (Speeding, "550", "5.7.1", "this mail has been rate limited"),
    (Suspend, "550", "5.2.1", "account that you tried to reach is disabled"),
    (Suspend, "550", "5.2.1", "account that you tried to reach is inactive"),
    (SyntaxError, "451", "4.5.0", "smtp protocol violation"),
    (SyntaxError, "454", "4.5.0", "smtp protocol violation"),
    (SyntaxError, "525", "5.7.10", "smtp protocol violation"),
    (SyntaxError, "535", "5.5.4", "optional argument not permitted"),
    (SyntaxError, "501", "5.7.11", "syntax error"),
    (SyntaxError, "501", "5.5.2", "syntax error"),
    (SyntaxError, "555", "5.5.2", "syntax error"),
    (SyntaxError, "502", "5.5.1", "too many unrecognized commands, goodbye"),
    (SyntaxError, "502", "5.5.1", "unimplemented command"),
    (SyntaxError, "502", "5.5.1", "unrecognized command"),
    (SyntaxError, "503", "5.5.1", "bad sequence of commands"),
    (SyntaxError, "503", "5.5.1", "ehlo/helo first"),
    (SyntaxError, "503", "5.5.1", "mail first"),
    (SyntaxError, "503", "5.5.1", "rcpt first"),
    (SyntaxError, "503", "5.5.1", "no data after bdat"),
    (SyntaxError, "504", "5.7.4", "unrecognized authentication type"),
    (SyntaxError, "504", "5.7.4", "xoauth is no longer supported"),
    (SyntaxError, "554", "5.7.0", "too many unauthenticated commands"),
    (SystemError, "421", "4.3.0", "temporary system problem"),
    (SystemError, "421", "4.7.0", "temporary system problem"),
    (SystemError, "421", "4.4.5", "server busy"),
    (SystemError, "451", "4.3.0", "multiple destination domains per transaction is unsupported"),
    (SystemError, "451", "4.3.0", "mail server has temporarily rejected this message"),
    (SystemError, "451", "4.3.0", "mail server temporarily rejected message"),
    (SystemError, "452", "4.5.3", "domain policy size per transaction exceeded"),
    (SystemError, "454", "4.7.0", "cannot authenticate due to temporary system problem"),
    (TooManyConn, "452", "4.5.3", "your message has too many recipients"),
    (TooManyConn, "550", "5.5.3", "too many recipients for this sender"),
    (UserUnknown, "550", "5.1.1", "the email account that you tried to reach does not exist"),
    (UserUnknown, "553", "5.1.2", "we weren't able to find the recipient domain"),
    (UserUnknown, "553", "5.1.3", "is not a valid rfc 5321 address"),
];
const MICROSOFT: &[(Reason, &str, &str)] = &[
    (AuthFailure, "4.7.26", "must pass either spf or dkim validation, this message is not signed"),
    (AuthFailure, "5.7.23", "the message was rejected because of sender policy framework violation"),
    (AuthFailure, "5.7.509", "does not pass dmarc verification"),
    (AuthFailure, "5.7.515", "doesn't meet the required authentication level"),
    (BadReputation, "4.7.650", "has been temporarily rate limited due to ip reputation"),
    (Blocked, "4.4.2", "connection dropped"),
    (Blocked, "4.7.[850-899]", "access denied, please try again later"),
    (Blocked, "5.7.25", "must have a reverse dns record"),
    (Blocked, "5.7.506", "access denied, bad helo"),
    (Blocked, "5.7.507", "access denied, rejected by recipient"),
    (Blocked, "5.7.510", "does not accept email over ipv6"),
    (Blocked, "5.7.511", "access denied, banned sender"),
    (Blocked, "5.7.513", "using customer block list"),
    (Blocked, "5.7.[606-649]", "access denied, banned sending ip "),
    (Blocked, "4.7.[500-699]", "access denied, please try again later"),
    (Blocked, "5.5.4", "invalid domain name"),
    (Blocked, "5.7.1", "part of their network is on our block list (s3150)"),
    (ContentError, "5.3.0", "too many related errors"),
    (ContentError, "5.6.11", "invalid characters"),
    (ContentError, "5.4.11", "agent generated message depth exceeded"),
    (ContentError, "5.5.6", "invalid message content"),
    (MesgTooBig, "5.2.3", "resolver.rst.recipsizelimit; message too large for this recipient"),
    (MesgTooBig, "5.3.4", "message size exceeds fixed maximum message size"),
    (MesgTooBig, "5.3.4", "message too big for system"),
    (Expired, "4.4.1", "connection timed out"),
    (Expired, "4.4.7", "message delayed"),
    (Expired, "4.4.7", "queue expired; message expired"),
    (Expired, "4.4.7", "message expired"),
    (Expired, "5.4.300", "message expired"),
    (Expired, "5.4.316", "message expired"),
    (FailedStartTls, "4.4.8", " failed mta-sts validation"),
    (FailedStartTls, "5.4.8", " failed mta-sts validation"),
    (FailedStartTls, "4.4.317", "starttls is required to send mail"),
    (FailedStartTls, "5.4.317", "starttls is required to send mail"),
    (FailedStartTls, "4.7.5", "remote certificate failed mta-sts validation"),
    (FailedStartTls, "5.7.5", "remote certificate failed mta-sts validation"),
    (FailedStartTls, "5.7.51", "restrictdomainstoipaddresses or restrictdomainstocertificate"),
    (FailedStartTls, "4.7.321", "starttls-not-supported:"),
    (FailedStartTls, "5.7.321", "starttls-not-supported:"),
    (FailedStartTls, "5.7.322", "certificate-expired:"),
    (FailedStartTls, "4.7.323", "tlsa-invalid:"),
    (FailedStartTls, "5.7.323", "tlsa-invalid:"),
    (FailedStartTls, "4.7.324", "dnssec-invalid:"),
    (FailedStartTls, "5.7.324", "dnssec-invalid:"),
    (FailedStartTls, "4.7.325", "certificate-host-mismatch:"),
    (FailedStartTls, "5.7.325", "certificate-host-mismatch:"),
    (MailboxFull, "5.2.2", "mailbox full"),
    (NetworkError, "5.4.4", "smtpsend.dns.nonexistentdomain; nonexistent domain"),
    (NetworkError, "5.4.6", "hop count exceeded - possible mail loop"),
    (NetworkError, "4.4.312", "dns query failed"),
    (NetworkError, "5.4.312", "dns query failed"),
    (NetworkError, "4.4.316", "connection refused"),
    (NetworkError, "5.4.316", "connection refused"),
    (NetworkError, "5.4.4", "invalid arguments"),
    (NetworkError, "5.4.6", "routing loop detected"),
    (NetworkError, "5.4.14", "routing loop detected"),
    (NoRelaying, "5.7.1", "unable to relay"),
    (NoRelaying, "5.7.1", "client was not authenticated"),
    (NoRelaying, "5.4.1", "relay access denied"),
    (NoRelaying, "5.7.64", "tenantattribution; relay access denied"),
    (NoRelaying, "5.4.310", "does not exist"),
    (NotAccept, "4.3.2", "system not accepting network messages"),
    (NotAccept, "4.4.4", "hosted tenant which has no mail-enabled subscriptions"),
    (NotAccept, "5.3.2", "storedrv.deliver: missing or bad storedriver mdb properties"),
    (PolicyViolation, "5.0.350", "x-dg-ref header is too long"),
    (PolicyViolation, "5.0.350", "requested action not taken: policy violation detected (as345)"),
    (PolicyViolation, "5.7.[900-999]", "delivery not authorized, message refused"),
    (Rejected, "5.1.7", "invalid address"),
    (Rejected, "5.1.7", "unknown sender address"),
    (Rejected, "5.1.0", "sender denied"),
    (Rejected, "5.1.8", "access denied, bad outbound sender"),
    (Rejected, "5.7.1", "delivery not authorized"),
    (Rejected, "5.7.12", "sender was not authenticated by organization"),
    (Rejected, "5.7.124", "sender not in allowed-senders list"),
    (Rejected, "5.7.133", "sender not authenticated for group"),
    (Rejected, "5.7.134", "sender was not authenticated for mailbox"),
    (Rejected, "5.7.13", "sender was not authenticated for public folder"),
    (Rejected, "5.7.135", "sender was not authenticated for public folder"),
    (Rejected, "5.7.136", "sender was not authenticated"),
    (Rejected, "5.7.[501-503]", "access denied, spam abuse detected"),
    (Rejected, "5.7.512", "access denied, message must be rfc 5322 section 3.6.2 compliant"),
    (Rejected, "5.7.750", "service unavailable. client blocked from sending from unregistered domains"),
    (Rejected, "5.7.[501-503]", "access denied, banned sender"),
    (SecurityError, "5.7.3", "cannot achieve exchange server authentication"),
    (SecurityError, "5.7.3", "not authorized"),
    (SecurityError, "5.7.1", "client was not authenticated"),
    (SecurityError, "5.7.57", "client was not authenticated to send anonymous mail during mail from"),
    (SpamDetected, "5.2.1", "content filter agent quarantined this message"),
    (TooManyConn, "5.5.3", "too many recipients"),
    (Speeding, "4.3.2", "storedrv.deliver; recipient thread limit exceeded"),
    (TooManyConn, "4.5.3", "too many recipients"),
    (TooManyConn, "4.7.652", "has exceeded the maximum number of connections"),
    (Speeding, "5.1.90", "reached your daily limit for message recipients"),
    (Speeding, "5.2.2", "submission quota exceeded"),
    (Speeding, "5.2.121", "recipient's per hour message receive limit"),
    (Speeding, "5.2.122", "recipient's per hour message receive limit"),
    (Speeding, "5.2.122", "the recipient has exceeded their limit for"),
    (Speeding, "5.7.508", "has exceeded permitted limits within"),
    (Speeding, "5.7.[700-749]", "tenant has exceeded threshold"),
    (Speeding, "5.7.[700-749]", "traffic not accepted from this ip"),
    (Suspend, "5.7.504", "recipient address rejected: access denied"),
    (Suspend, "5.7.505", "access denied, banned recipient"),
    (Suspend, "5.2.1", "mailbox cannot be accessed"),
    (SyntaxError, "5.3.3", "unrecognized command"),
    (SyntaxError, "5.5.2", "send hello first"),
    (SystemError, "4.3.2", "service not available"),
    (SystemError, "4.3.2", "service not active"),
    (SystemError, "5.3.5", "system incorrectly configured"),
    (SystemError, "5.3.190", "when journaling archive is disabled"),
    (SystemError, "5.0.0", "helo / ehlo requires domain address"),
    (SystemError, "5.1.4", "destination mailbox address ambiguous"),
    (SystemError, "5.2.4", "mailing list expansion problem"),
    (SystemError, "5.2.14", "misconfigured forwarding address"),
    (SystemError, "4.4.[22-28]", "message failed to be replicated:"),
    (SystemError, "4.4.3", "temporary server error. please try again later attr18"),
    (SystemError, "4.7.0", "temporary server error. please try again later. prx4 nexthop:"),
    (SystemError, "4.4.318", "(suspiciousremoteservererror)"),
    (SystemError, "5.4.318", "(suspiciousremoteservererror)"),
    (SystemError, "4.7.500", "server busy. please try again later from "),
    (SystemError, "4.7.700", "pfa agent busy, please try again."),
    (SystemFull, "4.3.1", "insufficient system resources"),
    (UserUnknown, "5.1.1", "resolver.adr.exrecipnotfound; not found"),
    (UserUnknown, "5.1.1", "user unknown"),
    (UserUnknown, "5.1.3", "storedrv.submit; invalid recipient address"),
    (UserUnknown, "5.1.[4-5]", "recipient address reserved by rfc 2606"),
    (UserUnknown, "5.1.6", "recipient addresses in single label domains not accepted"),
    (UserUnknown, "5.1.1", "bad destination mailbox address"),
    (UserUnknown, "5.1.10", "recipient not found"),
    (UserUnknown, "5.4.1", "recipient address rejected: access denied"),
    (UserUnknown, "5.5.0", "requested action not taken: mailbox unavailable"),
    (UserUnknown, "5.1.2", "invalid x.400 address"),
    (UserUnknown, "5.1.351", "remote server returned unknown recipient or mailbox unavailable"),
];
const OUTLOOK_COM_CODES: &[(Reason, u16, &str)] = &[
    (BadReputation, 421, "RP-001"),
    (BadReputation, 421, "RP-002"),
    (BadReputation, 421, "RP-003"),
    (BadReputation, 550, "SC-001"),
    (PolicyViolation, 550, "SC-002"),
    (Blocked, 550, "SC-003"),
    (Blocked, 550, "SC-004"),
    (Blocked, 550, "DY-001"),
    (VirusDetected, 550, "DY-002"),
    (Blocked, 550, "OU-001"),
    (BadReputation, 550, "OU-002"),
];
pub(crate) const OUTLOOK: &[(Reason, &str)] = &[
    (HostUnknown, "the mail could not be delivered to the recipient because the domain is not reachable"),
    (UserUnknown, "requested action not taken: mailbox unavailable"),
];
const APPLE: &[(Reason, &str)] = &[
    (AuthFailure, "s dmarc policy"),
    (AuthFailure, "blocked for failing both spf and dkim autentication checks"),
    (Blocked, "rejected due to having a domain present in the spamhaus"),
    (Blocked, "rejected due to listing in spamhaus"),
    (Blocked, "blocked - see https://support.proofpoint.com/dnsbl-lookup"),
    (Blocked, "not accepting connections"),
    (HasMoved, "recipient no longer on server"),
    (MailboxFull, "user is over quota"),
    (NoRelaying, "relay access denied"),
    (NotAccept, "host/domain does not accept mail"),
    (PolicyViolation, "due to local policy"),
    (Rejected, "sender address rejected"),
    (Speeding, "due to excessive volume"),
    (UserUnknown, "inactive email address"),
    (UserUnknown, "user does not exist"),
    (UserUnknown, "unknown or illegal alias"),
];
const TENCENT: &[(Reason, &str)] = &[
    (AuthFailure, "spf check failed"),
    (AuthFailure, "dmarc check failed"),
    (Blocked, "suspected bounce attacks"),
    (Blocked, "suspected spam ip"),
    (Blocked, "connection denied"),
    (MesgTooBig, "message too large"),
    (Rejected, "suspected spam"),
    (Rejected, "mail is rejected by recipients"),
    (SpamDetected, "spam is embedded in the email"),
    (SpamDetected, "mail content denied"),
    (Speeding, "mailbox unavailable or access denined"),
    (Speeding, "frequency of receiving messages is limited"),
    (Suspend, "is a deactivated mailbox"),
    (SyntaxError, "bad address syntax"),
    (TooManyConn, "ip frequency limited"),
    (TooManyConn, "domain frequency limited"),
    (TooManyConn, "sender frequency limited"),
    (TooManyConn, "connection frequency limited"),
    (UserUnknown, "mailbox not found"),
];
const YAHOO: &[(Reason, &str)] = &[
    (AuthFailure, "yahoo requires all senders to authenticate with either spf or dkim"),
    (Blocked, " because the ip is in spamhaus's list;"),
    (Blocked, "not accepted from ip addresses on spamhaus xbl"),
    (NoRelaying, "relaying denied for "),
    (NotCompliantRfc, "headers are not rfc compliant"),
    (PolicyViolation, "not accepted for policy reasons"),
    (Rejected, "temporarily deferred due to unexpected volume or user complaints"),
    (Rejected, "due to unresolvable rfc.5321 domain"),
    (Rejected, " will be permanently deferred"),
    (Speeding, "user is receiving mail too quickly"),
    (Suspend, " is no longer valid."),
    (Suspend, "this mailbox is disabled"),
    (SyntaxError, "syntax error in parameters or arguments"),
    (TooManyConn, "max message per connection reached"),
    (UserUnknown, "dd this user doesn't have a "),
    (UserUnknown, "mailbox not found"),
];
pub(crate) const AOL: &[(Reason, &str)] = &[
    (HostUnknown, "host or domain name not found"),
    (NotAccept, "type=mx: malformed or unexpected name server reply"),
];
const CLOUDFLARE: &[(Reason, &str)] = &[(Blocked, "found on one or more dnsbls"), (SystemError, "upstream error")];
const GODADDY_WORDS: &[(Reason, &str)] = &[
    (Blocked, "rbl reject"),
    (Blocked, "www.spamhaus.org/query/bl?ip="),
    (Expired, "has been in the queue too long"),
    (Expired, "delivery timeout"),
    (MailboxFull, "account storage limit"),
    (SpamDetected, "message rejected for spam or virus content"),
    (Suspend, "account disabled"),
    (SystemError, "message is looping"),
    (UserUnknown, "recipient not found"),
    (UserUnknown, "account does not exist"),
];
const COX_WORDS: &[(Reason, &str)] = &[
    (Blocked, "cox too many bad commands from"),
    (Blocked, "too many invalid recipients"),
    (RequirePtr, "dns check failure - try again later"),
    (RequirePtr, "rejected - no rdns"),
    (PolicyViolation, "esmtp no data before greeting"),
    (PolicyViolation, "attachment extension is forbidden"),
    (Rejected, "sender rejected"),
    (SystemError, "esmtp server temporarily not available"),
    (TooManyConn, "too many sessions from"),
    (TooManyConn, "requested action aborted: try again later"),
    (TooManyConn, "message threshold exceeded"),
    (UserUnknown, "recipient rejected"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimecast_zoho_and_facebook_hosts_read_their_own_replies() {
        assert_eq!(provider("ann@example.org", Some("eu-smtp-inbound-1.mimecast.com"), None), Some(Provider::Mimecast));
        assert_eq!(provider("ann@zoho.com", None, None), Some(Provider::Zoho));
        assert_eq!(provider("ann@example.org", Some("mx2.zoho.eu"), None), Some(Provider::Zoho));
        assert_eq!(provider("ann@example.org", Some("smtpin.vvv.facebook.com"), None), Some(Provider::Facebook));
        assert_eq!(provider("ann@example.org", Some("notmimecast.com"), None), None);

        let f = |code, diag| Fact { status: "", code: Some(code), diag, phase: None };
        assert_eq!(reason(Provider::Mimecast, &f(550, "550 Invalid Recipient")), Some(UserUnknown));
        // Mimecast's wording with another reply code is not its reply.
        assert_eq!(reason(Provider::Mimecast, &f(451, "451 Invalid Recipient")), None);
        assert_eq!(reason(Provider::Mimecast, &f(452, "452 Too many recipients")), Some(TooManyConn));
        assert_eq!(
            reason(Provider::Mimecast, &f(553, "553 This route requires encryption (TLS)")),
            Some(FailedStartTls)
        );
        assert_eq!(
            reason(Provider::Mimecast, &f(550, "550 Envelope blocked \u{2013} User Domain Entry")),
            Some(Rejected)
        );
        assert_eq!(reason(Provider::Zoho, &f(451, "451 4.7.1 Greylisted, try again after some time")), Some(Blocked));
        assert_eq!(
            reason(Provider::Zoho, &f(550, "550 5.1.1 User does not exist - <ann@zoho.com>")),
            Some(UserUnknown)
        );
        assert_eq!(
            reason(Provider::Zoho, &f(550, "550 5.7.1 Email rejected per DMARC policy for example.org")),
            Some(AuthFailure)
        );
        // Facebook's codes count from its hosts even where the reply does not name it.
        assert_eq!(reason(Provider::Facebook, &f(550, "550 5.1.1 RCP-P1 refused")), Some(UserUnknown));
        assert_eq!(super::super::provider::provider_reason("550 5.1.1 rcp-p1 refused"), None);
    }

    #[test]
    fn services_are_recognised_by_domain_and_host() {
        assert_eq!(provider("user@docomo.ne.jp", None, None), Some(Provider::NttDocomo));
        assert_eq!(provider("user@orange.fr", None, None), Some(Provider::FrancePtt));
        assert_eq!(provider("user@acme.com", None, None), None, "me.com is not a parent of acme.com");
        assert_eq!(provider("user@example.jp", Some("cluster5.eu.messagelabs.com"), None), Some(Provider::MessageLabs));
        assert_eq!(provider("user@example.jp", None, Some("googlemail.com")), Some(Provider::GSuite));
        assert_eq!(provider("user@example.jp", Some("mx.example.jp"), Some("mail.example.org")), None);
    }

    #[test]
    fn the_answering_host_is_read_from_the_frame_around_it() {
        assert_eq!(
            host_in("host mx1.example.net[192.0.2.1] said: 550 5.1.1 unknown").as_deref(),
            Some("mx1.example.net")
        );
        assert_eq!(
            host_in("... while talking to mfsmax.docomo.ne.jp.:\n>>> DATA").as_deref(),
            Some("mfsmax.docomo.ne.jp")
        );
        assert_eq!(host_in("550 see https://support.example.com/x for details").as_deref(), None);
        assert_eq!(
            host_in("550 rejected by cluster1.eu.messagelabs.com").as_deref(),
            Some("cluster1.eu.messagelabs.com")
        );
        assert_eq!(host_in("no host here, 192.0.2.1 only"), None);
        // A frame without its end is cut at a character boundary.
        assert_eq!(host_in(&format!("host {}", "н".repeat(100))), None);
    }

    #[test]
    fn received_headers_give_the_sending_hosts() {
        let h = "received: from mail-lf0-f66.google.com ([209.85.215.66])\n\tby mx.example.jp\nsubject: x\nreceived: from localhost by a.example\n";
        assert_eq!(received_from_hosts(h), vec!["mail-lf0-f66.google.com".to_string(), String::new()]);
    }

    #[test]
    fn docomo_reads_the_command() {
        let f = |status, phase| Fact { status, code: Some(550), diag: "550 Unknown user x@docomo.ne.jp", phase };
        assert_eq!(reason(Provider::NttDocomo, &f("5.2.0", Some(Phase::Data))), Some(Filtered));
        assert_eq!(reason(Provider::NttDocomo, &f("5.1.1", Some(Phase::Data))), Some(UserUnknown));
        let g = Fact { status: "5.0.0", code: Some(550), diag: "550 rejected", phase: Some(Phase::Data) };
        assert_eq!(reason(Provider::NttDocomo, &g), Some(Rejected));
    }

    #[test]
    fn google_and_microsoft_read_wording_with_its_codes() {
        let f = |status, code, diag| Fact { status, code: Some(code), diag, phase: None };
        let gmail = "The email account that you tried to reach is over quota. Please direct the recipient to";
        assert_eq!(reason(Provider::Google, &f("4.2.2", 452, gmail)), Some(MailboxFull));
        assert_eq!(reason(Provider::Google, &f("5.2.2", 552, gmail)), Some(MailboxFull));
        // The wording with another status is not this reply.
        assert_eq!(reason(Provider::Google, &f("5.1.1", 550, gmail)), None);
        let size = "Your message exceeded Google's message size limits.";
        assert_eq!(reason(Provider::Google, &f("5.2.3", 552, size)), Some(ExceedLimit));
        assert_eq!(reason(Provider::Google, &f("5.3.4", 552, size)), Some(MesgTooBig));
        let banned = "5.7.606 Access denied, banned sending IP [192.0.2.1].";
        assert_eq!(reason(Provider::Microsoft, &f("5.7.606", 550, banned)), Some(Blocked));
        assert_eq!(reason(Provider::Microsoft, &f("5.7.650", 550, banned)), None);
        assert_eq!(
            reason(
                Provider::Microsoft,
                &f("5.7.1", 550, "Unfortunately, messages from [192.0.2.1] weren't sent. SC-001")
            ),
            Some(BadReputation)
        );
    }

    #[test]
    fn kddi_tells_its_filter_from_a_missing_mailbox() {
        let f = |diag| Fact { status: "5.0.0", code: Some(550), diag, phase: Some(Phase::RcptTo) };
        assert_eq!(reason(Provider::Kddi, &f("550 : User unknown")), Some(Filtered));
        assert_eq!(reason(Provider::Kddi, &f("550 <ann@ezweb.ne.jp>: User unknown")), Some(UserUnknown));
        assert_eq!(provider("ann@ezweb.ne.jp", None, None), Some(Provider::Kddi));
    }

    #[test]
    fn gsuite_tells_a_missing_domain_from_a_failed_lookup() {
        let f = |status, code| Fact {
            status,
            code: Some(code),
            diag: "DNS Error: DNS type 'mx' lookup of example.jp responded with code NXDOMAIN",
            phase: None,
        };
        assert_eq!(reason(Provider::GSuite, &f("5.1.2", 550)), Some(HostUnknown));
        assert_eq!(reason(Provider::GSuite, &f("4.0.0", 450)), Some(NetworkError));
    }
}
