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
/// `code` is an enhanced status code as written: `class.subject.detail`, class 2, 4 or 5,
/// subject and detail one to three digits.
pub(crate) fn is_status(code: &str) -> bool {
    let mut it = code.split('.');
    matches!(it.next(), Some("2" | "4" | "5"))
        && it.clone().count() == 2
        && it.all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
}

pub(crate) fn status_in(s: &str) -> Option<String> {
    statuses_in(s).into_iter().next()
}

/// Every failure status code in `s`, in order (the rules of [`status_in`]).
pub(crate) fn statuses_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
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
        out.push(s[i..j].to_string());
    }
    out
}

/// The reply code in `s` of the class `class` (`'4'`, `'5'`), the one that goes with a status
/// code of that class; any reply code where `class` is `None`.
pub(crate) fn reply_code_of_class(s: &str, class: Option<char>) -> Option<u16> {
    let mut from = 0;
    while let Some((at, code)) = reply_code_at(&s[from..]) {
        if class.is_none_or(|c| code.to_string().starts_with(c)) {
            return Some(code);
        }
        from += at + 3;
    }
    None
}

/// The first SMTP reply code (`550`) in `s`: three digits starting with 2, 4 or 5 that stand
/// alone (start of a line or after a space, `:`, `(`, `<<<`, `#`) and are followed by a space,
/// `-`, end or an enhanced code.
pub(crate) fn reply_code_in(s: &str) -> Option<u16> {
    reply_code_at(s).map(|(_, code)| code)
}

/// [`reply_code_in`] with the code's byte offset in `s`.
fn reply_code_at(s: &str) -> Option<(usize, u16)> {
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
                return std::str::from_utf8(&b[i..i + 3]).ok().and_then(|t| t.parse().ok()).map(|c| (i, c));
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
        // Exchange's "The MTS-ID of the original message is: …" names the original, it does not
        // start it.
        let marker =
            separator_like && ORIGINAL_MARKERS.iter().any(|m| l.contains(m)) && l.len() < 120 && !l.contains("mts-id");
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

/// The SMTP command a failure reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The connection greeting or HELO / EHLO: the client itself was refused.
    Connect,
    /// MAIL FROM: the envelope sender was refused.
    MailFrom,
    /// RCPT TO: the recipient was refused.
    RcptTo,
    /// DATA or the end of the message: the recipient had been accepted, the message was not.
    Data,
}

/// How MTAs name the command a reply answered (Postfix "in reply to …", Exim "after …",
/// qmail "… was rejected", Sendmail and others), lower case, white space collapsed.
const PHASE_PHRASES: &[(Phase, &[&str])] = &[
    (
        Phase::Data,
        &[
            "end of data",
            "after data",
            "final data",
            "(data)",
            "in reply to data",
            "data command",
            "after end of message",
            "after pipelined data",
            "after i sent the message",
            "failed on data",
            "did not like our data",
            "message body was rejected",
        ],
    ),
    (
        Phase::RcptTo,
        &[
            "rcpt to command",
            "in reply to rcpt",
            "after rcpt to",
            "after pipelined rcpt",
            "does not like recipient",
            "did not like our rcpt",
            "rcpt command",
            "[rcpt_to]",
        ],
    ),
    (
        Phase::MailFrom,
        &[
            "mail from command",
            "in reply to mail from",
            "after mail from",
            "after pipelined mail from",
            "sender was rejected",
            "did not like our mail from",
        ],
    ),
    (
        Phase::Connect,
        &[
            "in reply to helo",
            "in reply to ehlo",
            "after helo",
            "after ehlo",
            "helo command",
            "ehlo command",
            "after initial connection",
            "greeting failed",
            "my name was rejected",
            "refused to talk to me",
            "in reply to our greeting",
            "smtp greeting",
        ],
    ),
];

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase()
}

