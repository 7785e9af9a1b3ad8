//! Calendar invitations: the parts arrive at the sink, and an independent
//! iCalendar parser (Python's `icalendar`) reads them as meant.

use std::process::Command;

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};

use crate::helpers::*;

/// The text/calendar part of a received message, and its `method` parameter.
fn calendar_part(raw: &[u8]) -> (String, String, Vec<String>) {
    let m = MessageParser::default().parse(raw).unwrap();
    let mut found = None;
    let mut names = Vec::new();
    for part in m.parts.iter() {
        if let Some(ct) = part.content_type()
            && ct.ctype() == "text"
            && ct.subtype() == Some("calendar")
        {
            let method = ct.attribute("method").unwrap_or_default().to_string();
            found = Some((String::from_utf8_lossy(part.contents()).into_owned(), method));
        }
        if let Some(n) = part.attachment_name() {
            names.push(n.to_string());
        }
    }
    let (ics, method) = found.expect("a text/calendar part");
    (ics, method, names)
}

fn parse_ics(ics: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("invite.ics");
    std::fs::write(&f, ics).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ics_check.py");
    let out = Command::new("python3").arg(script).arg(&f).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "icalendar could not read it (pip install icalendar; scripts/test-services.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn invitation(method: &str, sequence: u32, start: &str) -> Value {
    json!({
        "from": "Dr. Smith's Practice <appointments@clinic.example>",
        "to": "Jane Doe <jane@customer.example>",
        "subject": "Your appointment",
        "text": "See you then.",
        "html": "<p>See you then.</p>",
        "calendar": {
            "method": method, "uid": "appt-42@clinic.example", "sequence": sequence,
            "start": start, "end": "2027-07-20T15:30", "timezone": "Europe/Berlin",
            "summary": "Check-up, Dr. Smith", "location": "Clinic, Hauptstraße 1, Berlin",
            "url": "https://meet.clinic.example/appt-42",
            "description": "Bring your insurance card.\nArrive 10 minutes early."
        }
    })
}

#[tokio::test]
async fn confirmation_reschedule_and_cancellation() {
    let t = spawn_app().await;
    let first = t.send(&invitation("request", 0, "2027-07-20T15:00")).await;
    t.wait_status(&first, "sent").await;
    let (ics, method, names) = calendar_part(&t.sink.received()[0].data);
    assert_eq!(method, "REQUEST");
    assert!(names.contains(&"invite.ics".to_string()), "{names:?}");
    let v = parse_ics(&ics);
    assert_eq!(v["method"], "REQUEST");
    let e = &v["events"][0];
    assert_eq!(e["uid"], "appt-42@clinic.example");
    assert_eq!(e["sequence"], 0);
    // 15:00 in Berlin in July is 13:00 UTC (summer time).
    assert_eq!(e["start"], "2027-07-20T13:00:00+00:00");
    assert_eq!(e["end"], "2027-07-20T13:30:00+00:00");
    assert_eq!(e["summary"], "Check-up, Dr. Smith");
    assert_eq!(e["location"], "Clinic, Hauptstraße 1, Berlin");
    assert_eq!(e["description"], "Bring your insurance card.\nArrive 10 minutes early.");
    assert_eq!(e["url"], "https://meet.clinic.example/appt-42");
    assert_eq!(e["organizer"], "mailto:appointments@clinic.example");
    assert_eq!(e["organizer_cn"], "Dr. Smith's Practice");
    assert_eq!(e["attendees"], json!(["mailto:jane@customer.example"]));
    assert_eq!(e["status"], "CONFIRMED");

    // Rescheduled: same UID, higher SEQUENCE, new time.
    let moved = t.send(&invitation("request", 1, "2027-07-20T14:45")).await;
    t.wait_status(&moved, "sent").await;
    let v = parse_ics(&calendar_part(&t.sink.received()[1].data).0);
    assert_eq!(
        (v["events"][0]["uid"].as_str(), v["events"][0]["sequence"].as_i64()),
        (Some("appt-42@clinic.example"), Some(1))
    );
    assert_eq!(v["events"][0]["start"], "2027-07-20T12:45:00+00:00");

    // Cancelled.
    let cancel = t.send(&invitation("cancel", 2, "2027-07-20T14:45")).await;
    t.wait_status(&cancel, "sent").await;
    let (ics, method, _) = calendar_part(&t.sink.received()[2].data);
    assert_eq!(method, "CANCEL");
    let v = parse_ics(&ics);
    assert_eq!((v["method"].as_str(), v["events"][0]["status"].as_str()), (Some("CANCEL"), Some("CANCELLED")));
    t.stop().await;
}

