use std::time::Duration;

use epistle_testkit::Engine;
use serde_json::{Value, json};

use crate::helpers::*;

async fn send_and_check_raw(engine: Engine) {
    let app = spawn(Options { engine, ..Default::default() }).await;
    let mut body = message("jane@example.com");
    body["cc"] = json!("Joe <joe@example.com>");
    body["bcc"] = json!(["audit@shop.example"]);
    body["attachments"] =
        json!([{"filename": "invoice.pdf", "content_type": "application/pdf", "content": "JVBERi0xLjQKJcOkw7zDtsOf"}]);
    body["headers"] = json!({"X-Order": "1042"});
    let r = app.post("/v1/messages", &body).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["recipients"].as_array().unwrap().len(), 3);
    let id = v["id"].as_str().unwrap().to_string();

    let got = app.sink.wait_count(1, WAIT).await;
    assert_eq!(got.len(), 1, "one message, one transaction for all three recipients");
    let mut rcpts = got[0].rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["audit@shop.example", "jane@example.com", "joe@example.com"]);
    assert_eq!(got[0].from, "orders@shop.example");
    let text = got[0].text();
    assert!(!text.to_ascii_lowercase().contains("audit@shop.example"), "Bcc never appears in the message");
    let parsed = mail_parser::MessageParser::default().parse(&got[0].data).unwrap();
    assert_eq!(parsed.subject(), Some("Your order #1042"));
    assert!(parsed.message_id().unwrap().ends_with("@shop.example"), "Message-ID on the sender's domain");
    assert_eq!(parsed.attachments().count(), 1);
    assert_eq!(parsed.header_raw("X-Order").map(str::trim), Some("1042"));

    let done = app.wait_status(&id, "sent").await;
    let rc = &done["recipients"][0];
    assert_eq!(rc["attempts"], 1);
    assert!(rc["last_response"].as_str().unwrap().starts_with("250 2.0.0"), "{rc}");
    let types: Vec<&str> = done["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "sent").count(), 3, "{types:?}");
    assert_eq!(done["attempts"][0]["transport"], "sink");

    let raw = app.get(&format!("/v1/messages/{id}/raw")).await;
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert_eq!(raw.bytes().await.unwrap().as_ref(), &got[0].data[..], "raw is exactly what was handed over");
    app.stop().await;
}

#[tokio::test]
async fn send_and_check_raw_sqlite() {
    send_and_check_raw(Engine::Sqlite).await
}

#[tokio::test]
async fn send_and_check_raw_postgres() {
    send_and_check_raw(Engine::Postgres).await
}

async fn idempotency(engine: Engine) {
    let app = spawn(Options { engine, ..Default::default() }).await;
    let body = message("jane@example.com");
    let send = |b: &Value| {
        app.client.post(app.url("/v1/messages")).bearer_auth(KEY).header("Idempotency-Key", "order-1042").json(b).send()
    };
    let first = send(&body).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send(&body).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "the first reply again");

    let mut other = body.clone();
    other["subject"] = json!("Something else");
    let conflict = send(&other).await.unwrap();
    assert_eq!(conflict.status(), 409);
    let v: Value = conflict.json().await.unwrap();
    assert_eq!(v["error"]["code"], "idempotency_conflict");

    app.sink.wait_count(1, WAIT).await;
    let id = first["id"].as_str().unwrap();
    app.wait_status(id, "sent").await;
    let list = app.get_json("/v1/messages").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "replays create nothing");
    assert_eq!(app.sink.count(), 1, "and send nothing");
    app.stop().await;
}

#[tokio::test]
async fn idempotency_sqlite() {
    idempotency(Engine::Sqlite).await
}

