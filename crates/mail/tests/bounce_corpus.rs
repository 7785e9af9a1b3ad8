//! Runs the bounce classifier over the corpus in `tests/corpora/bounces` and checks the
//! figures against floors just below what it reaches.
//!
//! The corpus is split in two halves by an FNV-1a hash of the file name: half A was looked
//! at while writing the rules, half B was not. Both halves' figures are printed.
//! `BOUNCE_DEBUG=A` (or `B`, or `all`) prints every wrong recipient of that half.

use std::collections::BTreeMap;
use std::path::PathBuf;

use epistle_mail::bounce::{Reason, classify_mail, classify_reply, classify_reply_to};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpora/bounces")
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn half(name: &str) -> &'static str {
    if fnv1a(name).is_multiple_of(2) { "A" } else { "B" }
}

#[derive(Default)]
struct Tally {
    expected: usize,
    found: usize,
    reason_ok: usize,
    hard_ok: usize,
    status_class_ok: usize,
    status_compared: usize,
    /// Codes the mail states (not sisimai's inferred `x.0.9NN`) read exactly.
    status_exact_ok: usize,
    status_exact_compared: usize,
}

impl Tally {
    fn pct(n: usize, d: usize) -> f64 {
        if d == 0 { 100.0 } else { 100.0 * n as f64 / d as f64 }
    }
    fn line(&self, label: &str) -> String {
        format!(
            "{label:<6} recipients {:>3}/{:<3} found   reason {:>6.2}%   hard/soft {:>6.2}%   status class {:>6.2}% (of {})   exact {:>6.2}% (of {})",
            self.found,
            self.expected,
            Self::pct(self.reason_ok, self.expected),
            Self::pct(self.hard_ok, self.expected),
            Self::pct(self.status_class_ok, self.status_compared),
            self.status_compared,
            Self::pct(self.status_exact_ok, self.status_exact_compared),
            self.status_exact_compared,
        )
    }
}

#[test]
fn corpus_figures() {
    let dir = corpus();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json")).expect("json");
    let expected = expected.as_object().expect("object");
    let debug = std::env::var("BOUNCE_DEBUG").unwrap_or_default();

    let mut halves: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut per_reason: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut extra = 0;
    // Per half, what was expected and what the classifier answered where it was wrong (no
    // file names or texts: says whether misses are parsing or judging, without reading
    // half B).
    let mut wrong_answers: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    // Per half and mail family (the file name without its number: `lhost-postfix`),
    // right reasons / recipients: which formats the misses come from.
    let mut families: BTreeMap<(&str, String), (usize, usize)> = BTreeMap::new();
    for (name, want) in expected {
        let raw = std::fs::read(dir.join("eml").join(name)).expect("corpus file");
        let got = classify_mail(&raw);
        let want = want.as_array().expect("array");
        let h = half(name);
        let tally = halves.entry(h).or_default();
        tally.expected += want.len();
        tally.found += got.len().min(want.len());
        extra += got.len().saturating_sub(want.len());
        for w in want {
            let index = w["index"].as_u64().expect("index") as usize;
            let w_reason = w["reason"].as_str().expect("reason");
            let w_hard = w["hard_bounce"].as_bool().expect("hard");
            let w_status = w["status"].as_str().unwrap_or("");
            let g = got.get(index.wrapping_sub(1));
            let reason_ok = g.is_some_and(|g| g.reason.as_str() == w_reason);
            let hard_ok = g.is_some_and(|g| g.hard_bounce == w_hard);
            tally.reason_ok += usize::from(reason_ok);
            tally.hard_ok += usize::from(hard_ok);
            if let Some(g) = g
                && !w_status.is_empty()
                && !g.status.is_empty()
            {
                tally.status_compared += 1;
                tally.status_class_ok += usize::from(g.status.get(..1) == w_status.get(..1));
            }
            let stated = !w_status.is_empty() && w_status.get(1..5).is_none_or(|s| s != ".0.9");
            let status_same = g.is_some_and(|g| g.status == w_status);
            if g.is_some() && stated {
                tally.status_exact_compared += 1;
                tally.status_exact_ok += usize::from(status_same);
            }
            if !reason_ok {
                let mut answered = g.map_or("(recipient not found)".to_string(), |g| g.reason.as_str().to_string());
                if stated && g.is_some() && !status_same {
                    answered.push_str(" (status differs)");
                }
                *wrong_answers.entry(h).or_default().entry(format!("{w_reason}->{answered}")).or_default() += 1;
            }
            let family = name.rsplit_once('-').map_or(name.as_str(), |(f, _)| f).to_string();
            let f = families.entry((h, family)).or_default();
            f.0 += usize::from(reason_ok);
            f.1 += 1;
            let e = per_reason.entry(w_reason.to_string()).or_default();
            e.0 += 1;
            e.1 += usize::from(reason_ok);
            if (debug == h || debug == "all") && !(reason_ok && hard_ok) {
                match g {
                    Some(g) => println!(
                        "MISS {name} #{index}: want {w_reason}/{w_status}/{} got {}/{}/{} [{}] {:?}",
                        w["reply_code"].as_str().unwrap_or(""),
                        g.reason,
                        g.status,
                        g.reply_code,
                        g.email,
                        g.diagnostic.chars().take(160).collect::<String>()
                    ),
                    None => println!("MISS {name} #{index}: want {w_reason}, recipient not found (got {})", got.len()),
                }
            }
        }
    }

    println!("per reason (right/expected):");
    for (reason, (n, ok)) in &per_reason {
        println!("  {reason:<16} {ok:>3}/{n:<3} {:>6.1}%", Tally::pct(*ok, *n));
    }
    let mut total = Tally::default();
    for (h, t) in &halves {
        println!("{}", t.line(&format!("half {h}")));
        total.expected += t.expected;
        total.found += t.found;
        total.reason_ok += t.reason_ok;
        total.hard_ok += t.hard_ok;
        total.status_class_ok += t.status_class_ok;
        total.status_compared += t.status_compared;
        total.status_exact_ok += t.status_exact_ok;
        total.status_exact_compared += t.status_exact_compared;
    }
    println!("{}", total.line("total"));
    for (h, answers) in &wrong_answers {
        let list: Vec<String> = answers.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!("half {h} wrong answers (expected->answered): {}", list.join(", "));
    }
    for h in ["A", "B"] {
        let missed: Vec<String> = families
            .iter()
            .filter(|((fh, _), (ok, n))| *fh == h && ok < n)
            .map(|((_, f), (ok, n))| format!("{f} {ok}/{n}"))
            .collect();
        println!("half {h} families with misses (right/recipients): {}", missed.join(", "));
    }
    println!("recipients reported beyond the expected ones: {extra}");

    let reason_pct = Tally::pct(total.reason_ok, total.expected);
    let hard_pct = Tally::pct(total.hard_ok, total.expected);
    assert!(reason_pct >= 95.5, "reason accuracy {reason_pct:.2}% fell below the floor");
    assert!(hard_pct >= 98.0, "hard/soft accuracy {hard_pct:.2}% fell below the floor");
    assert!(total.found * 100 >= total.expected * 97, "recipients found {}/{}", total.found, total.expected);
    let exact_pct = Tally::pct(total.status_exact_ok, total.status_exact_compared);
    assert!(exact_pct >= 98.0, "exact status {exact_pct:.2}% fell below the floor");
    // The targets, on the half the rules were not written from (160 recipients: one
    // recipient is 0.6 points).
    let b = &halves["B"];
    let (b_reason, b_hard) = (Tally::pct(b.reason_ok, b.expected), Tally::pct(b.hard_ok, b.expected));
    assert!(b_reason >= 90.0, "half B reasons {b_reason:.2}% fell below the 90 % target");
    assert!(b_hard >= 98.0, "half B hard/soft {b_hard:.2}% fell below the 98 % target");
}