/// The phase a diagnostic names, where it names one: the earliest phrase in the text wins.
pub(crate) fn phase_in(text: &str) -> Option<Phase> {
    let t = collapse(text);
    let mut best: Option<(usize, Phase)> = None;
    for (phase, phrases) in PHASE_PHRASES {
        for p in *phrases {
            if let Some(i) = t.find(p)
                && best.is_none_or(|(b, _)| i < b)
            {
                best = Some((i, *phase));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// The SMTP command a diagnostic names as an upper-case word (`… RCPT TO:<a> …`, `… DATA
/// …`), as replies and MTAs write commands; where it names several, the latest in the
/// session. Words inside addresses or host names (`DATA@x`, `MAIL.EXAMPLE`) do not count.
pub(crate) fn command_word(text: &str) -> Option<Phase> {
    const WORDS: &[(&str, Phase)] = &[
        ("HELO", Phase::Connect),
        ("EHLO", Phase::Connect),
        ("STARTTLS", Phase::Connect),
        ("AUTH", Phase::Connect),
        ("MAIL FROM", Phase::MailFrom),
        ("RCPT", Phase::RcptTo),
        ("DATA", Phase::Data),
        ("QUIT", Phase::Data),
    ];
    let bytes = text.as_bytes();
    let glued = |b: Option<&u8>| b.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'-'));
    let mut found = None;
    for (word, phase) in WORDS {
        let mut from = 0;
        while let Some(i) = text[from..].find(word) {
            let start = from + i;
            let end = start + word.len();
            let before = start.checked_sub(1).and_then(|j| bytes.get(j));
            // "MAIL FROM" may be glued to its colon; the others stand alone.
            if !glued(before) && !glued(bytes.get(end)) {
                found = Some(*phase);
                break;
            }
            from = end;
        }
    }
    found
}

fn command_phase(command: &str) -> Option<Phase> {
    match command {
        "data" | "bdat" | "." => Some(Phase::Data),
        "rcpt" => Some(Phase::RcptTo),
        "mail" => Some(Phase::MailFrom),
        "helo" | "ehlo" | "lhlo" => Some(Phase::Connect),
        _ => None,
    }
}

/// The phase in an SMTP transcript (`>>> RCPT To:<a>` / `<<< 550 …`, or `In:` / `Out:`): the
/// command answered by the failure reply about `addr` (the reply names it, or the command
/// did), or by the only failure reply when the transcript has just one.
pub(crate) fn transcript_phase(transcript: &str, addr: &str) -> Option<Phase> {
    let lower = transcript.to_ascii_lowercase();
    // Pipelined sessions answer the RCPTs after DATA was sent: those are RCPT replies.
    if ["need rcpt", "must precede data", "rcpt commands were rejected", "no valid recipients"]
        .iter()
        .any(|p| lower.contains(p))
    {
        return None;
    }
    let addr = addr.to_ascii_lowercase();
    let mut last_command = String::new();
    let mut command_names_addr = false;
    let mut failures = Vec::new();
    let mut replied = false;
    for line in lower.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix(">>>").or_else(|| t.strip_prefix("in:")) {
            last_command = c.split_whitespace().next().unwrap_or("").trim_end_matches(':').to_string();
            command_names_addr = !addr.is_empty() && c.contains(&addr);
            replied = false;
            continue;
        }
        let Some(reply) = t.strip_prefix("<<<").or_else(|| t.strip_prefix("out:")) else { continue };
        let reply = reply.trim_start();
        let first_reply = !replied;
        replied = true;
        if !reply.starts_with(['4', '5']) || reply_code_in(reply).is_none() {
            continue;
        }
        let phase = if last_command.is_empty() { Some(Phase::Connect) } else { command_phase(&last_command) };
        if !addr.is_empty() && (reply.contains(&addr) || command_names_addr && first_reply) {
            return phase;
        }
        failures.push(phase);
    }
    if failures.len() == 1 { failures[0] } else { None }
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
        assert_eq!(statuses_in("550 5.0.0 <a@b.example>... 5.7.1 refused, see 10.5.1.2"), ["5.0.0", "5.7.1"]);
        assert_eq!(reply_code_of_class("421 4.7.0 busy; earlier 550 5.1.1", Some('5')), Some(550));
        assert_eq!(reply_code_of_class("550 user unknown", Some('4')), None);
        assert_eq!(reply_code_of_class("550 user unknown", None), Some(550));
        // The next code is looked for after the one skipped, not after an earlier look-alike
        // of it (`450550` holds no reply code).
        assert_eq!(reply_code_of_class("ref 450550 x 450 y", Some('5')), None);
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
    fn phases() {
        assert_eq!(phase_in("said: 550 : User unknown (in reply to end of DATA command)"), Some(Phase::Data));
        assert_eq!(phase_in("SMTP error from remote mail server after MAIL FROM:<a@b.example>"), Some(Phase::MailFrom));
        assert_eq!(
            phase_in("550 5.1.1 <a@b.example>... User unknown (in reply to RCPT TO command)"),
            Some(Phase::RcptTo)
        );
        assert_eq!(phase_in("Connected to 192.0.2.1 but my name was rejected."), Some(Phase::Connect));
        assert_eq!(phase_in("550 5.1.1 User unknown"), None);
        let t = ">>> RCPT To:<a@b.example>\n<<< 550 No such user here\n>>> DATA\n<<< 554 Transaction failed";
        assert_eq!(transcript_phase(t, "a@b.example"), Some(Phase::RcptTo));
        assert_eq!(transcript_phase(">>> DATA\n<<< 550 Unknown user c@d.example", "c@d.example"), Some(Phase::Data));
    }

    #[test]
    fn commands_written_in_capitals() {
        assert_eq!(command_word("550 5.1.1 <a@b.example> refused at RCPT TO:<a@b.example>"), Some(Phase::RcptTo));
        assert_eq!(command_word("MAIL FROM:<s@x.example> then RCPT and DATA"), Some(Phase::Data));
        assert_eq!(command_word("554 rejected after EHLO"), Some(Phase::Connect));
        // Inside an address or a host name a command word is not a command.
        assert_eq!(command_word("550 DATABASE@x.example MAIL.example.org unknown"), None);
        assert_eq!(command_word("550 data was rejected"), None);
    }

    #[test]
    fn addresses_in_text() {
        assert_eq!(first_address("mail to <x.y+z@mail.example.org>.").as_deref(), Some("x.y+z@mail.example.org"));
        assert_eq!(first_address("a@b"), None);
    }
}
