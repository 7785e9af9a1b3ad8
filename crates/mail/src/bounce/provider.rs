//! Large mailbox providers put their own error codes in their replies (Cox's `AUP#CXBL`,
//! GoDaddy's `IB401`, Orange's `OFR_506`, Facebook's `RCP-P1`, …) and document what each
//! means. Where a reply carries one, it says more than the wording or the RFC 3463 code
//! around it, so it is read first.
//!
//! Each table below is written from the provider's published meaning of its codes: a code
//! (or code range) and the reason it stands for.

use super::reason::Reason;
use super::reason::Reason::*;

/// The reason a provider's own code or fixed wording in `text` (lower case, white space
/// collapsed) names, if any.
pub(crate) fn provider_reason(text: &str) -> Option<Reason> {
    cox(text)
        .or_else(|| spectrum(text))
        .or_else(|| godaddy(text))
        .or_else(|| orange_code(text))
        .or_else(|| iua(text))
        .or_else(|| facebook(text))
        .or_else(|| mimecast(text))
        .or_else(|| messagelabs(text))
}

/// The digits right after `marker` (at most `max` of them).
fn number_after(text: &str, marker: &str, max: usize) -> Option<u32> {
    let mut from = 0;
    while let Some(i) = text[from..].find(marker) {
        let rest = &text[from + i + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).take(max + 1).collect();
        if !digits.is_empty() && digits.len() <= max {
            return digits.parse().ok();
        }
        from += i + marker.len();
    }
    None
}

/// Cox Communications: `AUP#` followed by a code.
fn cox(t: &str) -> Option<Reason> {
    let i = t.find("aup#")?;
    let code = &t[i + 4..];
    let table: &[(&str, Reason)] = &[
        ("cxbl", Blocked),
        ("cdrbl", Blocked),
        ("ipbl", Blocked),
        ("cxdns", RequirePtr),
        ("cxsndr", AuthFailure),
        ("cxsmtp", Rejected),
        ("cxcnct", TooManyConn),
        ("cxmxrt", TooManyConn),
        ("cxthrt", SecurityError),
        ("cxmj", SecurityError),
        ("urlbl", SpamDetected),
    ];
    table.iter().find(|(c, _)| code.starts_with(c)).map(|(_, r)| *r)
}

/// Charter / Spectrum: `AUP#` followed by four digits, in newer replies after letters
/// that say the direction (`AUP#I1000` inbound, `AUP#O1010`, `AUP#O-1010` outbound).
fn spectrum(t: &str) -> Option<Reason> {
    let code = t.match_indices("aup#").find_map(|(i, m)| {
        let rest = t[i + m.len()..].trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '-');
        let digits: String = rest.chars().take_while(char::is_ascii_digit).take(5).collect();
        if digits.len() == 4 { digits.parse::<u32>().ok() } else { None }
    })?;
    Some(match code {
        1000 | 1200..=1250 => Blocked,
        1010..=1080 | 1500 | 1520 => Rejected,
        1090 => SystemError,
        1100..=1150 => RequirePtr,
        1160..=1190 | 1560 => PolicyViolation,
        1260 => NetworkError,
        1300..=1340 => TooManyConn,
        1350..=1490 | 1540 | 1550 | 1580 => Speeding,
        1530 => MesgTooBig,
        _ => return None,
    })
}

/// GoDaddy (secureserver.net): `IB` and three digits.
fn godaddy(t: &str) -> Option<Reason> {
    let code = [" ib", "(ib", ":ib", "#ib"].iter().find_map(|m| number_after(t, m, 3))?;
    Some(match code {
        401 => SecurityError,
        501 | 502 => NotCompliantRfc,
        506 => Rejected,
        508 => AuthFailure,
        108 => RequirePtr,
        212 => SpamDetected,
        705 => VirusDetected,
        7 | 605 => TooManyConn,
        101 | 504 | 510 | 607 => Speeding,
        104..=106 | 110..=113 => Blocked,
        103 => BadReputation,
        _ => return None,
    })
}