#[test]
fn every_reason_round_trips() {
    for r in Reason::ALL {
        assert_eq!(Reason::parse(r.as_str()), Some(r));
        assert_eq!(serde_json::to_value(r).unwrap(), serde_json::Value::String(r.as_str().to_string()));
    }
}

#[test]
fn live_replies() {
    assert_eq!(
        classify_reply(550, Some("5.1.1"), "5.1.1 <a@b.example>: Recipient address rejected: User unknown"),
        (Reason::UserUnknown, true)
    );
    assert_eq!(classify_reply(552, Some("5.2.2"), "Mailbox full"), (Reason::MailboxFull, false));
    assert_eq!(
        classify_reply(550, None, "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org").0,
        Reason::Blocked
    );
    assert_eq!(
        classify_reply(554, None, "5.7.26 This mail has been blocked because the sender is unauthenticated. DMARC").0,
        Reason::AuthFailure
    );
    assert_eq!(classify_reply(550, Some("5.1.2"), "Host or domain name not found"), (Reason::HostUnknown, true));
    assert_eq!(classify_reply(521, None, "does not accept mail"), (Reason::NotAccept, true));
    assert_eq!(classify_reply(552, Some("5.3.4"), "Message size exceeds fixed limit"), (Reason::MesgTooBig, false));
    assert!(!classify_reply(550, None, "").1);
}

#[test]
fn live_replies_read_with_the_service_of_the_recipient() {
    // Gmail documents 550 5.7.1 "Missing a valid Message-ID: header" as mail that breaks
    // RFC 5322; read in general words it is only a security refusal.
    let gmail = "Missing a valid Message-ID: header";
    assert_eq!(classify_reply_to("a@gmail.com", 550, Some("5.7.1"), gmail), (Reason::NotCompliantRfc, false));
    assert_eq!(classify_reply(550, Some("5.7.1"), gmail).0, Reason::SecurityError);
    // KDDI's reception filter says "User unknown" without an address.
    assert_eq!(classify_reply_to("a@ezweb.ne.jp", 550, None, ": User unknown"), (Reason::Filtered, false));
    assert_eq!(classify_reply_to("a@example.org", 550, None, ": User unknown"), (Reason::UserUnknown, true));
    // A look-alike domain is not the service.
    assert_eq!(classify_reply_to("a@notgmail.com", 550, Some("5.7.1"), gmail).0, Reason::SecurityError);
    // No recipient, no service: the general reading.
    assert_eq!(classify_reply_to("", 550, Some("5.1.1"), "user unknown"), (Reason::UserUnknown, true));
}

