//! Text helpers: addresses, status and reply codes, where the returned copy begins, and
//! which lines of a plain-text bounce name a recipient.

/// Characters allowed in the local part of an address we pick out of free text.
fn local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-=/!#$&'*?^`{|}~".contains(c)
}

fn domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

/// Every address in `s`, with its byte offset, in order.
pub(crate) fn addresses(s: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    for (at, _) in s.match_indices('@') {
        let mut start = at;
        while start > 0 && local_char(bytes[start - 1] as char) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && domain_char(bytes[end] as char) {
            end += 1;
        }
        let local = s[start..at].trim_start_matches(['.', '\'', '`', '/', '=', '|']);
        let domain = s[at + 1..end].trim_end_matches(['.', '-']);
        if local.is_empty() || !domain.contains('.') || domain.starts_with('.') {
            continue;
        }
        let tld = domain.rsplit('.').next().unwrap_or("");
        if tld.len() < 2 || !tld.chars().all(|c| c.is_ascii_alphabetic()) {
            continue;
        }
        let start = at - local.len();
        out.push((start, format!("{local}@{domain}")));
    }
    out
}

/// The first address in `s`.
pub(crate) fn first_address(s: &str) -> Option<String> {
    addresses(s).into_iter().next().map(|(_, a)| a)
}

/// The first RFC 3463 failure status code (`5.1.1`, `4.4.7`) in `s`, not part of an IP address or
/// version number.
pub(crate) fn status_in(s: &str) -> Option<String> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if !matches!(b[i], b'4' | b'5') || b.get(i + 1) != Some(&b'.') {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
            continue;
        }
        let mut j = i + 2;
        let s1 = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == s1 || j - s1 > 3 || b.get(j) != Some(&b'.') {
            continue;
        }
        j += 1;
        let s2 = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == s2 || j - s2 > 3 {
            continue;
        }
        if b.get(j).is_some_and(|c| c.is_ascii_digit() || *c == b'.' && b.get(j + 1).is_some_and(u8::is_ascii_digit)) {
            continue;
        }
        return Some(s[i..j].to_string());
    }
    None
}

/// The first SMTP reply code (`550`) in `s`: three digits starting with 2, 4 or 5 that stand
/// alone (start of a line or after a space, `:`, `(`, `<<<`, `#`) and are followed by a space,
/// `-`, end or an enhanced code.
pub(crate) fn reply_code_in(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        let ok_start = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n' | b':' | b'(' | b'<' | b'#' | b'[' | b'"');
        let digits = b[i..i + 3].iter().all(u8::is_ascii_digit);
        let ok_end = b.get(i + 3).is_none_or(|c| matches!(c, b' ' | b'-' | b'\n' | b'\r' | b')' | b'\t' | b']'));
        if ok_start && digits && ok_end && matches!(b[i], b'4' | b'5') && b[i + 1] <= b'5' {
            // Not the first part of an IP address, a time or a date.
            let prev_is_dot = i > 0 && b[i - 1] == b'.';
            if !prev_is_dot {
                return std::str::from_utf8(&b[i..i + 3]).ok().and_then(|t| t.parse().ok());
            }
        }
        i += 1;
    }
    None
}

