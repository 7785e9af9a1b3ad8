//! The SMTP relay transport and failover against a real SMTP sink.

use std::sync::Arc;
use std::time::Duration;

use epistle_core::clock::{ManualClock, SharedClock};
use epistle_deliver::smtp::client::{SmtpSettings, Timeouts, TlsMode};
use epistle_deliver::smtp::{SmtpRelay, tls};
use epistle_deliver::{Delivery, Envelope, Route, Transport};
use epistle_testkit::{SinkConfig, SmtpSink};

fn settings(sink: &SmtpSink, tls_mode: TlsMode, auth: Option<(&str, &str)>) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port: sink.port(),
        tls: tls_mode,
        username: auth.map(|a| a.0.to_string()),
        password: auth.map(|a| a.1.to_string()),
        helo_name: "epistle.test".into(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data: Duration::from_secs(5),
        },
        connector: sink.ca_pem().map(|pem| tls::connector(Some(pem)).unwrap()),
        connect_addr: None,
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope { from: "orders@shop.example".into(), rcpts: rcpts.iter().map(|s| s.to_string()).collect() }
}

const MSG: &[u8] =
    b"From: orders@shop.example\r\nTo: jane@example.com\r\nSubject: hi\r\n\r\nHello\r\n.\r\n..two dots\r\n.\r\nend\r\n";

#[tokio::test]
async fn plain_relay_keeps_body_intact_through_dot_stuffing() {
    let sink = SmtpSink::start(SinkConfig::default()).await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::None, None), 2);
    let out = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Sent(r) if r.starts_with("250")), "{out:?}");
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, MSG, "lines starting with a dot arrive unchanged");
    assert_eq!(got[0].from, "orders@shop.example");
}

#[tokio::test]
async fn starttls_with_auth_plain() {
    let sink = SmtpSink::start(SinkConfig {
        starttls: true,
        auth: Some(("relay-user".into(), "s3cret".into())),
        ..Default::default()
    })
    .await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::StartTls, Some(("relay-user", "s3cret"))), 2);
    let out = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap();
    assert!(matches!(out[0], Delivery::Sent(_)), "{out:?}");
    let got = sink.received();
    assert!(got[0].tls, "the message travelled over TLS");
    assert_eq!(got[0].auth_user.as_deref(), Some("relay-user"));
}

#[tokio::test]
async fn starttls_with_auth_login_only() {
    let sink = SmtpSink::start(SinkConfig {
        starttls: true,
        login_only: true,
        auth: Some(("old-relay".into(), "p4ss".into())),
        ..Default::default()
    })
    .await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::StartTls, Some(("old-relay", "p4ss"))), 1);
    let out = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap();
    assert!(matches!(out[0], Delivery::Sent(_)), "{out:?}");
    assert_eq!(sink.received()[0].auth_user.as_deref(), Some("old-relay"));
}

#[tokio::test]
async fn implicit_tls() {
    let sink =
        SmtpSink::start(SinkConfig { implicit_tls: true, auth: Some(("u".into(), "p".into())), ..Default::default() })
            .await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::Tls, Some(("u", "p"))), 1);
    let out = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap();
    assert!(matches!(out[0], Delivery::Sent(_)), "{out:?}");
    assert!(sink.received()[0].tls);
}

#[tokio::test]
async fn wrong_password_and_missing_starttls_are_session_errors() {
    let sink =
        SmtpSink::start(SinkConfig { starttls: true, auth: Some(("u".into(), "p".into())), ..Default::default() })
            .await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::StartTls, Some(("u", "wrong"))), 1);
    let err = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap_err();
    assert!(err.0.contains("535"), "{err}");

    let plain = SmtpSink::start(SinkConfig::default()).await;
    let relay = SmtpRelay::new("main", settings(&plain, TlsMode::StartTls, None), 1);
    let err = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap_err();
    assert!(err.0.contains("STARTTLS"), "{err}");
    assert_eq!(plain.count(), 0, "nothing sent in clear when TLS is required");
}