/// Replies the large mailbox providers document for their refusals, and the common ones of
/// Postfix, qmail and Exchange, as a delivery worker receives them at RCPT TO: what each says
/// and whether it is the address's fault (a hard bounce suppresses the address).
#[test]
fn documented_provider_replies() {
    use Reason::*;
    let cases: &[(&str, u16, &str, Reason, bool)] = &[
        (
            "a@gmail.com",
            550,
            "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.",
            UserUnknown,
            true,
        ),
        ("a@gmail.com", 452, "4.2.2 The email account that you tried to reach is over quota.", MailboxFull, false),
        ("a@gmail.com", 552, "5.2.2 The recipient's inbox is out of storage space.", MailboxFull, false),
        ("a@gmail.com", 550, "5.2.1 The email account that you tried to reach is disabled.", Suspend, false),
        (
            "a@gmail.com",
            421,
            "4.7.0 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
            Blocked,
            false,
        ),
        (
            "a@gmail.com",
            550,
            "5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail.",
            SpamDetected,
            false,
        ),
        (
            "a@gmail.com",
            550,
            "5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.",
            AuthFailure,
            false,
        ),
        (
            "a@gmail.com",
            550,
            "5.7.25 [192.0.2.1] The IP address sending this message does not have a PTR record setup.",
            RequirePtr,
            false,
        ),
        ("a@gmail.com", 552, "5.3.4 Your message exceeded Google's message size limits.", MesgTooBig, false),
        (
            "a@gmail.com",
            450,
            "4.2.1 The user you are trying to contact is receiving mail too quickly.",
            Speeding,
            false,
        ),
        (
            "a@gmail.com",
            421,
            "4.7.28 Gmail has detected an unusual rate of mail originating from your DKIM domain.",
            Blocked,
            false,
        ),
        (
            "a@outlook.com",
            550,
            "5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
            UserUnknown,
            true,
        ),
        (
            "a@contoso.example",
            550,
            "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient a@contoso.example not found by SMTP address lookup",
            UserUnknown,
            true,
        ),
        ("a@contoso.example", 550, "5.4.1 Recipient address rejected: Access denied. AS(201806281)", UserUnknown, true),
        (
            "a@contoso.example",
            554,
            "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
            MailboxFull,
            false,
        ),
        ("a@contoso.example", 550, "5.7.606 Access denied, banned sending IP [192.0.2.1].", Blocked, false),
        (
            "a@outlook.com",
            550,
            "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
            Blocked,
            false,
        ),
        (
            "a@contoso.example",
            550,
            "5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.",
            AuthFailure,
            false,
        ),
        ("a@contoso.example", 550, "5.1.8 Access denied, bad outbound sender", Rejected, false),
        (
            "a@yahoo.com",
            554,
            "delivery error: dd This user doesn't have a yahoo.com account (a@yahoo.com) [0]",
            UserUnknown,
            true,
        ),
        (
            "a@yahoo.com",
            553,
            "5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list",
            Blocked,
            false,
        ),
        ("a@yahoo.com", 554, "5.7.9 Message not accepted for policy reasons.", PolicyViolation, false),
        ("a@icloud.com", 550, "5.1.1 <a@icloud.com>: user does not exist", UserUnknown, true),
        ("a@icloud.com", 552, "5.2.2 <a@icloud.com>: user is over quota", MailboxFull, false),
        ("a@icloud.com", 554, "5.7.1 [HM08] Message rejected due to local policy.", PolicyViolation, false),
        (
            "a@example.org",
            550,
            "5.1.1 <a@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
            UserUnknown,
            true,
        ),
        ("a@example.org", 554, "5.7.1 <a@example.org>: Relay access denied", NoRelaying, false),
        (
            "a@example.org",
            450,
            "4.7.1 <a@example.org>: Recipient address rejected: Greylisted, see https://postgrey.example/",
            Blocked,
            false,
        ),
        ("a@example.org", 550, "sorry, no mailbox here by that name. (#5.1.1)", UserUnknown, true),
        (
            "a@example.org",
            554,
            "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            Blocked,
            false,
        ),
        ("a@example.org", 550, "5.2.1 Mailbox disabled, not accepting messages", Suspend, false),
        ("a@example.org", 550, "Mailbox unavailable or access denied - <a@example.org>", Suspend, false),
        ("a@example.org", 550, "5.1.6 Recipient no longer on server", HasMoved, true),
        ("a@example.org", 550, "5.7.1 Sender address rejected: Access denied", Rejected, false),
        (
            "a@example.org",
            550,
            "5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]",
            RequirePtr,
            false,
        ),
        ("a@example.org", 554, "5.7.1 This message has been blocked because it contains a virus", VirusDetected, false),
        ("a@example.org", 552, "5.2.3 Message exceeds maximum size", ExceedLimit, false),
        ("a@example.org", 550, "Unrouteable address", HostUnknown, true),
        ("a@example.org", 556, "5.1.10 Recipient address has null MX", NotAccept, true),
    ];
    for (rcpt, code, text, reason, hard) in cases {
        assert_eq!(classify_reply_to(rcpt, *code, None, text), (*reason, *hard), "{rcpt} {code} {text}");
    }
}

/// Formats of gateways with no mail in the corpus, written from their documented layouts:
/// the recipient is found and the quoted reply read.
#[test]
fn gateways_the_corpus_does_not_have() {
    let one = |raw: &str| {
        let got = classify_mail(raw.as_bytes());
        assert_eq!(got.len(), 1, "{raw}");
        (got[0].email.clone(), got[0].reason, got[0].hard_bounce)
    };
    // QUALITIA Active!hunter: a Sendmail-like "permanent fatal errors" list.
    let activehunter = "From: MAILER-DAEMON@mx.example.jp\nTo: shop@example.com\nSubject: Undelivered Mail\n\
        X-AHMailID: 0123456789abcdef\n\n  ----- The following addresses had permanent fatal errors -----\n\n\
        >>> ann@example.org <ann@example.org>\n\n  ----- Transcript of session follows -----\n\
        550 sorry, no mailbox here by that name (#5.1.1 - chkusr)\n";
    assert_eq!(one(activehunter), ("ann@example.org".into(), Reason::UserUnknown, true));
    // Google Workspace's own notice names no address: the returned message's To: does.
    let workspace = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: shop@example.com\n\
        Subject: Delivery Status Notification (Failure)\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=g\n\n\
        --g\nContent-Type: text/plain\n\n** Message not delivered **\n\nYour message couldn't be delivered because the \
        address couldn't be found. Check for typos or unnecessary spaces and try again.\n\
        --g\nContent-Type: message/rfc822\n\nFrom: shop@example.com\nTo: bob@example.org\nSubject: Order\n\nhi\n--g--\n";
    assert_eq!(one(workspace), ("bob@example.org".into(), Reason::UserUnknown, true));
    // Smail 3 as Deutsche Telekom runs it: banner lines around the failed addresses.
    let smail = "From: Mail Delivery System <Mailer-Daemon@t-online.example>\nTo: shop@example.com\n\
        Subject: mail failed, returning to sender\n\n\
        |------------------------- Failed addresses follow: ---------------------|\n <cy@t-online.example>\n\
           552 5.2.2 <cy@t-online.example> Quota exceeded (mailbox for user is full)\n\n\
        |------------------------- Message text follows: ------------------------|\nTo: cy@t-online.example\n";
    assert_eq!(one(smail), ("cy@t-online.example".into(), Reason::MailboxFull, false));
    // MailFoundry: the remote reply is quoted, but not the command it answered, so a
    // missing-user wording is read as a filter's (as for any reply without its command).
    let mailfoundry = "From: MAILER-DAEMON@mf.example.jp\nTo: shop@example.com\nSubject: Message delivery has failed\n\
        Received: From localhost (127.0.0.1) by mf.example.jp (MAILFOUNDRY) id abc123\n\n\
        Unable to deliver message to: <dee@example.org>\nDelivery failed for the following reason:\n\
        Server mx.example.org[192.0.2.22] failed with: 550 <dee@example.org> No such user here\n\n\
        This has been a permanent failure.  No further delivery attempts will be made.\n";
    assert_eq!(one(mailfoundry), ("dee@example.org".into(), Reason::Filtered, false));
}

