use std::time::Duration;

use epistle::config::TransportConfig;
use epistle_testkit::{SinkConfig, SmtpSink};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn permanent_refusal_bounces_with_the_reply_kept() {
    let app = spawn_app().await;
    let mut m = message("permfail@example.com");
    m["to"] = json!(["permfail@example.com", "ok@example.com"]);
    let id = app.send(&m).await;
    let v = app.wait_status(&id, "bounced").await;
    let rcpts = v["recipients"].as_array().unwrap();
    let by = |e: &str| rcpts.iter().find(|r| r["email"] == e).unwrap().clone();
    assert_eq!(by("permfail@example.com")["status"], "bounced");
    assert!(by("permfail@example.com")["last_response"].as_str().unwrap().starts_with("550 5.1.1"));
    assert_eq!(by("ok@example.com")["status"], "sent", "one refusal does not fail the others");
    app.stop().await;
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_fail_at_max_age() {
    let app = spawn(Options {
        tweak: |c| {
            c.delivery.retry_base = Duration::from_secs(60);
            c.delivery.max_age = Duration::from_secs(3600);
        },
        ..Default::default()
    })
    .await;
    let id = app.send(&message("tempfail@example.com")).await;
    let v = app.wait_status(&id, "deferred").await;
    let r = &v["recipients"][0];
    assert_eq!(r["attempts"], 1);
    assert!(r["last_response"].as_str().unwrap().starts_with("451 4.3.0"), "{r}");

    // Not retried before its time…
    app.advance(Duration::from_secs(20));
    let v = app.get_json(&format!("/v1/messages/{id}")).await;
    assert_eq!(v["recipients"][0]["attempts"], 1);
    // …retried after the backoff (at most 60 s for the first retry)…
    app.advance(Duration::from_secs(45));
    epistle_testkit::wait_for("second attempt", WAIT, || async {
        let v = app.get_json(&format!("/v1/messages/{id}")).await;
        (v["recipients"][0]["attempts"] == 2).then_some(())
    })
    .await;
    // …and given up once the message is older than max_age.
    for _ in 0..20 {
        app.advance(Duration::from_secs(600));
        let v = app.get_json(&format!("/v1/messages/{id}")).await;
        if v["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = app.wait_status(&id, "failed").await;
    let r = &v["recipients"][0];
    assert!(r["last_response"].as_str().unwrap().starts_with("gave up after"), "{r}");
    let attempts = v["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "every attempt is stored: {}", attempts.len());
    assert!(attempts.iter().all(|a| a["response"].as_str().unwrap().contains("451")));
    app.stop().await;
}

#[tokio::test]
async fn retry_age_counts_from_the_scheduled_time() {
    let app = spawn(Options { tweak: |c| c.delivery.max_age = Duration::from_secs(3600), ..Default::default() }).await;
    let mut m = message("tempfail@example.com");
    m["send_at"] = json!(epistle_core::timefmt::rfc3339(START_MS + 2 * 24 * 3600 * 1000));
    let id = app.send(&m).await;
    app.advance(Duration::from_secs(2 * 24 * 3600));
    let v = app.wait_status(&id, "deferred").await;
    assert_eq!(v["recipients"][0]["attempts"], 1, "deferred, not failed: the message is one try old, not two days");
    app.stop().await;
}

#[tokio::test]
async fn dropped_connection_defers() {
    let app = spawn_app().await;
    let id = app.send(&message("disconnect@example.com")).await;
    let v = app.wait_status(&id, "deferred").await;
    assert!(v["recipients"][0]["last_response"].as_str().unwrap().contains("closed"), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn failover_relay_takes_the_mail_when_the_first_refuses() {
    let backup = SmtpSink::start(SinkConfig::default()).await;
    let mut app = spawn(Options {
        sink: SinkConfig { greeting: Some("421 4.3.2 service not available".into()), ..Default::default() },
        tweak: |_| {},
        ..Default::default()
    })
    .await;
    // Add the backup as the second transport: restart the app with it.
    let mut t = TransportConfig::smtp("backup", "127.0.0.1");
    t.port = Some(backup.port());
    t.tls = Some("none".into());
    app.cfg.transports.push(t);
    app.restart().await;

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.send(&message(&format!("u{i}@example.com"))).await);
    }
    for id in &ids {
        let v = app.wait_status(id, "sent").await;
        assert_eq!(v["attempts"][0]["transport"], "backup");
    }
    assert_eq!(backup.count(), 5);
    assert_eq!(app.sink.count(), 0);
    // The circuit is open now (3 failures in a row; cooldown 30 s): more
    // mail goes straight to the backup without knocking on the dead relay.
    let knocked = app.sink.connections();
    assert!(knocked >= 3);
    for i in 5..10 {
        let id = app.send(&message(&format!("u{i}@example.com"))).await;
        app.wait_status(&id, "sent").await;
    }
    assert_eq!(app.sink.connections(), knocked, "the circuit breaker stops trying the refusing relay");
    assert_eq!(backup.count(), 10);
    app.stop().await;
}

#[tokio::test]
async fn captured_mail_is_kept_and_readable() {
    let app = spawn(Options { relay: false, ..Default::default() }).await;
    let id = app.send(&message("jane@example.com")).await;
    let v = app.wait_status(&id, "sent").await;
    assert!(v["recipients"][0]["last_response"].as_str().unwrap().contains("captured"));
    let raw = app.get(&format!("/v1/messages/{id}/raw")).await.bytes().await.unwrap();
    let parsed = mail_parser::MessageParser::default().parse(raw.as_ref()).unwrap();
    assert_eq!(parsed.subject(), Some("Your order #1042"));
    assert_eq!(app.sink.count(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_for_later_mail() {
    let t = spawn_app().await;
    let first = t.send(&message("permfail-gone@customer.example")).await;
    t.wait_status(&first, "bounced").await;
    // The next message to the address (any case) is not sent; others are.
    let mut m = message("Permfail-Gone@customer.example");
    m["to"] = json!(["Permfail-Gone@customer.example", "jane@customer.example"]);
    let second = t.send(&m).await;
    // The message's status is its least advanced recipient's: suppressed.
    let v = t.wait_status(&second, "suppressed").await;
    let jane =
        v["recipients"].as_array().unwrap().iter().find(|r| r["email"] == "jane@customer.example").unwrap().clone();
    assert_eq!(jane["status"], "sent", "{v}");
    let gone = v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["email"] == "Permfail-Gone@customer.example")
        .unwrap()
        .clone();
    assert_eq!(gone["status"], "suppressed", "{v}");
    assert!(gone["last_response"].as_str().unwrap().contains("suppression list"));
    assert!(v["events"].as_array().unwrap().iter().any(|e| e["type"] == "suppressed"), "{v}");
    let sent_to: Vec<String> = t.sink.received().iter().flat_map(|r| r.rcpts.clone()).collect();
    assert_eq!(
        sent_to,
        vec!["jane@customer.example".to_string()],
        "the sink refused the first; only jane got the second"
    );
    // A soft bounce (mailbox full, 4xx) suppresses nothing.
    let soft = t.send(&message("tempfail-full@customer.example")).await;
    t.wait_status(&soft, "deferred").await;
    t.stop().await;
}
