//! Calendar invitations (RFC 5545 iCalendar, RFC 5546 iTIP): the
//! `text/calendar` part that makes mail clients show "Add to calendar /
//! Accept / Decline", and the same data as an `.ics` attachment.
//!
//! Times are written in UTC (`DTSTART:20270120T140000Z`): the instant is
//! exact whatever the attendee's zone, and clients show it in their own.
//! A local time with a zone name is converted with the IANA database
//! bundled in `jiff`, so daylight saving is applied as it will be on that
//! date.

use std::fmt::Write as _;

/// `REQUEST` invites or updates (same UID, higher SEQUENCE); `CANCEL`
/// withdraws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Request,
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub name: Option<String>,
}

/// One event, validated; times in Unix seconds (UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub method: Method,
    pub uid: String,
    pub sequence: u32,
    pub start: i64,
    pub end: i64,
    pub summary: String,
    pub description: Option<String>,
    pub location: Option<String>,
    /// A join link (video call) or a page about the event.
    pub url: Option<String>,
    pub organizer: Person,
    pub attendees: Vec<Person>,
    /// DTSTAMP: when this invitation was made.
    pub stamp: i64,
}

/// Reads a start or end time: RFC 3339 with an offset
/// (`2027-01-20T15:00:00+01:00`), or a local time (`2027-01-20T15:00`)
/// with an IANA zone (`Europe/Berlin`).
pub fn parse_time(value: &str, zone: Option<&str>) -> Result<i64, String> {
    if let Ok(ts) = value.parse::<jiff::Timestamp>() {
        return Ok(ts.as_second());
    }
    let zone = zone.ok_or_else(|| {
        format!(
            "`{value}` has no offset: write it as 2027-01-20T15:00:00+01:00, or give `timezone` (e.g. Europe/Berlin)"
        )
    })?;
    let tz = jiff::tz::TimeZone::get(zone)
        .map_err(|_| format!("unknown time zone `{zone}`; use an IANA name such as Europe/Berlin"))?;
    let civil: jiff::civil::DateTime =
        value.parse().map_err(|_| format!("`{value}` is not a date and time such as 2027-01-20T15:00"))?;
    let zoned = civil.to_zoned(tz).map_err(|e| format!("`{value}` in {zone}: {e}"))?;
    Ok(zoned.timestamp().as_second())
}

fn utc(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "19700101T000000Z".into())
}

/// TEXT value escaping (RFC 5545 §3.3.11).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (CN=…): quoted, without the characters it cannot hold.
fn param(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control() && *c != '"').collect();
    format!("\"{clean}\"")
}

/// Folds a content line at 75 octets (RFC 5545 §3.1), never inside a
/// UTF-8 sequence, and ends it with CRLF.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    // Control characters never reach the output: a value cannot start a
    // line of its own (TEXT values are escaped before; this is the backstop).
    for c in content.chars().filter(|c| !c.is_control()) {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

/// A URI value: no spaces or control characters (RFC 3986).
pub fn is_uri(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<' || c == '>')
}

fn person(prop: &str, p: &Person, extra: &str) -> String {
    let mut s = String::from(prop);
    if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(s, ";CN={}", param(n));
    }
    let _ = write!(s, "{extra}:mailto:{}", p.email);
    s
}

