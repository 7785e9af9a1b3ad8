//! Which large mail service answered, and what its own replies mean.
//!
//! A provider's replies carry wordings and codes whose meaning only that provider documents:
//! NTT DOCOMO answers "550 Unknown user" whether the mailbox is missing or a filter refused the
//! message, and only the SMTP command tells which; Google Workspace says "responded with code
//! NXDOMAIN" for a domain that does not exist and for one whose DNS failed just now. So the
//! service is recognised first, from the recipient's domain, the remote host that answered, or
//! the host that wrote the bounce, and its rules are read before the general ones.

use super::reason::Reason::{self, *};
use super::text::Phase;

/// A mail service with rules of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Aol,
    Apple,
    Cloudflare,
    FrancePtt,
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
}

/// Host names (and the domains under them) that mark each service.
const HOSTS: &[(Provider, &[&str])] = &[
    (Provider::Aol, &["mail.aol.com", "mx.aol.com"]),
    (Provider::Apple, &["mail.icloud.com", "apple.com", "me.com"]),
    (Provider::Cloudflare, &["mx.cloudflare.net"]),
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
fn of_domain(domain: &str) -> Option<Provider> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if !d.contains('.') {
        return None;
    }
    HOSTS.iter().find(|(_, marks)| marks.iter().any(|m| under(m, &d))).map(|(p, _)| *p)
}

/// The service behind a bounce: the recipient's domain first, then the host that answered,
/// then the host that wrote the bounce.
pub(crate) fn provider(recipient: &str, remote: Option<&str>, local: Option<&str>) -> Option<Provider> {
    let domain = recipient.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    of_domain(domain).or_else(|| remote.and_then(of_host)).or_else(|| local.and_then(of_host))
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
    let mut out = Vec::new();
    let mut lines = headers_lower.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(v) = line.strip_prefix("received:") else { continue };
        let mut value = v.to_string();
        while let Some(next) = lines.peek() {
            if !next.starts_with([' ', '\t']) {
                break;
            }
            value.push(' ');
            value.push_str(next.trim());
            lines.next();
        }
        let v = value.trim();
        if let Some(rest) = v.strip_prefix("from ") {
            let host = rest.split([' ', '(', '[']).next().unwrap_or("").trim_end_matches('.');
            if is_host(host) {
                out.push(host.to_string());
                continue;
            }
        }
        out.push(String::new());
    }
    out
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
        Provider::GSuite => gsuite(f, &t),
        Provider::NttDocomo => nttdocomo(f, &t),
        Provider::FrancePtt => france_ptt(&t),
        Provider::MessageLabs => super::provider::messagelabs_table(&t),
        Provider::Kddi => kddi(&t),
        _ => None,
    }
}

fn class(f: &Fact<'_>) -> (Option<char>, Option<char>) {
    (f.status.chars().next(), f.code.and_then(|c| c.to_string().chars().next()))
}

/// Google Workspace relaying for its customers: a name lookup that failed is a missing
/// domain only when the reply is permanent.
fn gsuite(f: &Fact<'_>, t: &str) -> Option<Reason> {
    let (status, reply) = class(f);
    let nxdomain = t.contains("responded with code nxdomain") || t.contains("domain name not found");
    if nxdomain && status == Some('5') && reply == Some('5') {
        return Some(HostUnknown);
    }
    if (nxdomain || t.contains(" had no relevant answers.")) && status != Some('5') && reply != Some('5') {
        return Some(NetworkError);
    }
    if t.contains("null mx") {
        return Some(NotAccept);
    }
    if t.contains("because the address couldn't be found") {
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
        ("550 unknown user", UserUnknown),
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

#[cfg(test)]
mod tests {
    use super::*;

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