#[tokio::test]
async fn bad_calendars_are_refused_with_the_field() {
    let t = spawn_app().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"method": "publish"}), "calendar.method"),
        (json!({"uid": ""}), "calendar.uid"),
        (json!({"start": "2027-07-20T15:00", "timezone": null}), "calendar.start"),
        (json!({"timezone": "Mars/Olympus"}), "calendar.start"),
        (json!({"end": "2027-07-20T14:00"}), "calendar.end"),
        (json!({"summary": " "}), "calendar.summary"),
        (json!({"url": "javascript:alert(1)"}), "calendar.url"),
        (json!({"url": "https://x\r\nATTENDEE:mailto:evil@x"}), "calendar.url"),
        (json!({"organizer": "not an address"}), "calendar.organizer"),
        (json!({"attendees": ["ok@example.com", "bad"]}), "calendar.attendees[1]"),
        (json!({"rrule": "FREQ=DAILY"}), "calendar.rrule"),
    ];
    for (patch, field) in cases {
        let mut m = invitation("request", 0, "2027-07-20T15:00");
        for (k, v) in patch.as_object().unwrap() {
            m["calendar"][k] = v.clone();
        }
        let r = t.post("/v1/messages", &m).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 422, "{patch}: {v}");
        assert_eq!(v["error"]["field"], field, "{patch}: {v}");
    }
    t.stop().await;
}

#[tokio::test]
async fn appointment_templates_carry_their_invitation() {
    let t = spawn_app().await;
    let appointment = |sequence: u32, when: &str, start: &str| {
        json!({"customer": {"first_name": "Jane"}, "appointment": {
            "uid": "demo-7@acme.example", "sequence": sequence, "title": "Product demo", "with": "Alex",
            "when": when, "start": start, "end": "2027-03-02T11:00", "timezone": "Europe/Berlin",
            "previous_when": "Tue 1 Mar, 15:00", "join_url": "https://meet.example/demo-7"}})
    };
    let send = |template: &str, data: Value| json!({"from": "Acme <team@acme.example>", "to": "jane@customer.example", "template": template, "data": data});
    let a = t.send(&send("appointment-confirmation", appointment(0, "Tue 2 Mar, 10:00", "2027-03-02T10:00"))).await;
    let b = t.send(&send("appointment-rescheduled", appointment(1, "Tue 2 Mar, 10:30", "2027-03-02T10:30"))).await;
    let c = t.send(&send("appointment-cancelled", appointment(2, "Tue 2 Mar, 10:30", "2027-03-02T10:30"))).await;
    for id in [&a, &b, &c] {
        t.wait_status(id, "sent").await;
    }
    let by_subject = |prefix: &str| {
        t.sink.received().into_iter().find(|r| r.header("Subject").unwrap_or_default().starts_with(prefix)).unwrap()
    };
    let v = parse_ics(&calendar_part(&by_subject("Confirmed").data).0);
    assert_eq!((v["method"].as_str(), v["events"][0]["sequence"].as_i64()), (Some("REQUEST"), Some(0)));
    // March in Berlin is winter time: 10:00 is 09:00 UTC.
    assert_eq!(v["events"][0]["start"], "2027-03-02T09:00:00+00:00");
    assert_eq!(v["events"][0]["url"], "https://meet.example/demo-7");
    let v = parse_ics(&calendar_part(&by_subject("New time").data).0);
    assert_eq!(
        (v["events"][0]["uid"].as_str(), v["events"][0]["sequence"].as_i64()),
        (Some("demo-7@acme.example"), Some(1))
    );
    assert_eq!(v["events"][0]["start"], "2027-03-02T09:30:00+00:00");
    let (ics, method, _) = calendar_part(&by_subject("Cancelled").data);
    assert_eq!(method, "CANCEL");
    assert_eq!(parse_ics(&ics)["events"][0]["status"], "CANCELLED");

    // Without uid/start/end the mail goes without an invitation; bad data is a 422.
    let plain = t
        .send(&send(
            "appointment-reminder",
            json!({"customer": {"first_name": "Jo"}, "appointment": {"title": "Demo", "when": "soon"}}),
        ))
        .await;
    t.wait_status(&plain, "sent").await;
    let reminder = by_subject("Reminder");
    assert!(!String::from_utf8_lossy(&reminder.data).contains("text/calendar"));
    let bad = t
        .post(
            "/v1/messages",
            &send("appointment-confirmation", {
                let mut d = appointment(0, "x", "2027-03-02T10:00");
                d["appointment"]["sequence"] = json!("first");
                d
            }),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["field"], "data.appointment.sequence");
    t.stop().await;
}