#[test]
fn never_panics_on_garbage() {
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"From:".to_vec(),
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\nStatus: 5.\n".to_vec(),
        b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n--x\nContent-Type: message/feedback-report\n\nFeedback-Type:".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, b'@', b'\n', b'\n', 0xc3],
        b"From: MAILER-DAEMON@x.example\nSubject: Undelivered\n\n<\xff@\xfe.example>:\n550 5.".to_vec(),
        b"Subject: failure notice\nFrom: MAILER-DAEMON\n\n@@@@ 5.5.5.5.5 999 550- <a@b.c".to_vec(),
    ];
    let dir = corpus().join("eml");
    let mut names: Vec<_> = std::fs::read_dir(&dir).expect("corpus").flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names.iter().take(40) {
        let raw = std::fs::read(path).expect("read");
        for cut in [1, 7, raw.len() / 3, raw.len() / 2, raw.len().saturating_sub(5)] {
            inputs.push(raw[..cut.min(raw.len())].to_vec());
        }
        let mut flipped = raw.clone();
        for (i, b) in flipped.iter_mut().enumerate() {
            if i % 97 == 0 {
                *b ^= 0xa5;
            }
        }
        inputs.push(flipped);
    }
    for input in inputs {
        let _ = classify_mail(&input);
        // The same bytes as a live reply about an address at a service with rules of its own.
        let text = String::from_utf8_lossy(&input);
        let text: String = text.chars().take(2000).collect();
        let text = text.as_str();
        for rcpt in ["a@gmail.com", "a@ezweb.ne.jp", "", "@", "a@"] {
            let _ = classify_reply_to(rcpt, 550, None, text);
            let _ = classify_reply_to(rcpt, 0, Some(text), text);
        }
    }
}

/// Reason and hard/soft of the one recipient `raw` reports on (`what` names the case).
fn verdict(raw: &[u8], what: &str) -> (Reason, bool) {
    let got = classify_mail(raw);
    assert_eq!(got.len(), 1, "{what}");
    (got[0].reason, got[0].hard_bounce)
}

/// A Postfix-style bounce whose only diagnostic is `diag`.
fn postfix_bounce(diag: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example\nTo: shop@example.com\nSubject: Undelivered Mail Returned to Sender\n\n\
         I'm sorry to have to inform you that your message could not be delivered.\n\n\
         <ann@phone.example>: host mx.phone.example[192.0.2.9] said: {diag}\n"
    )
    .into_bytes()
}

#[test]
fn a_missing_mailbox_is_about_the_address_only_at_rcpt_or_with_a_code_or_lookup_saying_so() {
    let one = |diag: &str| verdict(&postfix_bounce(diag), diag);
    // Answered to RCPT TO, or with x.1.1: the mailbox does not exist.
    assert_eq!(one("550 User unknown (in reply to RCPT TO command)"), (Reason::UserUnknown, true));
    assert_eq!(one("550 5.1.1 User unknown"), (Reason::UserUnknown, true));
    // After the message was sent, or with no command and no code about the address: a
    // filter's answer, not proof the address is bad (carriers and gateways answer so).
    assert_eq!(one("550 User unknown (in reply to end of DATA command)"), (Reason::Filtered, false));
    assert_eq!(one("550 : User unknown"), (Reason::Filtered, false));
    assert_eq!(one("550 5.2.1 No such user"), (Reason::Filtered, false));
    // The same holds for every wording of a missing mailbox …
    assert_eq!(one("550 mailbox not found"), (Reason::Filtered, false));
    assert_eq!(one("550 mailbox not found (in reply to RCPT TO command)"), (Reason::UserUnknown, true));
    // … except words that only a directory lookup of the recipient gives.
    assert_eq!(
        one("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"),
        (Reason::UserUnknown, true)
    );
    // A gateway's "doesn't have a … account" with no command is a filter's answer too, unless
    // the reporting MTA's own category says the mailbox is bad (PowerMTA's bad-mailbox).
    let dd = "554 delivery error: dd This user doesn't have a example.com account";
    assert_eq!(one(dd), (Reason::Filtered, false));
    let categorised = dsn("5.0.0", &format!("smtp; {dd}\nX-PowerMTA-BounceCategory: bad-mailbox"));
    assert_eq!(verdict(&categorised, dd), (Reason::UserUnknown, true));
    // A more specific reason still comes before the category's missing mailbox.
    let full = dsn("5.0.0", "smtp; 552 mailbox full\nX-PowerMTA-BounceCategory: bad-mailbox");
    assert_eq!(verdict(&full, "full"), (Reason::MailboxFull, false));
    // A live reply is the answer to the recipient's RCPT TO.
    assert_eq!(classify_reply(550, None, "mailbox not found"), (Reason::UserUnknown, true));
}

