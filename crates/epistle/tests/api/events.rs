//! Business events and rules: events by HTTP, NATS JetStream and RabbitMQ
//! become mail exactly once; reminders fire at their time on the injected
//! clock, move with a reschedule and stop with a cancellation; bad events
//! and failing rules end up in the dead letters with their reason.

use std::time::Duration;

use epistle_testkit::wait_for;
use serde_json::{Value, json};

use crate::helpers::*;

fn order_rule() -> Value {
    json!({
        "name": "order confirmation",
        "on": "order.placed",
        "when": "data.order.total > 0",
        "template": "order-confirmation",
        "to": "{{ data.customer.email }}",
        "from": "Shop <orders@shop.example>",
        "tags": ["order"]
    })
}

fn order(key: &str, email: &str, total: f64) -> Value {
    json!({
        "type": "order.placed",
        "key": key,
        "data": {
            "customer": {"email": email, "first_name": "Jane"},
            "order": {"number": key.trim_start_matches("order-"), "currency": "USD", "subtotal": total,
                      "shipping": 0, "total": total, "lines": [{"name": "Mug", "qty": 1, "price": total}]}
        }
    })
}

async fn dead_letters(t: &TestApp, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} dead letters"), WAIT, || async {
        let v = t.get_json("/v1/dead-letters").await;
        let list = v["data"].as_array().unwrap().clone();
        (list.len() >= n).then_some(list)
    })
    .await
}

