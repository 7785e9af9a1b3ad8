//! Provider transports: Amazon SES v2 against moto_server (signatures
//! checked), Mailgun, SendGrid and Postmark against local fakes that check
//! authentication and payload as the providers do.

use epistle::config::{TransportConfig, TransportKind};
use epistle_testkit::{HttpFake, HttpRequest, MotoServer, wait_for};
use serde_json::{Value, json};

use crate::helpers::*;

fn provider(name: &str, kind: TransportKind, endpoint: &str) -> TransportConfig {
    let mut t = TransportConfig::smtp(name, "");
    t.kind = kind;
    t.host = None;
    t.endpoint = Some(endpoint.to_string());
    t.data_timeout = std::time::Duration::from_secs(10);
    t
}

/// The sink as a second transport, for failover.
fn backup(t: &mut epistle::config::Config) {
    let mut sink = t.transports.remove(0);
    sink.name = "backup".into();
    t.transports.push(sink);
}

async fn app_with(transport: TransportConfig, with_backup: bool) -> TestApp {
    spawn(Options {
        relay: true,
        extra_transports: vec![transport],
        tweak: if with_backup {
            backup
        } else {
            |c| {
                c.transports.remove(0);
            }
        },
        ..Default::default()
    })
    .await
}

fn response_of(v: &Value) -> String {
    v["recipients"][0]["last_response"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn ses_sends_our_raw_mime_signed_with_sigv4() {
    let moto = MotoServer::start().await;
    let mut t = provider("ses-main", TransportKind::Ses, &moto.url);
    t.region = Some("us-east-1".into());
    t.access_key_id = Some(moto.access_key_id.clone());
    t.secret_access_key = Some(epistle::config::Secret(moto.secret_access_key.clone()));
    t.cost_per_1000 = Some(0.10);
    let app = app_with(t, false).await;

    // DKIM on our side: the signature must survive SES's API.
    let d: Value = app.post("/v1/domains", &json!({"name": "shop.example"})).await.json().await.unwrap();

    // Not a verified identity at SES yet: refused, a bounce.
    let id = app.send(&message("jane@customer.example")).await;
    let v = app.wait_status(&id, "bounced").await;
    assert!(response_of(&v).contains("ses"), "{v}");

    // Verify the domain at (moto's) SES, with a request we sign ourselves.
    create_identity(&moto, "shop.example").await;
    let id = app.send(&message("jane@customer.example")).await;
    let v = app.wait_status(&id, "sent").await;
    assert!(response_of(&v).contains("MessageId"), "{v}");
    assert_eq!(v["recipients"][0]["cost"], 0.0001, "{v}");
    let state = moto.state().await;
    let sent = state["ses"]["RawMessage"].as_array().cloned().unwrap_or_default();
    assert_eq!(sent.len(), 1, "{state}");
    let raw = sent[0]["raw_data"].as_str().unwrap();
    assert!(raw.contains("Subject: Your order #1042"));
    assert!(raw.contains("DKIM-Signature:"), "our signature went through");
    assert!(sent[0]["destinations"].as_array().unwrap().iter().any(|x| x == "jane@customer.example"));
    let _ = d;
    app.stop().await;
}

async fn create_identity(moto: &MotoServer, domain: &str) {
    use epistle_deliver::providers::sigv4;
    let body = serde_json::to_vec(&json!({"EmailIdentity": domain})).unwrap();
    let host = moto.url.trim_start_matches("http://").to_string();
    let creds = sigv4::Credentials {
        access_key_id: &moto.access_key_id,
        secret_access_key: &moto.secret_access_key,
        region: "us-east-1",
        service: "ses",
    };
    let date = epistle_deliver::providers::ses::amz_date();
    let path = "/v2/email/identities";
    let headers =
        sigv4::sign(&creds, "POST", path, "", &[("host", &host), ("content-type", "application/json")], &body, &date);
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", moto.url))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

#[tokio::test]
async fn ses_with_a_wrong_key_fails_over_to_the_next_transport() {
    let moto = MotoServer::start().await;
    let mut t = provider("ses-main", TransportKind::Ses, &moto.url);
    t.region = Some("us-east-1".into());
    t.access_key_id = Some(moto.access_key_id.clone());
    t.secret_access_key = Some(epistle::config::Secret("not-the-secret".into()));
    let app = app_with(t, true).await;
    let id = app.send(&message("jane@customer.example")).await;
    let v = app.wait_status(&id, "sent").await;
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["transport"], "backup", "{v}");
    // moto checked the signature and refused it: that is what failed over.
    assert!(attempts[0]["response"].as_str().unwrap().contains("SignatureDoesNotMatch"), "{v}");
    assert_eq!(app.sink.count(), 1);
    app.stop().await;
}

fn mailgun_fake(req: &HttpRequest) -> epistle_testkit::http::Answer {
    let auth = format!("Basic {}", base64_encode("api:key-mg-123"));
    if req.header("authorization") != Some(auth.as_str()) {
        return (401, vec![], "Forbidden".into());
    }
    let body = req.text();
    let ok = req.method == "POST"
        && req.path == "/v3/shop.example/messages.mime"
        && req.header("content-type").is_some_and(|c| c.starts_with("multipart/form-data"))
        && body.contains("name=\"to\"")
        && body.contains("name=\"message\"");
    if !ok {
        return (400, vec![], r#"{"message": "'to' and 'message' parameters are required"}"#.into());
    }
    if body.contains("throttled@") {
        return (429, vec![], r#"{"message": "Too many requests"}"#.into());
    }
    if body.contains("refused@") {
        return (400, vec![], r#"{"message": "to parameter is not a valid address"}"#.into());
    }
    (200, vec![], r#"{"id": "<20270115.1@shop.example>", "message": "Queued. Thank you."}"#.into())
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn mailgun_gets_the_mime_and_the_envelope() {
    let fake = HttpFake::start(mailgun_fake).await;
    let mut t = provider("mg", TransportKind::Mailgun, &fake.url);
    t.api_key = Some(epistle::config::Secret("key-mg-123".into()));
    let app = app_with(t, false).await;
    app.post("/v1/domains", &json!({"name": "shop.example"})).await;
    let mut m = message("jane@customer.example");
    m["bcc"] = json!(["audit@shop.example"]);
    let id = app.send(&m).await;
    let v = app.wait_status(&id, "sent").await;
    assert!(response_of(&v).contains("Queued") || response_of(&v).contains("accepted"), "{v}");
    let req = fake.requests().into_iter().next().unwrap();
    let body = req.text();
    assert!(body.contains("jane@customer.example") && body.contains("audit@shop.example"), "both envelope recipients");
    assert!(body.contains("DKIM-Signature:"), "our DKIM signature is in the MIME sent");
    assert!(!body.contains("Bcc:"), "no Bcc header in the message");

    let throttled = app.send(&message("throttled@customer.example")).await;
    let refused = app.send(&message("refused@customer.example")).await;
    app.wait_status(&throttled, "deferred").await;
    let v = app.wait_status(&refused, "bounced").await;
    assert!(response_of(&v).contains("not a valid address"), "{v}");
    app.stop().await;
}

fn sendgrid_fake(req: &HttpRequest) -> epistle_testkit::http::Answer {
    if req.header("authorization") != Some("Bearer SG.test-key") {
        return (401, vec![], r#"{"errors":[{"message":"The provided authorization grant is invalid"}]}"#.into());
    }
    let b = req.json();
    let p = &b["personalizations"][0];
    let ok = req.path == "/v3/mail/send"
        && p["to"].as_array().is_some_and(|t| !t.is_empty())
        && b["from"]["email"].is_string()
        && b["subject"].is_string()
        && b["content"].as_array().is_some_and(|c| !c.is_empty() && c.iter().all(|x| x["type"].is_string()));
    if !ok {
        return (400, vec![], r#"{"errors":[{"message":"Bad Request","field":null}]}"#.into());
    }
    if p["to"][0]["email"].as_str().is_some_and(|e| e.starts_with("refused@")) {
        return (
            400,
            vec![],
            r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#
                .into(),
        );
    }
    (202, vec![("x-message-id".into(), "sg-abc123".into())], String::new())
}

#[tokio::test]
async fn sendgrid_gets_structured_json_with_our_headers() {
    let fake = HttpFake::start(sendgrid_fake).await;
    let mut t = provider("sg", TransportKind::Sendgrid, &fake.url);
    t.api_key = Some(epistle::config::Secret("SG.test-key".into()));
    let app = app_with(t, false).await;
    let mut m = message("jane@customer.example");
    m["cc"] = json!(["Boss <boss@customer.example>"]);
    m["bcc"] = json!(["audit@shop.example"]);
    m["reply_to"] = json!("help@shop.example");
    m["headers"] = json!({"List-Unsubscribe": "<https://shop.example/u/1>"});
    m["attachments"] =
        json!([{"filename": "invoice.txt", "content_type": "text/plain", "content": base64_encode("total: 42")}]);
    let id = app.send(&m).await;
    let v = app.wait_status(&id, "sent").await;
    assert!(response_of(&v).contains("sg-abc123"), "{v}");
    let b = fake.requests()[0].json();
    let p = &b["personalizations"][0];
    assert_eq!(p["to"], json!([{"email": "jane@customer.example"}]));
    assert_eq!(p["cc"], json!([{"email": "boss@customer.example"}]));
    assert_eq!(p["bcc"], json!([{"email": "audit@shop.example"}]));
    assert_eq!(b["from"], json!({"email": "orders@shop.example", "name": "Shop"}));
    assert_eq!(b["subject"], "Your order #1042");
    assert_eq!(b["reply_to"], json!({"email": "help@shop.example"}));
    assert_eq!(b["headers"]["List-Unsubscribe"], "<https://shop.example/u/1>");
    let types: Vec<&str> = b["content"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["text/plain", "text/html"]);
    assert_eq!(b["attachments"][0]["filename"], "invoice.txt");
    assert_eq!(b["attachments"][0]["content"], base64_encode("total: 42"));

    let refused = app.send(&message("refused@customer.example")).await;
    let v = app.wait_status(&refused, "bounced").await;
    assert!(response_of(&v).contains("valid address"), "{v}");

    // Only blind recipients: one personalization each, nobody sees the other.
    let mut blind = message("x@customer.example");
    blind.as_object_mut().unwrap().remove("to");
    blind["bcc"] = json!(["a@customer.example", "b@customer.example"]);
    let id = app.send(&blind).await;
    app.wait_status(&id, "sent").await;
    let b = fake.requests().last().unwrap().json();
    assert_eq!(
        b["personalizations"],
        json!([{"to": [{"email": "a@customer.example"}]}, {"to": [{"email": "b@customer.example"}]}])
    );
    app.stop().await;
}

fn postmark_fake(req: &HttpRequest) -> epistle_testkit::http::Answer {
    if req.header("x-postmark-server-token") != Some("pm-token") {
        return (422, vec![], r#"{"ErrorCode": 10, "Message": "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}"#.into());
    }
    let b = req.json();
    let ok = req.path == "/email"
        && b["From"].is_string()
        && b["To"].is_string()
        && (b["TextBody"].is_string() || b["HtmlBody"].is_string());
    if !ok {
        return (422, vec![], r#"{"ErrorCode": 300, "Message": "Invalid email request"}"#.into());
    }
    if b["To"].as_str().unwrap().contains("inactive@") {
        return (
            422,
            vec![],
            r#"{"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive."}"#
                .into(),
        );
    }
    (200, vec![], r#"{"ErrorCode": 0, "Message": "OK", "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"}"#.into())
}

#[tokio::test]
async fn postmark_maps_its_error_codes() {
    let fake = HttpFake::start(postmark_fake).await;
    let mut t = provider("pm", TransportKind::Postmark, &fake.url);
    t.api_key = Some(epistle::config::Secret("pm-token".into()));
    t.message_stream = Some("outbound".into());
    let app = app_with(t, false).await;
    let id = app.send(&message("jane@customer.example")).await;
    let v = app.wait_status(&id, "sent").await;
    assert!(response_of(&v).contains("b7bc2f4a"), "{v}");
    let b = fake.requests()[0].json();
    assert_eq!(b["From"], "\"Shop\" <orders@shop.example>");
    assert_eq!(b["To"], "jane@customer.example");
    assert_eq!(b["MessageStream"], "outbound");
    assert_eq!(b["TextBody"].as_str().map(str::trim), Some("Thanks for your order."));
    assert!(b["HtmlBody"].as_str().unwrap().contains("<p>Thanks for your order.</p>"));

    let inactive = app.send(&message("inactive@customer.example")).await;
    let v = app.wait_status(&inactive, "bounced").await;
    assert!(response_of(&v).contains("406"), "{v}");

    // Only blind recipients: one message each.
    let before = fake.requests().len();
    let mut blind = message("x@customer.example");
    blind.as_object_mut().unwrap().remove("to");
    blind["bcc"] = json!(["a@customer.example", "b@customer.example"]);
    let id = app.send(&blind).await;
    app.wait_status(&id, "sent").await;
    let sent: Vec<Value> = fake.requests()[before..].iter().map(|r| r.json()).collect();
    let to: Vec<&str> = sent.iter().map(|b| b["To"].as_str().unwrap()).collect();
    assert_eq!(to, vec!["a@customer.example", "b@customer.example"]);
    assert!(sent.iter().all(|b| b.get("Bcc").is_none()));
    app.stop().await;

    // A wrong token is not the message's fault: fail over.
    let fake = HttpFake::start(postmark_fake).await;
    let mut t = provider("pm", TransportKind::Postmark, &fake.url);
    t.api_key = Some(epistle::config::Secret("wrong".into()));
    let app = app_with(t, true).await;
    let id = app.send(&message("jane@customer.example")).await;
    let v = app.wait_status(&id, "sent").await;
    assert_eq!(v["attempts"].as_array().unwrap().last().unwrap()["transport"], "backup", "{v}");
    wait_for("the fake to have seen the try", WAIT, || async { (!fake.requests().is_empty()).then_some(()) }).await;
    app.stop().await;
}
