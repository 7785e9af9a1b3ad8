//! Direct MX delivery: lookups through a real (local) DNS server, the
//! message to the SMTP sink standing in for the destination's MX hosts.

use std::net::Ipv4Addr;

use epistle_testkit::SinkConfig;
use serde_json::{Value, json};

use crate::helpers::*;

const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Nothing listens here on the sink's port: connections are refused.
const DEAD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn mx_app(sink: SinkConfig, tweak: fn(&mut epistle::config::Config)) -> TestApp {
    spawn(Options { mx: true, sink, tweak, ..Default::default() }).await
}

fn to(addr: &str) -> Value {
    let mut m = message(addr);
    m["to"] = json!([addr]);
    m
}

fn last_response(v: &Value) -> String {
    v["recipients"][0]["last_response"].as_str().or(v["recipients"][0]["response"].as_str()).unwrap_or("").to_string()
}

#[tokio::test]
async fn delivers_to_the_mx_host_and_reuses_its_connection() {
    let t = mx_app(SinkConfig::default(), |_| {}).await;
    t.dns.mx("dest.example", 10, "mx1.dest.example");
    t.dns.a("mx1.dest.example", LOCAL);
    // One after the other: each finds the previous one's connection idle.
    for i in 0..3 {
        let id = t.send(&to(&format!("user{i}@dest.example"))).await;
        let v = t.wait_status(&id, "sent").await;
        assert_eq!(v["attempts"][0]["transport"], "direct", "{v}");
    }
    let got = t.sink.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.rcpts[0].ends_with("@dest.example")));
    assert_eq!(t.sink.connections(), 1, "three messages over one reused connection");
    assert!(t.dns.queries().iter().any(|(n, ty)| n == "dest.example" && ty.to_string() == "MX"));
    t.stop().await;
}

#[tokio::test]
async fn falls_back_to_the_next_preference_and_to_the_address_record() {
    let t = mx_app(SinkConfig::default(), |_| {}).await;
    // The best MX refuses connections; the second takes the mail.
    t.dns.mx("dest.example", 10, "mx-down.dest.example");
    t.dns.mx("dest.example", 20, "mx-up.dest.example");
    t.dns.a("mx-down.dest.example", DEAD);
    t.dns.a("mx-up.dest.example", LOCAL);
    // No MX at all: the domain's own address is its mail host.
    t.dns.a("implicit.example", LOCAL);
    let a = t.send(&to("jane@dest.example")).await;
    let b = t.send(&to("joe@implicit.example")).await;
    t.wait_status(&a, "sent").await;
    t.wait_status(&b, "sent").await;
    let rcpts: Vec<String> = t.sink.received().iter().flat_map(|r| r.rcpts.clone()).collect();
    assert!(rcpts.contains(&"jane@dest.example".to_string()) && rcpts.contains(&"joe@implicit.example".to_string()));
    t.stop().await;
}

#[tokio::test]
async fn one_message_to_several_domains_goes_to_each() {
    let t = mx_app(SinkConfig::default(), |_| {}).await;
    for d in ["a.example", "b.example"] {
        t.dns.mx(d, 10, &format!("mx.{d}"));
        t.dns.a(&format!("mx.{d}"), LOCAL);
    }
    let mut m = message("x@a.example");
    m["to"] = json!(["x@a.example", "y@b.example", "z@a.example"]);
    let id = t.send(&m).await;
    t.wait_status(&id, "sent").await;
    let got = t.sink.received();
    assert_eq!(got.len(), 2, "one transaction per destination");
    let mut per: Vec<Vec<String>> = got.iter().map(|r| r.rcpts.clone()).collect();
    per.sort();
    assert_eq!(per, vec![vec!["x@a.example".to_string(), "z@a.example".to_string()], vec!["y@b.example".to_string()]]);
    t.stop().await;
}