fn dsn(status: &str, diagnostic: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example\nTo: shop@example.com\nSubject: Undelivered Mail Returned to Sender\n\
         MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n\
         --b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n\
         --b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n\
         Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: {status}\nDiagnostic-Code: {diagnostic}\n\n\
         --b--\n"
    )
    .into_bytes()
}

#[test]
fn a_local_delivery_program_that_fails_without_saying_why_is_a_mailer_error() {
    let one = |status: &str, diag: &str| verdict(&dsn(status, diag), diag);
    assert_eq!(one("5.0.0", "X-Unix; 255"), (Reason::MailerError, false));
    assert_eq!(one("5.3.0", "x-postfix; command died with status 1"), (Reason::MailerError, false));
    // Its words, or a specific code, still say more.
    assert_eq!(one("5.0.0", "X-Unix; mailbox full"), (Reason::MailboxFull, false));
    assert_eq!(one("5.1.1", "X-Postfix; unknown user: \"ann\""), (Reason::UserUnknown, true));
    // The same text from a remote server is not a local program's failure.
    assert_ne!(one("5.0.0", "smtp; 255").0, Reason::MailerError);
    // A program that says it failed is the mailer's failure whatever code it exited with
    // (a pipe exiting 67, EX_NOUSER, reads as 5.1.1) …
    assert_eq!(one("5.1.1", "X-Unix; Command died with status 67: \"/usr/bin/deliver\""), (Reason::MailerError, false));
    assert_eq!(one("5.1.1", "x-unix; procmail: Couldn't create \"/var/mail/ann\""), (Reason::MailerError, false));
    // … unless its words name the mailbox's own state.
    assert_eq!(one("5.2.2", "X-Unix; command output: mailbox full"), (Reason::MailboxFull, false));
    // The words of a remote server are not a program's.
    assert_eq!(one("5.1.1", "smtp; 550 command failed: user unknown").0, Reason::UserUnknown);
}

#[test]
fn a_local_delivery_agents_own_words_come_before_the_status_it_exited_with() {
    let one = |status: &str, diag: &str| verdict(&dsn(status, diag), diag);
    // procmail over quota, exited EX_NOUSER (5.1.1): the mailbox exists and is full.
    assert_eq!(
        one("5.1.1", "X-Unix; procmail: Quota exceeded while writing \"/var/mail/ann\""),
        (Reason::MailboxFull, false)
    );
    // Dovecot's LDA, its quota plugin's words.
    assert_eq!(
        one(
            "5.2.0",
            "X-Postfix; Your message to <ann@example.net> was automatically rejected: Quota exceeded (mailbox for user is full)"
        ),
        (Reason::MailboxFull, false)
    );
    assert_eq!(one("5.0.0", "X-Unix; vdelivermail: account is locked email bounced"), (Reason::Suspend, false));
    assert_eq!(one("5.0.0", "X-Unix; maildrop: Invalid user specified."), (Reason::UserUnknown, true));
    // A program named, in other words: it failed, not the address.
    assert_eq!(one("5.1.1", "X-Unix; procmail: Couldn't create \"/var/mail/tmp.ann\""), (Reason::MailerError, false));
    // A Sieve script's rejection through Dovecot is read as any other diagnostic.
    let sieve = one(
        "5.7.1",
        "smtp; 550 5.7.1 Your message to <ann@example.net> was automatically rejected: spam is not welcome",
    );
    assert_eq!(sieve, (Reason::SpamDetected, false));
}

#[test]
fn words_that_name_no_known_cause_are_on_hold_and_no_words_are_undefined() {
    let one = |status: &str, diag: &str| verdict(&dsn(status, diag), diag);
    // A diagnosis was given, but it names no cause and the code names none either.
    assert_eq!(one("5.0.0", "smtp; 550 Requested action aborted"), (Reason::OnHold, false));
    assert_eq!(one("4.0.0", "smtp; 451 Temporary failure, please try again later"), (Reason::OnHold, false));
    // "Temporary failure" is not on its own a system error; a code that names one is.
    assert_eq!(one("4.3.5", "smtp; 451 Temporary failure"), (Reason::SystemError, false));
    assert_eq!(one("5.0.0", "smtp; 554 Internal server error"), (Reason::SystemError, false));
    // A live reply is read the same way; with no words at all it is undefined.
    assert_eq!(classify_reply(550, None, "Requested action aborted"), (Reason::OnHold, false));
    assert_eq!(classify_reply(500, None, ""), (Reason::Undefined, false));
    // A delayed report whose words name no cause is about the time spent in the queue.
    let delayed = String::from_utf8(dsn("4.0.0", "smtp; 451 Requested action aborted")).unwrap();
    let delayed = delayed.replace("Action: failed", "Action: delayed");
    assert_eq!(verdict(delayed.as_bytes(), "delayed"), (Reason::Expired, false));
}

#[test]
fn ordinary_mail_is_not_a_bounce() {
    let raw = b"From: Jane <jane@example.com>\nTo: joe@example.org\nSubject: Lunch?\n\nAre you free at noon?\n";
    assert!(classify_mail(raw).is_empty());
}