#[tokio::test]
async fn replies_are_judged_per_recipient() {
    let sink = SmtpSink::start(SinkConfig::default()).await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::None, None), 1);
    let out = relay.send(&env(&["ok@example.com", "tempfail@example.com", "permfail@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Sent(_)), "{out:?}");
    assert!(matches!(&out[1], Delivery::Transient(r) if r.starts_with("451")), "{out:?}");
    assert!(matches!(&out[2], Delivery::Permanent(r) if r.starts_with("550")), "{out:?}");
    assert_eq!(sink.received()[0].rcpts, vec!["ok@example.com"]);
    // The connection is still good for the next message.
    let out = relay.send(&env(&["permfail@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Permanent(_)));
    let out = relay.send(&env(&["next@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Sent(_)), "{out:?}");
    assert_eq!(sink.connections(), 1, "one connection reused for all three");
}

#[tokio::test]
async fn dropped_connection_is_transient() {
    let sink = SmtpSink::start(SinkConfig::default()).await;
    let relay = SmtpRelay::new("main", settings(&sink, TlsMode::None, None), 1);
    let out = relay.send(&env(&["disconnect@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Transient(_)), "{out:?}");
    let out = relay.send(&env(&["jane@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Sent(_)), "a new connection replaces the dropped one: {out:?}");
}

#[tokio::test]
async fn slow_server_times_out_as_transient() {
    let sink = SmtpSink::start(SinkConfig { slow_delay: Duration::from_secs(30), ..Default::default() }).await;
    let mut s = settings(&sink, TlsMode::None, None);
    s.timeouts.data = Duration::from_millis(300);
    let relay = SmtpRelay::new("main", s, 1);
    let out = relay.send(&env(&["slow@example.com"]), MSG).await.unwrap();
    assert!(matches!(&out[0], Delivery::Transient(r) if r.contains("timed out")), "{out:?}");
}

#[tokio::test]
async fn parallel_sessions_share_a_bounded_pool() {
    let sink = SmtpSink::start(SinkConfig::default()).await;
    let relay = Arc::new(SmtpRelay::new("main", settings(&sink, TlsMode::None, None), 4));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let r = relay.clone();
        tasks.push(tokio::spawn(async move { r.send(&env(&[&format!("u{i}@example.com")]), MSG).await.unwrap() }));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap()[0], Delivery::Sent(_)));
    }
    assert_eq!(sink.count(), 40);
    assert!(sink.connections() <= 4, "at most 4 sessions, reused: {}", sink.connections());
}

#[tokio::test]
async fn failover_takes_over_and_the_circuit_opens() {
    let refusing =
        SmtpSink::start(SinkConfig { greeting: Some("554 5.3.2 not accepting mail".into()), ..Default::default() })
            .await;
    let backup = SmtpSink::start(SinkConfig::default()).await;
    let clock = ManualClock::new(1_000_000);
    let shared: SharedClock = Arc::new(clock.clone());
    let primary: Arc<dyn Transport> = Arc::new(SmtpRelay::new("primary", settings(&refusing, TlsMode::None, None), 1));
    let secondary: Arc<dyn Transport> = Arc::new(SmtpRelay::new("failover", settings(&backup, TlsMode::None, None), 1));
    let route = Route::new(vec![primary, secondary], 2, 30_000, shared);

    for _ in 0..5 {
        let r = route.send(&env(&["jane@example.com"]), MSG).await;
        assert_eq!(r.transport, "failover");
        assert!(matches!(r.deliveries[0], Delivery::Sent(_)));
    }
    assert_eq!(backup.count(), 5);
    assert_eq!(refusing.connections(), 2, "after 2 failures the circuit stops trying the dead relay");
    clock.advance_ms(30_000);
    route.send(&env(&["jane@example.com"]), MSG).await;
    assert_eq!(refusing.connections(), 3, "one probe after the cooldown");

    // With both down, recipients are deferred with the reasons.
    backup.stop();
    let r = route.send(&env(&["jane@example.com"]), MSG).await;
    assert!(matches!(&r.deliveries[0], Delivery::Transient(why) if why.contains("no transport")), "{:?}", r.deliveries);
}