#[tokio::test]
async fn dns_answers_decide_bounce_or_retry() {
    let t = mx_app(SinkConfig::default(), |_| {}).await;
    t.dns.mx("null.example", 0, ".");
    t.dns.servfail("flaky.example");
    let nx = t.send(&to("a@nowhere.example")).await;
    let null = t.send(&to("a@null.example")).await;
    let flaky = t.send(&to("a@flaky.example")).await;
    let v = t.wait_status(&nx, "bounced").await;
    assert!(last_response(&v).contains("5.1.2"), "{v}");
    let v = t.wait_status(&null, "bounced").await;
    assert!(last_response(&v).contains("null MX"), "{v}");
    let v = t.wait_status(&flaky, "deferred").await;
    assert!(last_response(&v).contains("4.4.3"), "{v}");

    // Every MX host unreachable: deferred, and the transport stays usable
    // for other destinations (no circuit opened by one dead domain).
    t.dns.mx("down.example", 10, "mx.down.example");
    t.dns.a("mx.down.example", DEAD);
    t.dns.mx("up.example", 10, "mx.up.example");
    t.dns.a("mx.up.example", LOCAL);
    let first = t.send(&to("u1@down.example")).await;
    let v = t.wait_status(&first, "deferred").await;
    assert!(last_response(&v).contains("no MX host of down.example"), "{v}");
    // Every host failed: the domain's next mail waits out the backoff
    // without new connection attempts (nor a new DNS question).
    let asked = t.dns.queries().iter().filter(|(n, _)| n == "down.example").count();
    let second = t.send(&to("u2@down.example")).await;
    let v = t.wait_status(&second, "deferred").await;
    assert!(last_response(&v).contains("was unreachable moments ago"), "{v}");
    assert_eq!(t.dns.queries().iter().filter(|(n, _)| n == "down.example").count(), asked);
    let up = t.send(&to("a@up.example")).await;
    t.wait_status(&up, "sent").await;
    t.stop().await;
}

#[tokio::test]
async fn starttls_is_used_when_offered_and_required_where_configured() {
    let t = mx_app(SinkConfig { starttls: true, ..Default::default() }, |_| {}).await;
    t.dns.mx("dest.example", 10, "mx.dest.example");
    t.dns.a("mx.dest.example", LOCAL);
    let id = t.send(&to("a@dest.example")).await;
    t.wait_status(&id, "sent").await;
    assert!(t.sink.received()[0].tls, "opportunistic STARTTLS was not used");
    t.stop().await;

    // A destination that requires TLS, reached through a host without it.
    let t = mx_app(SinkConfig::default(), |c| {
        c.delivery.destinations.push(epistle::config::DestinationConfig {
            domain: "secure.example".into(),
            connections: Some(2),
            rate: Some("600/m".into()),
            tls: Some("required".into()),
        })
    })
    .await;
    t.dns.mx("secure.example", 10, "mx.secure.example");
    t.dns.a("mx.secure.example", LOCAL);
    t.dns.mx("plain.example", 10, "mx.plain.example");
    t.dns.a("mx.plain.example", LOCAL);
    let secure = t.send(&to("a@secure.example")).await;
    let plain = t.send(&to("a@plain.example")).await;
    let v = t.wait_status(&secure, "deferred").await;
    assert!(last_response(&v).contains("STARTTLS"), "{v}");
    t.wait_status(&plain, "sent").await;
    assert_eq!(t.sink.count(), 1);
    assert!(!t.sink.received()[0].tls);
    t.stop().await;
}

#[tokio::test]
async fn internal_addresses_are_not_delivered_to_by_default() {
    let t = mx_app(SinkConfig::default(), |c| c.delivery.mx_allow_private_addresses = false).await;
    t.dns.mx("sneaky.example", 10, "mx.sneaky.example");
    t.dns.a("mx.sneaky.example", LOCAL);
    let id = t.send(&to("a@sneaky.example")).await;
    let v = t.wait_status(&id, "deferred").await;
    assert!(last_response(&v).contains("internal address"), "{v}");
    assert_eq!(t.sink.count(), 0);
    t.stop().await;
}

#[tokio::test]
async fn a_broken_starttls_falls_back_to_plain_text_unless_tls_is_required() {
    let t = mx_app(SinkConfig { broken_starttls: true, ..Default::default() }, |c| {
        c.delivery.destinations.push(epistle::config::DestinationConfig {
            domain: "strict.example".into(),
            connections: None,
            rate: None,
            tls: Some("required".into()),
        })
    })
    .await;
    for d in ["dest.example", "strict.example"] {
        t.dns.mx(d, 10, &format!("mx.{d}"));
        t.dns.a(&format!("mx.{d}"), LOCAL);
    }
    let id = t.send(&to("a@dest.example")).await;
    t.wait_status(&id, "sent").await;
    assert!(!t.sink.received()[0].tls);
    let strict = t.send(&to("a@strict.example")).await;
    let v = t.wait_status(&strict, "deferred").await;
    assert!(last_response(&v).contains("TLS"), "{v}");
    assert_eq!(t.sink.count(), 1);
    t.stop().await;
}
