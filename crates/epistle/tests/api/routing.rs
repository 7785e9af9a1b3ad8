//! Routes pick transports by stream and tag; prices add up to costs.

use epistle::config::{RouteConfig, TransportConfig};
use epistle_testkit::{SinkConfig, SmtpSink};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn routes_choose_transports_and_costs_add_up() {
    let bulk = SmtpSink::start(SinkConfig::default()).await;
    let mut bulk_t = TransportConfig::smtp("bulk", "127.0.0.1");
    bulk_t.port = Some(bulk.port());
    bulk_t.tls = Some("none".into());
    bulk_t.rate = Some("600/m".into());
    bulk_t.cost_per_1000 = Some(1.0);
    let app = spawn(Options {
        tweak: |c| c.transports[0].cost_per_1000 = Some(0.10),
        extra_transports: vec![bulk_t],
        routes: vec![
            RouteConfig {
                stream: Some("broadcast".into()),
                sender_domain: None,
                tag: None,
                transports: vec!["bulk".into()],
            },
            RouteConfig {
                stream: None,
                sender_domain: None,
                tag: Some("invoice".into()),
                transports: vec!["bulk".into(), "sink".into()],
            },
        ],
        ..Default::default()
    })
    .await;

    let plain = app.send(&message("a@example.com")).await;
    let mut b = message("b@example.com");
    b["stream"] = json!("broadcast");
    let broadcast = app.send(&b).await;
    let mut inv = message("c@example.com");
    inv["tags"] = json!(["invoice"]);
    let invoice = app.send(&inv).await;
    for id in [&plain, &broadcast, &invoice] {
        app.wait_status(id, "sent").await;
    }
    assert_eq!(app.sink.received().iter().flat_map(|r| r.rcpts.clone()).collect::<Vec<_>>(), vec!["a@example.com"]);
    let mut to_bulk: Vec<String> = bulk.received().iter().flat_map(|r| r.rcpts.clone()).collect();
    to_bulk.sort();
    assert_eq!(to_bulk, vec!["b@example.com", "c@example.com"]);

    let v = app.get_json(&format!("/v1/messages/{plain}")).await;
    assert_eq!(v["recipients"][0]["cost"], json!(0.0001));
    let v = app.get_json(&format!("/v1/messages/{invoice}")).await;
    assert_eq!(v["recipients"][0]["cost"], json!(0.001));

    let t = app.get_json("/v1/transports").await;
    assert_eq!(t["data"][0]["name"], "sink");
    assert_eq!(t["data"][0]["circuit"], "closed");
    assert_eq!(t["data"][0]["cost_per_1000"], json!(0.1));
    assert_eq!(t["data"][1]["rate"], "600/m");

    let since = epistle_core::timefmt::rfc3339(START_MS - 1000);
    let until = epistle_core::timefmt::rfc3339(START_MS + 1000);
    let c = app.get_json(&format!("/v1/stats/costs?since={since}&until={until}")).await;
    assert_eq!(c["currency"], "USD");
    assert_eq!(c["total"], json!(0.0021));
    assert_eq!(c["by_transport"], json!({"bulk": 0.002, "sink": 0.0001}));
    assert_eq!(c["by_day"], json!([{"day": "2027-01-15", "total": 0.0021}]));

    for (q, field) in [("since=yesterday", "since"), ("until=soon", "until"), ("from=x", "from")] {
        let r = app.get(&format!("/v1/stats/costs?{q}")).await;
        assert_eq!(r.status(), 422, "{q}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], field);
    }
    let r = app.get(&format!("/v1/stats/costs?since={until}&until={since}")).await;
    assert_eq!(r.status(), 422);
    app.stop().await;
}