/// Orange, Wanadoo and La Poste: `OFR_…`, `OUK_…`, `LPN…_` followed by a three-digit
/// reason number.
pub(crate) fn orange_code(t: &str) -> Option<Reason> {
    let mut code = None;
    for label in ["lpnaaa_", "lpn", "ofr_", "ofr", "ouk_", "ouk"] {
        let Some(i) = t.find(label) else { continue };
        let rest = &t[i + label.len()..];
        // `LPN007_416`: the reason is the number after the underscore.
        let tail = rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start_matches('_');
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        let digits = if digits.len() == 3 { digits } else { rest.chars().take_while(char::is_ascii_digit).collect() };
        if digits.len() == 3 {
            code = digits.parse::<u32>().ok();
            break;
        }
    }
    Some(match code? {
        101..=103 | 510 | 999 => Blocked,
        104 => TooManyConn,
        305 | 402 => SecurityError,
        401 | 517 => AuthFailure,
        403 | 405 | 415 | 421 => Rejected,
        416 => UserUnknown,
        417 => MailboxFull,
        420 | 426 => Suspend,
        505 => SystemError,
        506 => SpamDetected,
        514 => MesgTooBig,
        630 => PolicyViolation,
        _ => return None,
    })
}

/// I.UA (Ukraine): a link `…i.ua/err/N/` naming the error.
fn iua(t: &str) -> Option<Reason> {
    let code = number_after(t, ".i.ua/err/", 2)?;
    Some(match code {
        1 | 6 => NoRelaying,
        2 => UserUnknown,
        3 => Suspend,
        4 => MailboxFull,
        5 => TooManyConn,
        7 | 9 => Blocked,
        8 => Rejected,
        10 => Filtered,
        _ => return None,
    })
}

/// Facebook: `XXX-YN` codes (`RCP-P1`, `POL-T2`, …), in a reply that names it.
fn facebook(t: &str) -> Option<Reason> {
    if !t.contains("facebook") {
        return None;
    }
    facebook_code(t)
}

/// Facebook's codes, for a reply known to come from it (a `facebook.com` host).
pub(crate) fn facebook_code(t: &str) -> Option<Reason> {
    let table: &[(&[&str], Reason)] = &[
        (&["rcp-p1", "int-p1", "int-p3", "int-p4"], UserUnknown),
        (&["rcp-p2", "rcp-p3"], Filtered),
        (&["rcp-t4"], Suspend),
        (&["rcp-t1"], SystemError),
        (&["pol-p1", "pol-p2", "pol-p3", "pol-p4", "pol-t1", "pol-t2", "pol-t3"], Blocked),
        (&["pol-p5"], VirusDetected),
        (&["pol-p6"], SpamDetected),
        (&["pol-p7"], AuthFailure),
        (&["msg-p1", "int-p2"], MesgTooBig),
        (&["msg-p2"], ContentError),
        (&["msg-p3"], NotCompliantRfc),
        (&["dns-p1", "dns-p2", "dns-t1"], Rejected),
        (&["dns-p3", "dns-t2"], RequirePtr),
        (&["con-t1", "con-t2", "con-t3", "con-t4", "msg-t1"], TooManyConn),
    ];
    let code_at = |c: &str| {
        t.match_indices(c).any(|(i, _)| {
            let before = t[..i].chars().next_back();
            let after = t[i + c.len()..].chars().next();
            before.is_none_or(|b| !b.is_ascii_alphanumeric()) && after.is_none_or(|a| !a.is_ascii_alphanumeric())
        })
    };
    table.iter().find(|(codes, _)| codes.iter().any(|c| code_at(c))).map(|(_, r)| *r)
}

/// Mimecast's fixed rejection texts.
fn mimecast(t: &str) -> Option<Reason> {
    let table: &[(&str, Reason)] = &[
        ("email rejected due to security policies", VirusDetected),
        ("spf sender invalid", AuthFailure),
        ("dkim sender invalid", AuthFailure),
        ("dmarc sender invalid", AuthFailure),
        ("local ct ip reputation", BadReputation),
        // "user entry" and "user domain entry", with a hyphen or an en dash.
        ("envelope blocked - user", Rejected),
        ("envelope blocked \u{2013} user", Rejected),
        ("administrative prohibition envelope blocked", Rejected),
        ("host network not allowed", PolicyViolation),
        ("maximum email size exceeded", MesgTooBig),
        ("route requires encryption", FailedStartTls),
    ];
    table.iter().find(|(p, _)| t.contains(p)).map(|(_, r)| *r)
}