#[test]
fn the_quoted_remote_reply_is_read_not_the_framing_around_it() {
    let raw = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: shop@example.com\n\
               Subject: Delivery Status Notification (Failure)\n\n\
               Delivery to the following recipient failed permanently:\n\n     ann@example.net\n\n\
               Technical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected \
               by the recipient domain. We recommend contacting the other email provider for further information \
               about the cause of this error. The error that the other server returned was: 500 Remote server does \
               not support TLS (state 6).\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].email, "ann@example.net");
    assert_eq!(got[0].reason, Reason::FailedStartTls, "{:?}", got[0].diagnostic);
    assert!(!got[0].hard_bounce);
}

#[test]
fn an_ses_notification_mailed_by_sns_is_read_per_recipient() {
    let notification = serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [
            {"emailAddress": "ann@example.net", "action": "failed", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown"},
            {"emailAddress": "bob@example.net", "action": "failed", "status": "5.2.2",
             "diagnosticCode": "smtp; 552 5.2.2 Mailbox full"}]},
        "mail": {"destination": ["ann@example.net", "bob@example.net"]}
    });
    let envelope = serde_json::json!({"Type": "Notification", "Message": notification.to_string()});
    let raw = format!(
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\nTo: ops@example.com\nSubject: AWS Notification Message\n\n\
         {envelope}\n\n--\nIf you wish to stop receiving notifications from this topic, please click the link below.\n"
    );
    let got = classify_mail(raw.as_bytes());
    let seen: Vec<_> = got.iter().map(|r| (r.email.as_str(), r.status.as_str(), r.reason, r.hard_bounce)).collect();
    assert_eq!(
        seen,
        [
            ("ann@example.net", "5.1.1", Reason::UserUnknown, true),
            ("bob@example.net", "5.2.2", Reason::MailboxFull, false)
        ]
    );
    // A complaint mailed the same way is feedback, with its type.
    let complaint = serde_json::json!({"notificationType": "Complaint", "complaint": {
        "complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": "cy@example.net"}]}, "mail": {}});
    let raw = format!("From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\n\n{complaint}\n");
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].reason, got[0].feedback_type.as_str()), (Reason::Feedback, "abuse"));
}

#[test]
fn complaints_without_a_feedback_report_part() {
    let one = |raw: &str| {
        let got = classify_mail(raw.as_bytes());
        assert_eq!(got.len(), 1, "{raw}");
        (got[0].email.clone(), got[0].reason, got[0].feedback_type.clone(), got[0].hard_bounce)
    };
    // Apple Mail's unsubscribe: the subscriber's own mail to a mailto: List-Unsubscribe
    // address. Without the header the same mail is nobody's bounce.
    let apple = "From: Ann <ann@example.net>\nTo: unsubscribe@shop.example\nSubject: unsubscribe\n\
                 X-Apple-Unsubscribe: true\nContent-Type: text/plain\n\nThis message was automatically generated by Mail.\n";
    assert_eq!(one(apple), ("ann@example.net".into(), Reason::Feedback, "opt-out".into(), false));
    assert!(classify_mail(apple.replace("X-Apple-Unsubscribe: true", "X-Mailer: Mail").as_bytes()).is_empty());
    assert!(classify_mail(apple.replace(": true", ": false").as_bytes()).is_empty());
    // Declared a feedback report, but the report part is labelled text/plain: the original
    // message's recipient is the one complained about.
    let declared = "From: fbl@isp.example\nTo: abuse@shop.example\nSubject: Abuse Report\nMIME-Version: 1.0\n\
                    Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n\n--b\n\
                    Content-Type: text/plain\n\nThis is an email abuse report for an email message received from IP 192.0.2.1\n\
                    --b\nContent-Type: text/plain\n\nFeedback-Type: abuse\nUser-Agent: Fbl/1.0\nVersion: 1\n\
                    --b\nContent-Type: message/rfc822\n\nFrom: news@shop.example\nTo: cy@example.net\nSubject: Deals\n\nhi\n--b--\n";
    assert_eq!(one(declared), ("cy@example.net".into(), Reason::Feedback, String::new(), false));
    // Outlook.com's older JMRP complaint: multipart/mixed with the complained-of mail attached.
    let jmrp = "From: staff@hotmail.com\nTo: fbl@shop.example\nSubject: complaint about message from 192.0.2.1\n\
                MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"j\"\n\n--j\nContent-Type: text/plain\n\n\
                This is a complaint from a Hotmail user.\n--j\nContent-Type: message/rfc822\n\n\
                From: news@shop.example\nTo: dee@hotmail.com\nSubject: Deals\n\nhi\n--j--\n";
    assert_eq!(one(jmrp), ("dee@hotmail.com".into(), Reason::Feedback, "abuse".into(), false));
    // The same subject from anyone else is not taken for a complaint.
    let other = jmrp.replace("From: staff@hotmail.com", "From: someone@example.org");
    assert!(classify_mail(other.as_bytes()).iter().all(|r| r.reason != Reason::Feedback));
}

/// An Exim bounce with `lines` under the failed address.
fn exim_bounce(lines: &str) -> Vec<u8> {
    format!(
        "From: Mail Delivery System <Mailer-Daemon@mx.example>\nTo: shop@example.com\n\
         Subject: Mail delivery failed: returning message to sender\nMessage-Id: <E1P1YNN-0003AD-Ga@mx.example>\n\n\
         This message was created automatically by mail delivery software.\n\n\
         A message that you sent could not be delivered to one or more of its\n\
         recipients. This is a permanent error. The following address(es) failed:\n\n  ann@example.net\n{lines}\n\n\
         ------ This is a copy of the message, including all the headers. ------\n\nTo: ann@example.net\n"
    )
    .into_bytes()
}

