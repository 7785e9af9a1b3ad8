use crate::helpers::*;

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let id = app.send(&message("jane@example.com")).await;
    app.wait_status(&id, "sent").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "epistle_messages_accepted_total 1",
        "epistle_deliveries_total{outcome=\"sent\"} 1",
        "epistle_attempt_duration_seconds_count{transport=\"sink\"} 1",
        "epistle_queue_depth{status=\"queued\"} 0",
        "epistle_transport_circuit_open{transport=\"sink\"} 0",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.app.as_ref().unwrap().store.close().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = app.post("/v1/messages", &message("jane@example.com")).await;
    assert_eq!(r.status(), 503, "a database outage is not a 500 and not an accept");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable");
}