#[tokio::test]
async fn idempotency_postgres() {
    idempotency(Engine::Postgres).await
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_message() {
    let app = spawn(Options { engine: Engine::Postgres, ..Default::default() }).await;
    let body = message("jane@example.com");
    let reqs = (0..8).map(|_| {
        app.client
            .post(app.url("/v1/messages"))
            .bearer_auth(KEY)
            .header("Idempotency-Key", "same-key")
            .json(&body)
            .send()
    });
    let replies = futures::future::join_all(reqs).await;
    let mut ids = Vec::new();
    for r in replies {
        let r = r.unwrap();
        assert!(r.status() == 202 || r.status() == 200, "{}", r.status());
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every caller got the same message");
    app.sink.wait_count(1, WAIT).await;
    app.wait_status(&ids[0], "sent").await;
    assert_eq!(app.sink.count(), 1);
    app.stop().await;
}

#[tokio::test]
async fn batch_accepts_good_items_and_reports_bad_ones_in_order() {
    let app = spawn_app().await;
    let mut bad = message("jane@example.com");
    bad["to"] = json!("not-an-address");
    let mut keyed = message("keyed@example.com");
    keyed["idempotency_key"] = json!("batch-item-1");
    let body = json!({"messages": [message("a@example.com"), bad, keyed.clone(), keyed, message("b@example.com")]});
    let r = app.post("/v1/messages/batch", &body).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    let res = v["results"].as_array().unwrap();
    assert_eq!(res.len(), 5);
    assert!(res[0]["id"].is_string());
    assert_eq!(res[1]["error"]["code"], "invalid_field");
    assert_eq!(res[1]["error"]["field"], "to");
    assert!(res[2]["id"].is_string());
    assert_eq!(res[3]["id"], res[2]["id"], "same key in one batch is one message");
    assert_eq!(res[3]["replayed"], true);
    assert!(res[4]["id"].is_string());
    app.sink.wait_count(3, WAIT).await;
    for i in [0, 2, 4] {
        app.wait_status(res[i]["id"].as_str().unwrap(), "sent").await;
    }
    assert_eq!(app.sink.count(), 3);

    let too_many = json!({"messages": vec![message("x@example.com"); 1001]});
    let r = app.post("/v1/messages/batch", &too_many).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "batch_too_large");
    app.stop().await;
}

#[tokio::test]
async fn list_filters_and_cursors() {
    let app = spawn(Options { relay: false, ..Default::default() }).await;
    for i in 0..5 {
        let mut m = message(&format!("u{i}@example.com"));
        m["tags"] = json!([if i % 2 == 0 { "even" } else { "odd" }]);
        app.send(&m).await;
        app.advance(Duration::from_millis(10));
    }
    let page = app.get_json("/v1/messages?limit=2").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["to"][0], "Jane Doe <u4@example.com>", "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app.get_json(&format!("/v1/messages?limit=10&cursor={cursor}")).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3);
    assert!(rest["next_cursor"].is_null());
    let even = app.get_json("/v1/messages?tag=even").await;
    assert_eq!(even["data"].as_array().unwrap().len(), 3);
    let one = app.get_json("/v1/messages?recipient=u3@example.com").await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn scheduled_mail_waits_and_cancel_stops_it() {
    let app = spawn_app().await;
    let mut later = message("later@example.com");
    later["send_at"] = json!("2030-01-01T09:00:00Z");
    let r = app.post("/v1/messages", &later).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "scheduled");
    let later_id = v["id"].as_str().unwrap().to_string();

    let mut cancel_me = message("cancelled@example.com");
    cancel_me["send_at"] = json!("2030-01-01T09:00:00Z");
    let cancel_id = app.send(&cancel_me).await;
    let r = app.post(&format!("/v1/messages/{cancel_id}/cancel"), &json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["cancelled"], json!(["cancelled@example.com"]));
    let again = app.post(&format!("/v1/messages/{cancel_id}/cancel"), &json!({})).await;
    assert_eq!(again.status(), 409);

    // Jump to the scheduled time.
    let now = START_MS;
    let due = epistle_core::timefmt::parse_rfc3339("2030-01-01T09:00:00Z").unwrap();
    app.advance(Duration::from_millis((due - now) as u64));
    app.wait_status(&later_id, "sent").await;
    let got = app.sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["later@example.com"], "the cancelled one never left");
    let date = got[0].header("Date").unwrap();
    assert!(date.contains("Jan 2030") && date.contains("09:00:00"), "Date is the scheduled time: {date}");
    app.stop().await;
}

#[tokio::test]
async fn sent_mail_cannot_be_cancelled() {
    let app = spawn_app().await;
    let id = app.send(&message("jane@example.com")).await;
    app.wait_status(&id, "sent").await;
    let r = app.post(&format!("/v1/messages/{id}/cancel"), &json!({})).await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_cancellable");
    app.stop().await;
}

#[tokio::test]
async fn auth_scopes_and_tenants() {
    let app = spawn_app().await;
    let id = app.send(&message("jane@example.com")).await;

    let r = app.client.get(app.url("/v1/messages")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    let r = app.client.get(app.url("/v1/messages")).bearer_auth("ep_nope").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A read-only key of another tenant.
    let store = &app.app.as_ref().unwrap().store;
    let other = store.ensure_tenant("acme", 0).await.unwrap();
    let other_key = "ep_otherkeyotherkeyotherkeyother0";
    store
        .create_api_key(
            &other.id,
            "ro",
            "ep_other",
            &epistle_http::hash_api_key(other_key),
            &["messages:read".into()],
            0,
        )
        .await
        .unwrap();
    let r = app.client.get(app.url(&format!("/v1/messages/{id}"))).bearer_auth(other_key).send().await.unwrap();
    assert_eq!(r.status(), 404, "another tenant's message does not exist for you");
    let r = app.client.get(app.url(&format!("/v1/messages/{id}/raw"))).bearer_auth(other_key).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(app.url("/v1/messages"))
        .bearer_auth(other_key)
        .json(&message("x@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "missing_scope");
    let list: Value =
        app.client.get(app.url("/v1/messages")).bearer_auth(other_key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"], json!([]));
    app.stop().await;
}