#[test]
fn exims_own_wording_names_the_reason() {
    let one = |lines: &str| {
        let got = classify_mail(&exim_bounce(lines));
        assert_eq!(got.len(), 1, "{lines}");
        assert_eq!(got[0].email, "ann@example.net");
        (got[0].reason, got[0].hard_bounce)
    };
    // Exim routed the domain nowhere: the domain, not the mailbox.
    assert_eq!(one("    Unrouteable address"), (Reason::HostUnknown, true));
    assert_eq!(one("    all relevant MX records point to non-existent hosts"), (Reason::HostUnknown, true));
    assert_eq!(one("    retry timeout exceeded"), (Reason::Expired, false));
    // A mail loop Exim counted in the headers is the message's content.
    assert_eq!(one("    Too many \"Received\" headers - suspected mail loop"), (Reason::ContentError, false));
    // A refusal at MAIL FROM whose reply says nothing more is on hold, not the recipient's fault.
    assert_eq!(
        one("    SMTP error from remote mail server after MAIL FROM:<shop@example.com> SIZE=1234:\n    550 Go away"),
        (Reason::OnHold, false)
    );
    // The remote reply still decides where it is specific.
    assert_eq!(
        one("    SMTP error from remote mail server after RCPT TO:<ann@example.net>:\n    550 5.1.1 User unknown"),
        (Reason::UserUnknown, true)
    );
}

#[test]
fn other_mtas_own_words_and_categories() {
    // PowerMTA classifies the failure itself in the DSN.
    let raw = "From: MAILER-DAEMON@pmta.example\nTo: shop@example.com\nSubject: Delivery report\n\
               Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\
               Content-Type: text/plain\n\nThe message could not be delivered.\n--b\n\
               Content-Type: message/delivery-status\n\nReporting-MTA: dns; pmta.example\n\n\
               Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.0.0\n\
               Diagnostic-Code: smtp; 550 rejected\nX-PowerMTA-BounceCategory: quota-issues\n--b--\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].reason, got[0].hard_bounce), (Reason::MailboxFull, false));

    // Gmail's relay state names the command: state 14 is RCPT TO.
    let raw = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: shop@example.com\n\
               Subject: Delivery Status Notification (Failure)\n\n\
               Delivery to the following recipient failed permanently:\n\n     bob@example.net\n\n\
               Technical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected \
               by the server for the recipient domain example.net by mx.example.net. [192.0.2.1].\n\n\
               The error that the other server returned was:\n550 sorry, no mailbox here by that name (state 14).\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].email.as_str(), got[0].reason, got[0].hard_bounce),
        ("bob@example.net", Reason::UserUnknown, true)
    );

    // qmail that could not connect and gave up: the network, not the queue time.
    let raw = "From: MAILER-DAEMON@qmail.example\nTo: shop@example.com\nSubject: failure notice\n\n\
               Hi. This is the qmail-send program at qmail.example.\n\
               I'm afraid I wasn't able to deliver your message to the following addresses.\n\n\
               <cy@example.net>:\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\
               I'm not going to try again; this message has been in the queue too long.\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reason, Reason::NetworkError);

    // Exchange's categorised code decides over the generic words.
    let raw = "From: postmaster@outlook.example\nTo: shop@example.com\nSubject: Undeliverable: Hello\n\n\
               Delivery has failed to these recipients or groups:\n\ndee@example.net\n\n\
               Diagnostic information for administrators:\nRemote Server returned '550 5.7.1 \
               RESOLVER.RST.NotAuthorized; not authorized'\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].email.as_str(), got[0].reason), ("dee@example.net", Reason::Rejected));
}

#[test]
fn services_known_by_the_host_that_answered() {
    // MessageLabs' own wording, recognised because the reply came from its host although the
    // reply itself does not name it.
    let raw = "From: MAILER-DAEMON@mx.example.com\nTo: shop@example.com\nSubject: Undelivered Mail Returned to Sender\n\
               Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\
               Content-Type: text/plain\n\n<ann@example.net>: host cluster9.eu.messagelabs.com[192.0.2.9] said:\n\
               553 Sorry, your domain has been blocked (in reply to MAIL FROM command)\n--b\n\
               Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n\
               Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.0.0\n\
               Remote-MTA: dns; cluster9.eu.messagelabs.com\n\
               Diagnostic-Code: smtp; 553 Sorry, your domain has been blocked\n--b--\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].reason, got[0].hard_bounce), (Reason::Rejected, false));

    // NTT DOCOMO's one wording for a missing mailbox and its filter: refused after DATA, the
    // message was filtered, not the address wrong.
    let docomo = |status: &str, command: &str| {
        let raw = format!(
            "From: MAILER-DAEMON@mx.example.com\nTo: shop@example.com\nSubject: Undelivered Mail Returned to Sender\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\
             Content-Type: text/plain\n\n<ann@docomo.ne.jp>: host mfsmax.docomo.ne.jp[192.0.2.7] said:\n\
             550 Unknown user ann@docomo.ne.jp (in reply to {command} command)\n--b\n\
             Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n\
             Final-Recipient: rfc822; ann@docomo.ne.jp\nAction: failed\nStatus: {status}\n\
             Diagnostic-Code: smtp; 550 Unknown user ann@docomo.ne.jp\n--b--\n"
        );
        let got = classify_mail(raw.as_bytes());
        assert_eq!(got.len(), 1);
        (got[0].reason, got[0].hard_bounce)
    };
    assert_eq!(docomo("5.2.0", "end of DATA"), (Reason::Filtered, false));
    assert_eq!(docomo("5.1.1", "RCPT TO"), (Reason::UserUnknown, true));
}