/// Symantec MessageLabs (Email Security.cloud), where the reply names it.
fn messagelabs(t: &str) -> Option<Reason> {
    if !t.contains("messagelabs") {
        return None;
    }
    messagelabs_table(t)
}

/// MessageLabs' fixed wordings, for a reply known to come from it.
pub(crate) fn messagelabs_table(t: &str) -> Option<Reason> {
    const TABLE: &[(&str, Reason)] = &[
        ("please turn on smtp authentication", SecurityError),
        ("domain authentication fail", AuthFailure),
        ("connection rejected by policy", BadReputation),
        ("your ip is in the pbl", Blocked),
        ("your envelope sender is in my badmailfrom list", Rejected),
        ("sender envelope domain not allowed for sender ip address", Rejected),
        ("your domain has been blocked", Rejected),
        ("your domain has been blacklisted", Rejected),
        ("your email address has been blocked", Rejected),
        ("your email address has been blacklisted", Rejected),
        ("your ip address", Blocked),
        ("stray linefeeds in message", ContentError),
        ("tls/sslv3 connection required", FailedStartTls),
        (" as a relay", NoRelaying),
        ("is not rfc 5322", NotCompliantRfc),
        ("550 requested action aborted [4]", NotCompliantRfc),
        ("message filtered", SpamDetected),
        ("filtered by outbound scanning", SpamDetected),
        ("too many recipients received this hour", TooManyConn),
        ("too many messages", TooManyConn),
        ("no such user", UserUnknown),
        ("invalid recipient", UserUnknown),
        ("mailbox is not allowed", UserUnknown),
        ("542 ", UserUnknown),
    ];
    TABLE.iter().find(|(p, _)| t.contains(p)).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_codes() {
        assert_eq!(provider_reason("554 aup#cxbl 192.0.2.1 is on a blocklist"), Some(Blocked));
        assert_eq!(provider_reason("550 5.7.1 aup#cxsndr sender failed spf"), Some(AuthFailure));
        assert_eq!(provider_reason("554 5.7.1 aup#1270 : too many connections"), None);
        assert_eq!(provider_reason("421 4.7.0 aup#1310 too many connections from your ip"), Some(TooManyConn));
        assert_eq!(provider_reason("550 aup#1530 message too big"), Some(MesgTooBig));
        assert_eq!(provider_reason("554 5.7.1 aup#i1000 ip blocked"), Some(Blocked));
        assert_eq!(provider_reason("554 5.7.1 aup#o-1010 sender rejected"), Some(Rejected));
        assert_eq!(provider_reason("554 5.7.1 aup#in1350 too many messages"), Some(Speeding));
        assert_eq!(
            provider_reason("553 your envelope sender is in my badmailfrom list. cluster1.eu.messagelabs.com"),
            Some(Rejected)
        );
        assert_eq!(provider_reason("554 192.0.2.1 rejected. ib401 authentication required"), Some(SecurityError));
        assert_eq!(
            provider_reason("550 5.5.0 adresse destinataire invalide. invalid recipient. lpn007_416"),
            Some(UserUnknown)
        );
        assert_eq!(provider_reason("550 5.7.1 service refused, please try later. ofr_506 [506]"), Some(SpamDetected));
        assert_eq!(provider_reason("550 mailbox full. ouk_417"), Some(MailboxFull));
        assert_eq!(provider_reason("550 spam message discarded. http://mail.i.ua/err/9/"), Some(Blocked));
        assert_eq!(
            provider_reason("550 5.1.1 rcp-p1 http://www.facebook.com/postmaster/response_codes"),
            Some(UserUnknown)
        );
        assert_eq!(
            provider_reason("554 email rejected due to security policies - mcspamsignature"),
            Some(VirusDetected)
        );
        // Look-alikes are not codes.
        assert_eq!(provider_reason("550 user unknown (ib4012345 queue id)"), None);
        assert_eq!(provider_reason("550 pol-p1 without the provider"), None);
        assert_eq!(provider_reason("550 5.1.1 user unknown"), None);
    }
}