/// The iCalendar object, CRLF line endings.
pub fn ics(e: &Event) -> String {
    let mut out = String::new();
    for l in ["BEGIN:VCALENDAR", "PRODID:-//Epistle//Epistle//EN", "VERSION:2.0", "CALSCALE:GREGORIAN"] {
        line(&mut out, l);
    }
    line(&mut out, &format!("METHOD:{}", e.method.as_str()));
    line(&mut out, "BEGIN:VEVENT");
    line(&mut out, &format!("UID:{}", text(&e.uid)));
    line(&mut out, &format!("SEQUENCE:{}", e.sequence));
    line(&mut out, &format!("DTSTAMP:{}", utc(e.stamp)));
    line(&mut out, &format!("DTSTART:{}", utc(e.start)));
    line(&mut out, &format!("DTEND:{}", utc(e.end)));
    line(&mut out, &format!("SUMMARY:{}", text(&e.summary)));
    if let Some(d) = &e.description {
        line(&mut out, &format!("DESCRIPTION:{}", text(d)));
    }
    if let Some(l) = &e.location {
        line(&mut out, &format!("LOCATION:{}", text(l)));
    }
    if let Some(u) = e.url.as_deref().filter(|u| is_uri(u)) {
        line(&mut out, &format!("URL:{u}"));
    }
    line(&mut out, &person("ORGANIZER", &e.organizer, ""));
    for a in &e.attendees {
        line(&mut out, &person("ATTENDEE", a, ";ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE"));
    }
    let status = if e.method == Method::Cancel { "CANCELLED" } else { "CONFIRMED" };
    line(&mut out, &format!("STATUS:{status}"));
    line(&mut out, "TRANSP:OPAQUE");
    line(&mut out, "END:VEVENT");
    line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            method: Method::Request,
            uid: "appt-42@shop.example".into(),
            sequence: 1,
            start: parse_time("2027-07-20T15:00", Some("Europe/Berlin")).unwrap(),
            end: parse_time("2027-07-20T15:30:00+02:00", None).unwrap(),
            summary: "Fitting; bring shoes, please".into(),
            description: Some("Line one\nLine two with a very long sentence that goes past the seventy-five octet limit of one content line".into()),
            location: Some("Shop, 1 Market St".into()),
            url: Some("https://meet.example/abc".into()),
            organizer: Person { email: "team@shop.example".into(), name: Some("Shop \"Team\"".into()) },
            attendees: vec![Person { email: "jane@example.com".into(), name: Some("Jane Doe".into()) }],
            stamp: 1_800_000_000,
        }
    }

    #[test]
    fn local_times_follow_the_zone_rules() {
        // Summer (CEST, +02:00) and winter (CET, +01:00) in Berlin.
        assert_eq!(
            parse_time("2027-07-20T15:00", Some("Europe/Berlin")).unwrap(),
            parse_time("2027-07-20T13:00:00Z", None).unwrap()
        );
        assert_eq!(
            parse_time("2027-01-20T15:00", Some("Europe/Berlin")).unwrap(),
            parse_time("2027-01-20T14:00:00Z", None).unwrap()
        );
        assert!(parse_time("2027-01-20T15:00", None).unwrap_err().contains("timezone"));
        assert!(parse_time("2027-01-20T15:00", Some("Mars/Olympus")).unwrap_err().contains("unknown time zone"));
        assert!(parse_time("tomorrow", Some("Europe/Berlin")).is_err());
    }

    #[test]
    fn the_calendar_is_escaped_and_folded() {
        let s = ics(&event());
        assert!(s.contains("DTSTART:20270720T130000Z\r\n"));
        assert!(s.contains("DTEND:20270720T133000Z\r\n"));
        assert!(s.contains("SUMMARY:Fitting\\; bring shoes\\, please\r\n"));
        assert!(s.contains("ORGANIZER;CN=\"Shop Team\":mailto:team@shop.example"));
        assert!(s.contains("METHOD:REQUEST\r\n") && s.contains("STATUS:CONFIRMED"));
        for l in s.split("\r\n") {
            assert!(l.len() <= 75, "{l}");
        }
        assert!(s.contains("\r\n "), "long lines are folded");
        let mut evil = event();
        evil.url = Some("https://x\r\nATTENDEE:mailto:evil@x".into());
        evil.summary = "a\r\nORGANIZER:mailto:ceo@x".into();
        let s = ics(&evil);
        assert!(!s.contains("\r\nATTENDEE:mailto:evil") && !s.contains("\r\nORGANIZER:mailto:ceo"), "{s}");
        let mut c = event();
        c.method = Method::Cancel;
        assert!(ics(&c).contains("STATUS:CANCELLED"));
    }
}