/// Drops HTML tags and decodes the few entities bounce pages use.
pub(crate) fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut in_style = false;
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let b = html.as_bytes();
    while i < b.len() {
        if lower[i..].starts_with("<style") || lower[i..].starts_with("<script") {
            in_style = true;
        } else if in_style && (lower[i..].starts_with("</style") || lower[i..].starts_with("</script")) {
            in_style = false;
        }
        let c = html[i..].chars().next().unwrap_or(' ');
        match c {
            '<' => {
                in_tag = true;
                if lower[i..].starts_with("<br") || lower[i..].starts_with("<p") || lower[i..].starts_with("<tr") {
                    out.push('\n');
                }
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag && !in_style => out.push(c),
            _ => {}
        }
        i += c.len_utf8();
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Lines that introduce the returned copy of the original message.
const ORIGINAL_MARKERS: &[&str] = &[
    "original message",
    "copy of the message",
    "copy of your message",
    "copy of the original message",
    "unsent message follows",
    "message headers follow",
    "headers of the original",
    "original message headers",
    "returned message",
    "below this line is a copy",
    "included is a copy",
    "the original message was",
    "content-type: message/rfc822",
    "content-type: text/rfc822-headers",
    "------ this is a copy",
    "undelivered message",
    "message that caused",
    "original mail",
    "your message reads",
    "received message follows",
    "text of the message",
];

/// The part of a bounce text before the returned copy of the original message.
pub(crate) fn cut_original(text: &str) -> &str {
    let mut off = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let l = line.trim().to_ascii_lowercase();
        // A marker line looks like a separator, not a sentence of the explanation.
        let separator_like = l.starts_with(|c: char| !c.is_alphanumeric()) || l.len() < 45 || l.ends_with(':');
        let marker = separator_like && ORIGINAL_MARKERS.iter().any(|m| l.contains(m)) && l.len() < 120;
        let header_start = n > 2
            && ["received: ", "return-path: ", "dkim-signature: ", "message-id: ", "x-received: "]
                .iter()
                .any(|h| l.starts_with(h));
        if marker || header_start {
            return &text[..off];
        }
        off += line.len();
    }
    text
}

/// Whether the failure came in reply to DATA (the recipient was accepted and
/// the message refused afterwards): directly ("in reply to end of DATA command"), or in an
/// SMTP transcript where the reply naming `addr` follows a DATA command.
pub(crate) fn data_stage(diagnostic: &str, transcript: &str, addr: &str) -> bool {
    let d = diagnostic.to_ascii_lowercase();
    if ["end of data", "after data", "final data", "(data)", "after end of message", "data command"]
        .iter()
        .any(|p| d.contains(p))
    {
        return true;
    }
    let lower = transcript.to_ascii_lowercase();
    // Pipelined sessions answer the RCPTs after DATA was sent: those are RCPT replies.
    if addr.is_empty()
        || ["need rcpt", "must precede data", "rcpt commands were rejected"].iter().any(|p| lower.contains(p))
    {
        return false;
    }
    let addr = addr.to_ascii_lowercase();
    let mut last_command = String::new();
    for line in lower.lines() {
        let t = line.trim();
        let cmd = t.strip_prefix(">>>").or_else(|| t.strip_prefix("in:"));
        if let Some(c) = cmd {
            last_command = c.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        let reply = t.starts_with("<<<") || t.starts_with("out:");
        if reply && t.contains(&addr) && reply_code_in(t).is_some() && last_command == "data" {
            return true;
        }
    }
    false
}

/// What a line of a plain-text bounce says about a recipient.
pub(crate) fn recipient_on_line(line: &str) -> Option<String> {
    let t = line.trim();
    let lower = t.to_ascii_lowercase();
    // SMTP transcripts: ">>> RCPT TO:<a>", "... after RCPT TO:<a>:".
    if let Some(i) = lower.find("rcpt to:") {
        return first_address(&t[i..]);
    }
    for key in ["final-recipient:", "original-recipient:", "x-failed-recipients:", "failed-recipient:"] {
        if lower.starts_with(key) {
            return first_address(t);
        }
    }
    // The line starts with the address: "<a>:", "a", "550 <a>... User unknown", "<a> (error)".
    let mut rest = t.trim_start_matches(['-', '*', '>', '#', '\u{2022}', ' ', '\t', '"', '\'']).trim_start();
    let mut words = rest.split_whitespace();
    if let Some(w) = words.next()
        && w.len() == 3
        && w.chars().all(|c| c.is_ascii_digit())
    {
        rest = rest[3..].trim_start();
        if let Some(code) = rest.split_whitespace().next()
            && status_in(code).is_some_and(|s| s.len() == code.trim_end_matches(':').len())
        {
            rest = rest[code.len()..].trim_start();
        }
    }
    let first = rest.split_whitespace().next().unwrap_or("");
    let bare = first
        .trim_start_matches(['<', '"', '\'', '(', '['])
        .trim_end_matches(['>', ':', '.', ',', ';', '"', '\'', ')', ']']);
    if bare.contains('@')
        && let Some(a) = first_address(bare)
        && a.len() + 2 >= bare.len()
    {
        // "a" alone, or followed by a reason: not "a wrote:" in running text, which has
        // more words before any punctuation. Accept anything where the address is the
        // first word of the line.
        return Some(a);
    }
    // "Recipient address: a", "Delivery to a failed", "There was an error delivering to <a>."
    const KEYS: &[&str] = &[
        "recipient",
        "address",
        "addressee",
        "delivered to",
        "delivery to",
        "deliver to",
        "delivering your mail to",
        "delivering to",
        "message to",
        "mail to",
        "sent to",
        "addressed to",
        "destination",
        "user",
        "mailbox",
        "to:",
        "to <",
    ];
    if KEYS.iter().any(|k| lower.contains(k)) {
        return first_address(t);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(status_in("host [192.0.2.153]: 550 5.1.1 <a@b.example>"), Some("5.1.1".into()));
        assert_eq!(status_in("550-5.7.26 Unauthenticated"), Some("5.7.26".into()));
        assert_eq!(status_in("version 10.5.1.2"), None);
        assert_eq!(reply_code_in("host mx [192.0.2.153]: 550 5.1.1 x"), Some(550));
        assert_eq!(reply_code_in("at 12:30:45 nothing"), None);
        assert_eq!(reply_code_in("<<< 421 busy"), Some(421));
    }

    #[test]
    fn recipient_lines() {
        assert_eq!(recipient_on_line("  kijitora@example.jp").as_deref(), Some("kijitora@example.jp"));
        assert_eq!(recipient_on_line("<a@b.example>:").as_deref(), Some("a@b.example"));
        assert_eq!(recipient_on_line("550 <a@b.example>... User unknown").as_deref(), Some("a@b.example"));
        assert_eq!(recipient_on_line(">>> RCPT To:<a@b.example>").as_deref(), Some("a@b.example"));
        assert_eq!(recipient_on_line("Nothing here"), None);
    }

    #[test]
    fn addresses_in_text() {
        assert_eq!(first_address("mail to <x.y+z@mail.example.org>.").as_deref(), Some("x.y+z@mail.example.org"));
        assert_eq!(first_address("a@b"), None);
    }
}