#[test]
fn delivery_status_written_in_the_text_and_bounces_forwarded_as_attachments() {
    // The delivery-status fields in the text part itself.
    let raw = "From: MAILER-DAEMON@mx.example.com\nTo: shop@example.com\nSubject: Returned mail\n\n\
               Your message could not be delivered.\n\nReporting-MTA: dns; mx.example.com\n\n\
               Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.2.2\n\
               Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].email.as_str(), got[0].reason), ("ann@example.net", Reason::MailboxFull));

    // A gateway that forwards the bounce it got, with a text naming no address.
    let inner = "From: MAILER-DAEMON@mx.example.com\nTo: shop@example.com\nSubject: Undelivered Mail\n\
                 Content-Type: multipart/report; report-type=delivery-status; boundary=i\n\n--i\n\
                 Content-Type: text/plain\n\nThe mail could not be delivered.\n--i\n\
                 Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n\
                 Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n\
                 Diagnostic-Code: smtp; 550 5.1.1 No such user\n--i--\n";
    let raw = format!(
        "From: postmaster@gateway.example\nTo: shop@example.com\nSubject: Delivery failure\n\
         Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: text/plain\n\n\
         A message from this gateway was returned. The returned message is attached.\n--o\n\
         Content-Type: message/rfc822\n\n{inner}\n--o--\n"
    );
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].email.as_str(), got[0].reason, got[0].hard_bounce),
        ("bob@example.net", Reason::UserUnknown, true)
    );
}

#[test]
fn sendmail_transcripts_name_the_command_and_the_reply() {
    let bounce = |transcript: &str, diag: &str| {
        let raw = format!(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>\nTo: shop@example.com\n\
             Subject: Returned mail: see transcript for details\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\
             Content-Type: text/plain\n\nThe original message was received at Mon, 1 Jan 2024 from localhost\n\n\
             \x20  ----- The following addresses had permanent fatal errors -----\n<ann@example.net>\n\n\
             \x20  ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n\
             {transcript}\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n\
             Final-Recipient: RFC822; ann@example.net\nAction: failed\nStatus: 5.0.0\n\
             Diagnostic-Code: SMTP; {diag}\n--b--\n"
        );
        let got = classify_mail(raw.as_bytes());
        assert_eq!(got.len(), 1, "{transcript}");
        (got[0].reason, got[0].hard_bounce)
    };
    // A missing-mailbox wording in reply to DATA: the recipient had been accepted, a filter
    // refused the message.
    assert_eq!(bounce(">>> DATA\n<<< 550 Unknown user ann@example.net", "550 Unknown user"), (Reason::Filtered, false));
    assert_eq!(
        bounce(">>> RCPT To:<ann@example.net>\n<<< 550 Unknown user", "550 Unknown user"),
        (Reason::UserUnknown, true)
    );
    // The server's own reply in the transcript says more than Sendmail's summary of it.
    assert_eq!(
        bounce(">>> DATA\n<<< 552 5.2.2 Mailbox full\n554 5.0.0 Service unavailable", "554 5.0.0 Service unavailable"),
        (Reason::MailboxFull, false)
    );
}

#[test]
fn more_mtas_own_words() {
    // Amazon SES's summary status gives way to the one of the reply it quotes.
    let raw = "From: MAILER-DAEMON@amazonses.com\nTo: shop@example.com\nSubject: Delivery Status Notification (Failure)\n\
               X-SES-Outgoing: 2024.01.01-192.0.2.1\n\
               Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\n\
               Content-Type: text/plain\n\nThis message could not be delivered.\n--b\n\
               Content-Type: message/delivery-status\n\nReporting-MTA: dns; a1-2.smtp-out.amazonses.com\n\n\
               Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.1.0\n\
               Diagnostic-Code: smtp; 550 5.1.0 - Unknown address error 552-'5.2.2 Over quota'\n--b--\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].status.as_str(), got[0].reason, got[0].hard_bounce), ("5.2.2", Reason::MailboxFull, false));

    // fml names the refusal in its notice's subject.
    let raw = "From: list-admin@ml.example.org\nTo: shop@example.com\nSubject: NOT MEMBER article from shop@example.com\n\
               X-MLServer: fml [fml 4.0]\nMessage-Id: <202401010000.FMLAAA1234.list@ml.example.org>\n\n\
               Your article to <list@ml.example.org> was not distributed.\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].reason, Reason::Rejected);

    // Verizon's gateway names the recipient only in its message details; its MIME here is broken
    // (the boundary parameter on an unfolded line), so the body is read as written.
    let raw = "From: post_master@vtext.com\nTo: shop@example.com\nSubject: Re: hello\n\
               Content-Type: multipart/mixed; boundary=\"o\"\n\n--o\n\
               Content-Type: multipart/alternative;\nboundary=\"i\"\n\n--i\nContent-Type: text/plain\n\n\
               Error: Invalid user address\n\nError message below:\n\
               550 - Requested action not taken: no such user here\n\nMessage details:\n  Subject: hello\n\
               \x20 MAIL FROM: shop@example.com\n  RCPT TO: 5555550100@vtext.com\n--i--\n--o--\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].email.as_str(), got[0].reason, got[0].hard_bounce),
        ("5555550100@vtext.com", Reason::UserUnknown, true)
    );

    // Exchange 2003's MSEXCH code names the reason.
    let raw = "From: postmaster@corp.example\nTo: shop@example.com\nSubject: Undeliverable: hello\n\
               X-MS-Embedded-Report: \n\n\
               Your message\n\n  To:      bob@corp.example\n  Subject: hello\n  Sent:    Mon, 1 Jan 2024\n\n\
               did not reach the following recipient(s):\n\n\
               bob@corp.example on Mon, 1 Jan 2024\n    The recipient name is not recognized\n\
               \tThe MTS-ID of the original message is: c=US\n    MSEXCH:IMS:Corp:Site:MAIL01 0 (000C05A6) Unknown Recipient\n";
    let got = classify_mail(raw.as_bytes());
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].email.as_str(), got[0].reason), ("bob@corp.example", Reason::UserUnknown));
}
