//! The feedback loop over real HTTP and SMTP: tracked mail with pixel,
//! rewritten links and RFC 8058 headers under DKIM; opens and clicks
//! recorded; one-click unsubscribe; the suppression list; provider hooks;
//! signed outgoing webhooks; the live event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use epistle_testkit::{HttpFake, wait_for};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::helpers::*;

fn broadcast(to: &str) -> Value {
    json!({
        "from": "Shop <news@shop.example>",
        "to": [to],
        "subject": "Autumn sale",
        "html": "<html><body><p>Hello!</p><p><a href=\"https://shop.example/sale?utm=mail&amp;x=1\">See the sale</a> \
                 <a href=\"mailto:help@shop.example\">Write to us</a></p></body></html>",
        "text": "Hello! https://shop.example/sale",
        "stream": "broadcast",
        "tags": ["autumn"]
    })
}

/// The HTML part of a relayed message, decoded.
fn html_of(raw: &[u8]) -> String {
    let m = mail_parser::MessageParser::default().parse(raw).expect("a parseable message");
    m.body_html(0).expect("an HTML part").to_string()
}

fn links(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| html[i..].split(['"', '\'', ' ', '>']).next().unwrap().replace("&amp;", "&"))
        .collect()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn events_of(t: &TestApp, id: &str, kind: &str, n: usize) -> Value {
    wait_for(&format!("{n} {kind} events"), WAIT, || async {
        let v = t.get_json(&format!("/v1/messages/{id}")).await;
        let count = v["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).count();
        (count >= n).then_some(v)
    })
    .await
}

#[tokio::test]
async fn tracked_mail_has_pixel_links_and_unsubscribe_headers_under_dkim_and_records_opens_and_clicks() {
    let t = spawn_app().await;
    let r = t.post("/v1/domains", &json!({"name": "shop.example"})).await;
    assert_eq!(r.status(), 201);
    let id = t.send(&broadcast("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let got = t.sink.wait_count(1, WAIT).await;
    let raw = &got[0].data;
    let text = String::from_utf8_lossy(raw);

    // RFC 8058 headers, signed.
    let lu = got[0].header("List-Unsubscribe").expect("List-Unsubscribe");
    assert!(lu.starts_with(&format!("<{}/u/", t.base)), "{lu}");
    assert_eq!(got[0].header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
    let h = text.split("h=").nth(1).unwrap().split(';').next().unwrap().replace(['\r', '\n', '\t', ' '], "");
    for name in ["List-Unsubscribe", "List-Unsubscribe-Post"] {
        assert!(h.split(':').any(|x| x.eq_ignore_ascii_case(name)), "{name} not signed: h={h}");
    }

    // Pixel and rewritten web link; mailto left alone.
    let html = html_of(raw);
    let clicks = links(&html, &format!("{}/t/c/", t.base));
    let opens = links(&html, &format!("{}/t/o/", t.base));
    assert_eq!((clicks.len(), opens.len()), (1, 1), "{html}");
    assert!(html.contains("mailto:help@shop.example") && !html.contains("https://shop.example/sale"), "{html}");

    // The pixel answers a GIF; the link redirects to exactly the original.
    let r = t
        .client
        .get(&opens[0])
        .header("user-agent", "Mozilla/5.0 (Windows NT 10.0) Firefox/120.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/gif");
    assert_eq!(&r.bytes().await.unwrap()[..6], b"GIF89a");
    let browser = no_redirects();
    let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
    // Seconds after sending: a link scanner, flagged.
    let r = browser.get(&clicks[0]).header("user-agent", chrome).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://shop.example/sale?utm=mail&x=1");
    // A minute later: a person.
    t.advance(Duration::from_secs(60));
    let r = browser.get(&clicks[0]).header("user-agent", chrome).send().await.unwrap();
    assert_eq!(r.status(), 302);

    // Tampered or made-up tokens: 404, never a redirect.
    let token = clicks[0].rsplit('/').next().unwrap();
    let mut bytes = token.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}/t/c/{}", t.base, String::from_utf8(bytes).unwrap());
    for url in [tampered, format!("{}/t/c/aHR0cHM6Ly9ldmlsLmV4YW1wbGU", t.base), format!("{}/t/o/x", t.base)] {
        let r = browser.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url}");
        assert!(r.headers().get("location").is_none());
    }

    let v = events_of(&t, &id, "clicked", 2).await;
    let v = if v["events"].as_array().unwrap().iter().any(|e| e["type"] == "opened") {
        v
    } else {
        events_of(&t, &id, "opened", 1).await
    };
    let rcpt = &v["recipients"][0]["engagement"];
    assert_eq!(rcpt["opens"], 1, "{v}");
    assert_eq!(rcpt["clicks"], 2, "{v}");
    assert_eq!(rcpt["human_clicks"], 1, "the click seconds after sending is a scanner's: {v}");
    let clicked: Vec<&Value> = v["events"].as_array().unwrap().iter().filter(|e| e["type"] == "clicked").collect();
    assert_eq!(clicked[0]["data"]["url"], "https://shop.example/sale?utm=mail&x=1");
    assert_eq!(clicked[0]["data"]["machine"], true);
    assert_eq!(clicked[1]["data"]["machine"], false);
    assert_eq!(clicked[1]["data"]["ip"], "127.0.0.1");

    // Listing by event.
    let l = t.get_json("/v1/messages?event=clicked").await;
    assert_eq!(l["data"].as_array().unwrap().len(), 1);
    assert_eq!(t.get_json("/v1/messages?event=complained").await["data"].as_array().unwrap().len(), 0);
    assert_eq!(t.get("/v1/messages?event=nonsense").await.status(), 422);
    t.stop().await;
}

#[tokio::test]
async fn transactional_mail_is_untracked_by_default_and_settings_turn_tracking_on_without_ip() {
    let t = spawn_app().await;
    let mut m = message("jane@customer.example");
    m["html"] = json!("<p><a href=\"https://shop.example/o/1\">Your order</a></p>");
    let id = t.send(&m).await;
    t.wait_status(&id, "sent").await;
    let got = t.sink.wait_count(1, WAIT).await;
    assert!(got[0].header("List-Unsubscribe").is_none());
    assert!(html_of(&got[0].data).contains("https://shop.example/o/1"));

    let s = json!({"tracking": {"transactional": {"opens": true, "clicks": true}, "broadcast": {"opens": true, "clicks": true}, "store_ip": false},
                   "categories": [{"name": "orders", "label": "Order updates"}]});
    let r = t.client.put(t.url("/v1/settings")).bearer_auth(KEY).json(&s).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bad = t
        .client
        .put(t.url("/v1/settings"))
        .bearer_auth(KEY)
        .json(&json!({"tracking": {"sometimes": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "unknown keys are refused");
    for (cats, field) in [
        (json!([{"name": "news letters", "label": "News"}]), "categories[0].name"),
        (json!([{"name": "news", "label": ""}]), "categories[0].label"),
        (json!([{"name": "news", "label": "A"}, {"name": "news", "label": "B"}]), "categories[1].name"),
    ] {
        let r = t
            .client
            .put(t.url("/v1/settings"))
            .bearer_auth(KEY)
            .json(&json!({"categories": cats}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    let id = t.send(&m).await;
    t.wait_status(&id, "sent").await;
    let got = t.sink.wait_count(2, WAIT).await;
    let html = html_of(&got[1].data);
    let clicks = links(&html, &format!("{}/t/c/", t.base));
    assert_eq!(clicks.len(), 1, "{html}");
    t.advance(Duration::from_secs(60));
    no_redirects().get(&clicks[0]).header("user-agent", "Mozilla/5.0 (X11) Firefox/1").send().await.unwrap();
    let v = events_of(&t, &id, "clicked", 1).await;
    let e = v["events"].as_array().unwrap().iter().find(|e| e["type"] == "clicked").unwrap().clone();
    assert!(e["data"].get("ip").is_none(), "store_ip = false keeps the address out: {e}");
    t.stop().await;
}

#[tokio::test]
async fn one_click_unsubscribe_suppresses_the_next_broadcast_but_not_transactional_mail() {
    let t = spawn_app().await;
    let id = t.send(&broadcast("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let got = t.sink.wait_count(1, WAIT).await;
    let lu = got[0].header("List-Unsubscribe").unwrap();
    let url = lu.trim_start_matches('<').split('>').next().unwrap().to_string();

    // The page first (GET changes nothing), then RFC 8058's POST.
    let page = t.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Unsubscribe"));
    assert_eq!(t.get_json("/v1/suppressions").await["data"].as_array().unwrap().len(), 0);
    let r = t
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = t.get_json("/v1/suppressions").await;
    assert_eq!(list["data"][0]["email"], "jane@customer.example", "{list}");
    assert_eq!(list["data"][0]["reason"], "unsubscribe");
    assert_eq!(list["data"][0]["scope"], "stream:broadcast");
    events_of(&t, &id, "unsubscribed", 1).await;

    // The next broadcast is suppressed at accept; transactional mail goes.
    let r = t.post("/v1/messages", &broadcast("Jane@Customer.example")).await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["recipients"][0]["status"], "suppressed", "{v}");
    let tx = t.send(&message("jane@customer.example")).await;
    t.wait_status(&tx, "sent").await;
    assert_eq!(t.sink.count(), 2, "only the transactional one went out");

    // The page offers resubscribing, and it works.
    let page = t.client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Subscribe again"), "{page}");
    let r = t
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("action=resubscribe")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.get_json("/v1/suppressions").await["data"].as_array().unwrap().len(), 0);

    // A forged token changes nothing.
    let forged = format!("{}/u/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", t.base);
    let r = t.client.post(&forged).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(t.get_json("/v1/suppressions").await["data"].as_array().unwrap().len(), 0);
    t.stop().await;
}

#[tokio::test]
async fn the_suppression_list_api() {
    let t = spawn_app().await;
    let r = t.post("/v1/suppressions", &json!({"email": "Gone@Example.com", "detail": "asked by phone"})).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["email"].as_str(), v["scope"].as_str(), v["reason"].as_str()),
        (Some("gone@example.com"), Some("all"), Some("manual"))
    );
    let r = t
        .post(
            "/v1/suppressions",
            &json!({"email": "promo@example.com", "scope": "category:marketing", "reason": "unsubscribe"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    for (body, field) in [
        (json!({"email": "not an address"}), "email"),
        (json!({"email": "a@example.com", "scope": "everything"}), "scope"),
        (json!({"email": "a@example.com", "reason": "because"}), "reason"),
    ] {
        let r = t.post("/v1/suppressions", &body).await;
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    let all = t.get_json("/v1/suppressions").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2);
    let one = t.get_json("/v1/suppressions?limit=1").await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    let next = t.get_json(&format!("/v1/suppressions?limit=1&cursor={}", one["next_cursor"].as_str().unwrap())).await;
    assert_ne!(next["data"][0]["email"], one["data"][0]["email"]);
    assert_eq!(t.get_json("/v1/suppressions?reason=manual").await["data"].as_array().unwrap().len(), 1);

    // Suppressed at accept: everything for `all`, only marketing for the category.
    let r = t.post("/v1/messages", &message("gone@example.com")).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "suppressed", "{v}");
    let mut m = message("promo@example.com");
    m["category"] = json!("marketing");
    let v: Value = t.post("/v1/messages", &m).await.json().await.unwrap();
    assert_eq!(v["recipients"][0]["status"], "suppressed");
    m["category"] = json!("orders");
    let v: Value = t.post("/v1/messages", &m).await.json().await.unwrap();
    assert_eq!(v["recipients"][0]["status"], "queued");
    m["category"] = json!("not a name!");
    let r = t.post("/v1/messages", &m).await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "category");

    assert_eq!(t.delete("/v1/suppressions/gone@example.com").await.status(), 200);
    assert_eq!(t.delete("/v1/suppressions/gone@example.com").await.status(), 404);
    assert_eq!(t.delete("/v1/suppressions/promo@example.com?scope=bogus").await.status(), 422);
    let v: Value = t.post("/v1/messages", &message("gone@example.com")).await.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    t.stop().await;
}

fn mailgun_body(key: &str, token: &str, ts: i64, event: Value) -> Value {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}{token}").as_bytes());
    json!({
        "signature": {"timestamp": ts.to_string(), "token": token, "signature": hex::encode(mac.finalize().into_bytes())},
        "event-data": event,
    })
}

#[tokio::test]
async fn provider_hooks_move_recipients_and_forged_or_replayed_ones_change_nothing() {
    let t = spawn(Options {
        tweak: |c| {
            c.hooks.mailgun_signing_key = Some(epistle::config::Secret("mg-signing-key".into()));
            c.hooks.postmark_username = Some("pm".into());
            c.hooks.postmark_password = Some(epistle::config::Secret("pm-secret".into()));
        },
        ..Default::default()
    })
    .await;
    let a = t.send(&message("jane@customer.example")).await;
    let b = t.send(&message("gone@customer.example")).await;
    t.wait_status(&a, "sent").await;
    t.wait_status(&b, "sent").await;
    let now = START_MS / 1000;

    // Mailgun: delivered, by our Message-ID header.
    let header_id = format!("{}@shop.example", a.trim_start_matches("msg_").to_uppercase());
    let ev = json!({"event": "delivered", "recipient": "jane@customer.example", "timestamp": now as f64,
                    "message": {"headers": {"message-id": header_id}},
                    "delivery-status": {"code": 250, "message": "OK"}});
    let body = mailgun_body("mg-signing-key", &"t".repeat(50), now, ev.clone());
    let r = t.client.post(t.url("/hooks/mailgun")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    t.wait_status(&a, "delivered").await;
    // The same request again is a replay.
    let r = t.client.post(t.url("/hooks/mailgun")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Forged: a complaint signed with the wrong key changes nothing.
    let mut forged_ev = ev;
    forged_ev["event"] = json!("complained");
    let forged = mailgun_body("not-the-key", &"u".repeat(50), now, forged_ev);
    let r = t.client.post(t.url("/hooks/mailgun")).json(&forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(t.get_json(&format!("/v1/messages/{a}")).await["status"], "delivered");

    // Postmark: a hard bounce, by the id we attach, suppresses.
    let bounce = json!({"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "Email": "gone@customer.example",
                        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
                        "Metadata": {"epistle_id": b}, "BouncedAt": "2027-01-15T08:00:00Z"});
    let r = t.client.post(t.url("/hooks/postmark")).basic_auth("pm", Some("wrong")).json(&bounce).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = t.client.post(t.url("/hooks/postmark")).json(&bounce).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(t.get_json(&format!("/v1/messages/{b}")).await["status"], "sent", "refused hooks changed nothing");
    let r =
        t.client.post(t.url("/hooks/postmark")).basic_auth("pm", Some("pm-secret")).json(&bounce).send().await.unwrap();
    assert_eq!(r.status(), 200);
    t.wait_status(&b, "bounced").await;
    let s = t.get_json("/v1/suppressions?email=gone@customer.example").await;
    assert_eq!(s["data"][0]["reason"], "hard_bounce", "{s}");
    assert_eq!(s["data"][0]["source"], "postmark");

    // Hooks without credentials refuse everything.
    for h in ["/hooks/sendgrid", "/hooks/ses"] {
        let r = t.client.post(t.url(h)).body("[]").send().await.unwrap();
        assert_eq!(r.status(), 401, "{h}");
    }
    t.stop().await;
}

fn verify_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = "";
    let mut v1 = "";
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x,
            Some(("v1", x)) => v1 = x,
            _ => {}
        }
    }
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

#[tokio::test]
async fn webhooks_are_signed_retried_and_their_deliveries_listed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let receiver = HttpFake::start(move |_| {
        // The first delivery fails: it must come again.
        if c.fetch_add(1, Ordering::SeqCst) == 0 { (503, vec![], "busy".into()) } else { (200, vec![], "ok".into()) }
    })
    .await;
    let t = spawn(Options { tweak: |c| c.webhooks.allow_private_addresses = true, ..Default::default() }).await;
    let r = t
        .post(
            "/v1/webhooks",
            &json!({"url": format!("{}/epistle", receiver.url), "events": ["sent"], "description": "CRM"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed = t.get_json("/v1/webhooks").await;
    assert!(listed["data"][0].get("secret").is_none(), "the secret is shown once: {listed}");

    let id = t.send(&message("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let deliveries = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    // The failed attempt is recorded with its retry time before the clock moves.
    wait_for("the first (failed) delivery to be recorded", WAIT, || async {
        let d = t.get_json(&deliveries).await;
        (d["data"][0]["attempts"] == 1 && d["data"][0]["status"] == "pending").then_some(())
    })
    .await;
    assert_eq!(receiver.requests().len(), 1);
    // The retry comes after the backoff.
    t.advance(Duration::from_secs(11));
    let reqs = wait_for("the retry", WAIT, || async {
        let r = receiver.requests();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let req = &reqs[1];
    assert!(verify_signature(&secret, req.header("epistle-signature").unwrap(), &req.body), "signature checks");
    assert!(!verify_signature("whsec_other", req.header("epistle-signature").unwrap(), &req.body));
    let p = req.json();
    assert_eq!(p["type"], "sent");
    assert_eq!(p["data"]["message_id"], id.as_str());
    assert_eq!(p["data"]["recipient"], "jane@customer.example");
    assert_eq!(p["data"]["tags"], json!(["order-confirmation"]));
    assert_eq!(reqs.len(), 2, "queued events are not subscribed: only `sent` comes");

    let d = wait_for("the delivery to be recorded", WAIT, || async {
        let d = t.get_json(&deliveries).await;
        (d["data"][0]["status"] == "delivered").then_some(d)
    })
    .await;
    assert_eq!(d["data"][0]["attempts"], 2, "{d}");
    assert_eq!(d["data"][0]["tries"][0]["status_code"], 503);
    assert_eq!(d["data"][0]["tries"][1]["status_code"], 200);
    assert_eq!(t.get(&format!("/v1/webhooks/{}/deliveries", "whk_nope")).await.status(), 404);
    t.stop().await;
}

#[tokio::test]
async fn a_webhook_made_after_mail_went_out_gets_only_the_events_that_follow_it() {
    let receiver = HttpFake::start(|_| (200, vec![], "ok".into())).await;
    let t = spawn(Options { tweak: |c| c.webhooks.allow_private_addresses = true, ..Default::default() }).await;
    // Mail while no endpoint exists: fan-out passes over its events without
    // reading them.
    let before = t.send(&message("early@customer.example")).await;
    t.wait_status(&before, "sent").await;
    let r = t.post("/v1/webhooks", &json!({"url": format!("{}/in", receiver.url), "events": ["sent"]})).await;
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    let after = t.send(&message("late@customer.example")).await;
    t.wait_status(&after, "sent").await;
    let deliveries = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
    let d = wait_for("the delivery of the later event", WAIT, || async {
        let d = t.get_json(&deliveries).await;
        (d["data"][0]["status"] == "delivered").then_some(d)
    })
    .await;
    // Fan-out goes in event order, so an earlier event it wanted would have
    // been queued with this one or before it.
    assert_eq!(d["data"].as_array().unwrap().len(), 1, "{d}");
    let reqs = receiver.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].json()["data"]["message_id"], after.as_str());
    t.stop().await;
}

#[tokio::test]
async fn webhooks_to_internal_addresses_and_bad_events_are_refused() {
    let t = spawn_app().await;
    for (body, field) in [
        (json!({"url": "http://127.0.0.1:9/x", "events": ["sent"]}), "url"),
        (json!({"url": "http://localhost/x", "events": ["sent"]}), "url"),
        (json!({"url": "http://10.0.0.8/x", "events": ["sent"]}), "url"),
        (json!({"url": "ftp://example.com/x", "events": ["sent"]}), "url"),
        (json!({"url": "https://hooks.example.com/x", "events": ["exploded"]}), "events[0]"),
        (json!({"url": "https://hooks.example.com/x", "events": []}), "events"),
    ] {
        let r = t.post("/v1/webhooks", &body).await;
        assert_eq!(r.status(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["field"], field, "{e}");
    }
    t.stop().await;
}

/// Reads server-sent events until `n` have come: `(id, event, data)`.
async fn read_sse(mut resp: reqwest::Response, n: usize) -> Vec<(i64, String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("events in time")
            .expect("the stream reads")
            .unwrap_or_else(|| panic!("the stream ended after {} events: {out:?}; unparsed: {buf:?}", out.len()));
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut ev, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    ev = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if let Some(id) = id {
                out.push((id, ev, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_event_stream_delivers_in_order_filters_and_resumes() {
    let t = spawn_app().await;
    let stream = t.client.get(t.url("/v1/events/stream?types=queued,sent")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = t.send(&message(&format!("c{i}@customer.example"))).await;
        t.wait_status(&id, "sent").await;
        ids.push(id);
    }
    let got = read_sse(stream, 6).await;
    let seq: Vec<i64> = got.iter().map(|g| g.0).collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "in order: {seq:?}");
    for (_, kind, data) in &got {
        assert!(kind == "queued" || kind == "sent", "{kind}");
        assert!(ids.iter().any(|i| data["data"]["message_id"] == i.as_str()));
    }
    assert_eq!(got.iter().filter(|g| g.1 == "sent").count(), 3);

    // Resuming after the first event gives the rest, from the log.
    let resumed = t
        .client
        .get(t.url("/v1/events/stream?types=queued,sent"))
        .bearer_auth(KEY)
        .header("last-event-id", got[0].0.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let again = read_sse(resumed, 5).await;
    assert_eq!(again.iter().map(|g| g.0).collect::<Vec<_>>(), seq[1..].to_vec());

    let bad = t.client.get(t.url("/v1/events/stream?types=exploded")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    let bad = t
        .client
        .get(t.url("/v1/events/stream"))
        .bearer_auth(KEY)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(t.client.get(t.url("/v1/events/stream")).send().await.unwrap().status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn an_event_stream_opened_after_a_quiet_spell_starts_at_the_present_and_can_resume_from_the_start() {
    let t = spawn_app().await;
    // Nobody listens: the hub follows the end of the log without reading it.
    let early = t.send(&message("early@customer.example")).await;
    t.wait_status(&early, "sent").await;
    let live = t.client.get(t.url("/v1/events/stream?types=queued,sent")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let late = t.send(&message("late@customer.example")).await;
    t.wait_status(&late, "sent").await;
    let got = read_sse(live, 2).await;
    let kinds: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(kinds, ["queued", "sent"], "{got:?}");
    for (_, _, data) in &got {
        assert_eq!(data["data"]["message_id"], late.as_str(), "only what followed the opening: {got:?}");
    }
    // From the start of the log: both messages, in order, with nothing left out.
    let all = t
        .client
        .get(t.url("/v1/events/stream?types=queued,sent"))
        .bearer_auth(KEY)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let got = read_sse(all, 4).await;
    let order: Vec<(String, String)> =
        got.iter().map(|g| (g.2["data"]["message_id"].as_str().unwrap().to_string(), g.1.clone())).collect();
    assert_eq!(
        order,
        [
            (early.clone(), "queued".to_string()),
            (early.clone(), "sent".to_string()),
            (late.clone(), "queued".to_string()),
            (late.clone(), "sent".to_string())
        ]
    );
    t.stop().await;
}