#[tokio::test]
async fn http_events_send_once_and_bad_ones_say_why() {
    let t = spawn_app().await;
    // Rules are checked when saved.
    for (field, change) in [
        ("when", json!({"when": "data.total >"})),
        ("template", json!({"template": "no-such-template"})),
        ("on", json!({"on": "order placed"})),
        ("offset", json!({"offset": "-24"})),
        ("to", json!({"to": "{{ data.customer.email"})),
        ("stream", json!({"stream": "marketing"})),
    ] {
        let mut r = order_rule();
        for (k, v) in change.as_object().unwrap() {
            r[k] = v.clone();
        }
        let (s, v) = post(&t, "/v1/rules", &r).await;
        assert_eq!((s, v["error"]["field"].as_str()), (422, Some(field)), "{v}");
    }
    let (s, rule) = post(&t, "/v1/rules", &order_rule()).await;
    assert_eq!(s, 201, "{rule}");
    let rule_id = rule["id"].as_str().unwrap().to_string();
    assert_eq!(t.get_json("/v1/rules").await["data"][0]["id"], rule_id.as_str());

    // The same order twice: one event, one mail.
    let (s, first) = post(&t, "/v1/events", &order("order-1042", "jane@customer.example", 59.5)).await;
    assert_eq!((s, first["duplicate"].as_bool()), (202, Some(false)), "{first}");
    let (s, again) = post(&t, "/v1/events", &order("order-1042", "jane@customer.example", 59.5)).await;
    assert_eq!((s, again["duplicate"].as_bool(), &again["id"]), (202, Some(true), &first["id"]), "{again}");
    let ev = processed(&t, first["id"].as_str().unwrap()).await;
    assert_eq!(ev["runs"][0]["status"], "queued", "{ev}");
    let message_id = ev["runs"][0]["message_id"].as_str().unwrap().to_string();
    t.wait_status(&message_id, "sent").await;
    let got = t.sink.wait_count(1, WAIT).await;
    assert_eq!(got[0].rcpts, vec!["jane@customer.example".to_string()]);
    assert!(got[0].header("Subject").unwrap().contains("1042"), "{:?}", got[0].header("Subject"));
    let m = t.get_json(&format!("/v1/messages/{message_id}")).await;
    assert_eq!((m["metadata"]["rule"].as_str(), m["tags"][0].as_str()), (Some(rule_id.as_str()), Some("order")), "{m}");

    // A condition that is false: skipped, no mail.
    let (_, zero) = post(&t, "/v1/events", &order("order-1043", "zero@customer.example", 0.0)).await;
    let ev = processed(&t, zero["id"].as_str().unwrap()).await;
    assert_eq!(ev["runs"][0]["status"], "skipped", "{ev}");
    // No recipient in the event: the run fails and says why, where an
    // operator sees it.
    let mut nobody = order("order-1044", "x@customer.example", 5.0);
    nobody["data"]["customer"].as_object_mut().unwrap().remove("email");
    let (_, ev) = post(&t, "/v1/events", &nobody).await;
    let ev = processed(&t, ev["id"].as_str().unwrap()).await;
    assert_eq!(ev["runs"][0]["status"], "failed", "{ev}");
    let dead = dead_letters(&t, 1).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("gave no recipient"), "{dead:?}");
    assert_eq!(dead[0]["source"], "rule");
    // A template deleted after the rule was made: the reason names it.
    let mut custom = order_rule();
    custom["name"] = json!("custom");
    custom["on"] = json!("order.shipped");
    custom["template"] = json!("shipping-note");
    let tpl = json!({"name": "shipping-note", "subject": "Shipped", "text": "On its way."});
    assert_eq!(t.post("/v1/templates", &tpl).await.status(), 201);
    let (s, _) = post(&t, "/v1/rules", &custom).await;
    assert_eq!(s, 201);
    assert_eq!(t.delete("/v1/templates/shipping-note").await.status(), 204);
    let mut shipped = order("order-1042", "jane@customer.example", 59.5);
    shipped["type"] = json!("order.shipped");
    let (_, ev) = post(&t, "/v1/events", &shipped).await;
    processed(&t, ev["id"].as_str().unwrap()).await;
    let dead = dead_letters(&t, 2).await;
    assert!(dead[0]["reason"].as_str().unwrap().contains("shipping-note"), "{dead:?}");

    // Bad events are refused with the field to fix.
    let (s, v) = post(&t, "/v1/events", &json!({"type": "order placed", "key": "k"})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("type")), "{v}");
    let (s, v) = post(&t, "/v1/events", &json!({"type": "order.placed", "key": "k", "data": [1]})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("data")), "{v}");
    let r = t
        .client
        .post(t.url("/v1/events"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Unknown ids and bad paging are refused, not guessed at.
    assert_eq!(t.get("/v1/events/evt_01nosuchevent0000000000000").await.status(), 404);
    let r = t.client.put(t.url("/v1/rules/rul_nope")).bearer_auth(KEY).json(&order_rule()).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(t.get("/v1/rules/rul_nope").await.status(), 404);
    assert_eq!(t.delete("/v1/rules/rul_nope").await.status(), 404);
    assert_eq!(t.get("/v1/dead-letters?limit=0").await.status(), 422);
    assert_eq!(t.get("/v1/dead-letters?cursor=not-a-cursor").await.status(), 400);
    assert_eq!(t.get("/v1/dead-letters?colour=red").await.status(), 422);

    // Only the one confirmation went out.
    assert_eq!(t.sink.count(), 1);
    let r = t.delete(&format!("/v1/rules/{rule_id}")).await;
    assert_eq!(r.status(), 204);
    t.stop().await;
}

fn appointment(kind: &str, key: &str, entity: &str, start: &str) -> Value {
    json!({
        "type": kind,
        "key": key,
        "entity": entity,
        "data": {
            "customer": {"email": format!("{entity}@customer.example"), "first_name": "Ana"},
            "appointment": {"uid": format!("{entity}@clinic.example"), "title": "Check-up", "when": start,
                            "start": start, "end": half_hour_after(start), "location": "Room 4"}
        }
    })
}

fn half_hour_after(start: &str) -> String {
    let ms = epistle_core::timefmt::parse_rfc3339(start).unwrap() + 30 * 60 * 1000;
    epistle_core::timefmt::rfc3339(ms)
}

fn reminder(name: &str, offset: &str) -> Value {
    json!({
        "name": name, "on": "appointment.booked", "template": "appointment-reminder",
        "to": "{{ data.customer.email }}", "from": "Clinic <care@clinic.example>",
        "at": "{{ data.appointment.start }}", "offset": offset,
        "cancelled_by": ["appointment.cancelled"], "rescheduled_by": ["appointment.rescheduled"]
    })
}

/// Addresses the sink got mail for, sorted.
fn delivered_to(t: &TestApp) -> Vec<String> {
    let mut to: Vec<String> = t.sink.received().iter().map(|m| m.rcpts.join(",")).collect();
    to.sort();
    to
}

#[tokio::test]
async fn appointment_reminders_fire_on_time_move_and_stop() {
    let t = spawn_app().await;
    let confirm = json!({
        "name": "confirmation", "on": "appointment.booked", "template": "appointment-confirmation",
        "to": "{{ data.customer.email }}", "from": "Clinic <care@clinic.example>"
    });
    for r in [confirm, reminder("24h before", "-24h"), reminder("1h before", "-1h")] {
        let (s, v) = post(&t, "/v1/rules", &r).await;
        assert_eq!(s, 201, "{v}");
    }
    // The clock stands at 2027-01-15 08:00 UTC.
    let (_, a) = post(&t, "/v1/events", &appointment("appointment.booked", "a1", "a1", "2027-01-17T10:00:00Z")).await;
    let (_, b) = post(&t, "/v1/events", &appointment("appointment.booked", "b1", "b1", "2027-01-17T12:00:00Z")).await;
    // Starts in 30 minutes: both reminders' times have passed.
    let (_, c) = post(&t, "/v1/events", &appointment("appointment.booked", "c1", "c1", "2027-01-15T08:30:00Z")).await;
    let a = processed(&t, a["id"].as_str().unwrap()).await;
    processed(&t, b["id"].as_str().unwrap()).await;
    let c = processed(&t, c["id"].as_str().unwrap()).await;
    let statuses = |v: &Value| {
        v["runs"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(statuses(&a), vec!["queued", "scheduled", "scheduled"], "{a}");
    assert_eq!(statuses(&c), vec!["queued", "skipped", "skipped"], "{c}");
    // The confirmations go at once, with the invitation.
    let got = t.sink.wait_count(3, WAIT).await;
    assert!(got.iter().all(|m| m.text().contains("text/calendar")), "confirmations carry the invite");

    // b is cancelled; a is moved two hours later, by an event that carries
    // only the new time (the rest comes from the booking).
    let (_, x) = post(&t, "/v1/events", &json!({"type": "appointment.cancelled", "key": "b1", "data": {}})).await;
    let new_start = "2027-01-17T12:00:00Z";
    let moved_only = json!({"type": "appointment.rescheduled", "key": "a1-r1", "entity": "a1", "data": {
        "appointment": {"when": new_start, "start": new_start, "end": half_hour_after(new_start)}}});
    let (_, y) = post(&t, "/v1/events", &moved_only).await;
    processed(&t, x["id"].as_str().unwrap()).await;
    let y = processed(&t, y["id"].as_str().unwrap()).await;

    // a's reminders are made again for the new time: the 24h one now goes
    // on the 16th at 12:00 instead of 10:00, and the mail made at booking
    // is cancelled, saying why.
    assert_eq!(statuses(&y), vec!["scheduled", "scheduled"], "{y}");
    let old_24h = a["runs"][1]["message_id"].as_str().unwrap();
    let new_24h =
        y["runs"].as_array().unwrap().iter().find(|r| r["rule_id"] == a["runs"][1]["rule_id"]).unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_string();
    let old = t.get_json(&format!("/v1/messages/{old_24h}")).await;
    assert_eq!(old["status"], "cancelled", "{old}");
    let a_now = t.get_json(&format!("/v1/events/{}", a["id"].as_str().unwrap())).await;
    assert_eq!(statuses(&a_now), vec!["queued", "cancelled", "cancelled"], "{a_now}");
    assert!(a_now["runs"][1]["detail"].as_str().unwrap().contains("replaced by the mail for appointment.rescheduled"));
    let moved = t.get_json(&format!("/v1/messages/{new_24h}")).await;
    assert_eq!(moved["send_at"], "2027-01-16T12:00:00Z", "{moved}");
    assert_eq!(moved["to"][0], "a1@customer.example", "the address comes from the booking: {moved}");
    t.advance(Duration::from_secs(26 * 3600 + 60));
    assert_eq!(t.get_json(&format!("/v1/messages/{new_24h}")).await["status"], "scheduled");
    t.advance(Duration::from_secs(2 * 3600));
    let got = t.sink.wait_count(4, WAIT).await;
    // The reminder shows the new time and carries the moved invitation.
    let reminder = got.iter().find(|m| m.text().contains("Subject: Reminder")).expect("the 24h reminder").text();
    assert!(reminder.contains("12:00") && !reminder.contains("10:00"), "the new time, not the old: {reminder}");
    assert!(reminder.contains("DTSTART:20270117T120000Z"), "the moved invitation: {reminder}");
    // The day itself, 11:00 and past: a's 1h reminder, nothing for b or c.
    t.advance(Duration::from_secs(23 * 3600));
    t.sink.wait_count(5, WAIT).await;
    let to = delivered_to(&t);
    assert_eq!(to.iter().filter(|r| r.starts_with("a1@")).count(), 3, "{to:?}");
    assert_eq!(to.iter().filter(|r| r.starts_with("b1@")).count(), 1, "only b's confirmation: {to:?}");
    assert_eq!(to.iter().filter(|r| r.starts_with("c1@")).count(), 1, "only c's confirmation: {to:?}");
    let b = t.get_json(&format!("/v1/events/{}", b["id"].as_str().unwrap())).await;
    assert_eq!(statuses(&b), vec!["queued", "cancelled", "cancelled"], "{b}");
    t.stop().await;
}

fn consumer(kind: epistle::config::ConsumerKind, url: &str) -> epistle::config::ConsumerConfig {
    epistle::config::ConsumerConfig {
        kind,
        url: url.into(),
        stream: None,
        subject: None,
        durable: None,
        queue: None,
        prefetch: 50,
        tenant: "default".into(),
        ack_wait: Duration::from_secs(30),
    }
}

/// A counter from `/metrics`.
async fn metric(t: &TestApp, line_start: &str) -> f64 {
    let text = t.client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_metric(t: &TestApp, line_start: &str, want: f64) {
    wait_for(&format!("{line_start} = {want}"), WAIT, || async { (metric(t, line_start).await >= want).then_some(()) })
        .await
}

#[tokio::test]
async fn nats_jetstream_events_are_taken_once_across_a_restart() {
    let tag = format!("{:08x}", rand::random::<u32>());
    let (stream, root) = (format!("EPISTLE_TEST_{tag}"), format!("orders_{tag}"));
    let mut c = consumer(epistle::config::ConsumerKind::Nats, "nats://127.0.0.1:4222");
    c.stream = Some(stream.clone());
    c.subject = Some(format!("{root}.>"));
    let mut t =
        spawn(Options { configure: Some(Box::new(move |cfg| cfg.consumers.push(c))), ..Default::default() }).await;
    assert_eq!(post(&t, "/v1/rules", &order_rule()).await.0, 201);

    let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await.unwrap());
    // The consumer creates the stream when it starts.
    wait_for("the stream", WAIT, || async { js.get_stream(&stream).await.ok().map(|_| ()) }).await;
    let publish = |subject: String, body: Vec<u8>| {
        let js = js.clone();
        async move { js.publish(subject, body.into()).await.unwrap().await.unwrap() }
    };
    let placed = |key: &str| serde_json::to_vec(&order(key, &format!("{key}@customer.example"), 10.0)).unwrap();
    publish(format!("{root}.placed"), placed("order-1")).await;
    publish(format!("{root}.placed"), placed("order-1")).await;
    publish(format!("{root}.placed"), b"{\"type\": \"order.placed\"".to_vec()).await;
    t.sink.wait_count(1, WAIT).await;
    let dead = dead_letters(&t, 1).await;
    assert_eq!(dead[0]["source"], format!("nats:{stream}"));
    assert!(dead[0]["reason"].as_str().unwrap().contains("not an event"), "{dead:?}");
    let source = format!("source=\"nats:{stream}\"");
    wait_metric(&t, &format!("epistle_events_duplicate_total{{{source}}}"), 1.0).await;

    // Published while Epistle is down: taken when it is back, and the
    // redelivered order-1 still sends nothing.
    t.halt().await;
    publish(format!("{root}.placed"), placed("order-2")).await;
    publish(format!("{root}.placed"), placed("order-1")).await;
    t.resume().await;
    t.sink.wait_count(2, WAIT).await;
    wait_metric(&t, &format!("epistle_events_duplicate_total{{{source}}}"), 1.0).await;
    wait_for("the stream drained", WAIT, || async {
        let mut c = js
            .get_stream(&stream)
            .await
            .ok()?
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("epistle")
            .await
            .ok()?;
        let info = c.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
    })
    .await;
    let to: Vec<String> = delivered_to(&t);
    assert_eq!(to, vec!["order-1@customer.example", "order-2@customer.example"], "one mail per order");
    t.stop().await;
    let _ = js.delete_stream(&stream).await;
}

#[tokio::test]
async fn rabbitmq_events_are_taken_once_and_bad_ones_dead_lettered() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};

    let queue = format!("epistle-test-{:08x}", rand::random::<u32>());
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let conn = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(queue.as_str().into(), durable, FieldTable::default()).await.unwrap();
    let publish = |body: Vec<u8>| {
        let ch = ch.clone();
        let queue = queue.clone();
        async move {
            ch.basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    };
    let placed = |key: &str| serde_json::to_vec(&order(key, &format!("{key}@customer.example"), 10.0)).unwrap();
    let mut c = consumer(epistle::config::ConsumerKind::Amqp, url);
    c.queue = Some(queue.clone());
    let mut t =
        spawn(Options { configure: Some(Box::new(move |cfg| cfg.consumers.push(c))), ..Default::default() }).await;
    assert_eq!(post(&t, "/v1/rules", &order_rule()).await.0, 201);
    // Published while Epistle is down: waiting in the queue.
    t.halt().await;
    publish(placed("order-7")).await;
    publish(placed("order-7")).await;
    publish(b"[1, 2, 3]".to_vec()).await;
    publish(serde_json::to_vec(&json!({"type": "order.placed", "key": "order-8", "data": "not an object"})).unwrap())
        .await;
    t.resume().await;
    publish(placed("order-9")).await;
    publish(placed("order-9")).await;
    t.sink.wait_count(2, WAIT).await;
    let dead = dead_letters(&t, 2).await;
    assert!(dead.iter().all(|d| d["source"] == format!("amqp:{queue}")), "{dead:?}");
    assert!(dead.iter().any(|d| d["reason"].as_str().unwrap().starts_with("data:")), "{dead:?}");
    let source = format!("source=\"amqp:{queue}\"");
    wait_metric(&t, &format!("epistle_events_duplicate_total{{{source}}}"), 2.0).await;
    wait_for("the queue drained", WAIT, || async {
        let passive = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
        let q = ch.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.ok()?;
        (q.message_count() == 0).then_some(())
    })
    .await;
    assert_eq!(delivered_to(&t), vec!["order-7@customer.example", "order-9@customer.example"], "one mail per order");
    t.stop().await;
    let _ = ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
}

#[tokio::test]
async fn lead_alerts_are_batched_per_rep_and_sent_once_when_the_window_closes() {
    let t = spawn_app().await;
    let tpl = json!({"name": "lead-alerts", "subject": "{{ count }} new lead{{ 's' if count != 1 }}",
                     "text": "{% for e in events %}{{ e.lead.name }} ({{ e.lead.score }})\n{% endfor %}"});
    assert_eq!(t.post("/v1/templates", &tpl).await.status(), 201);
    let rule = json!({"name": "hot leads", "on": "lead.scored", "when": "data.lead.score >= 80", "batch": "15m",
                      "template": "lead-alerts", "to": "{{ data.rep.email }}", "from": "CRM <crm@shop.example>"});
    let mut bad = rule.clone();
    bad["offset"] = json!("-1h");
    assert_eq!(post(&t, "/v1/rules", &bad).await.1["error"]["field"], "batch");
    assert_eq!(post(&t, "/v1/rules", &rule).await.0, 201);
    let lead = |key: &str, rep: &str, score: u32| {
        json!({"type": "lead.scored", "key": key,
               "data": {"lead": {"name": format!("Lead {key}"), "score": score}, "rep": {"email": rep}}})
    };
    let mut ids = vec![];
    for (key, rep, score) in [
        ("l1", "ann@shop.example", 91),
        ("l2", "ann@shop.example", 85),
        ("l3", "bob@shop.example", 99),
        ("l4", "ann@shop.example", 20),
    ] {
        let (s, v) = post(&t, "/v1/events", &lead(key, rep, score)).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
        t.advance(Duration::from_secs(60));
    }
    for id in &ids {
        processed(&t, id).await;
    }
    let first = t.get_json(&format!("/v1/events/{}", ids[0])).await;
    assert_eq!(first["runs"][0]["status"], "batched", "{first}");
    // Ann's window opened with l1 (minute 0), Bob's with l3 (minute 2); at
    // minute 18 both have closed: her two hot leads go in one mail, his one
    // in another, the cold lead in none.
    t.advance(Duration::from_secs(14 * 60));
    let got = t.sink.wait_count(2, WAIT).await;
    let ann = got.iter().find(|m| m.rcpts == vec!["ann@shop.example".to_string()]).expect("Ann's alert");
    assert_eq!(ann.header("Subject").as_deref(), Some("2 new leads"));
    assert!(ann.text().contains("Lead l1 (91)") && ann.text().contains("Lead l2 (85)"), "{}", ann.text());
    assert!(!ann.text().contains("Lead l4"));
    let bob = got.iter().find(|m| m.rcpts == vec!["bob@shop.example".to_string()]).expect("Bob's alert");
    assert_eq!(bob.header("Subject").as_deref(), Some("1 new lead"));
    // A later lead opens a new window: one more mail, later.
    let (_, v) = post(&t, "/v1/events", &lead("l5", "ann@shop.example", 88)).await;
    processed(&t, v["id"].as_str().unwrap()).await;
    t.advance(Duration::from_secs(16 * 60));
    t.sink.wait_count(3, WAIT).await;
    wait_metric(&t, "epistle_rule_messages_total", 3.0).await;
    assert_eq!(metric(&t, "epistle_rule_messages_total").await, 3.0, "three alerts, none twice");
    t.stop().await;
}
