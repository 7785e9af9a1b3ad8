//! Provider webhooks end to end, with real cryptography: Amazon SES through
//! SNS (RSA-signed envelopes, the signing certificate fetched from a local
//! HTTP server standing in for SNS, subscription confirmation) and
//! SendGrid (ECDSA P-256 over timestamp and body). Forged, tampered and
//! replayed requests are 401 and change nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use epistle_ingest::hooks::sns;
use epistle_testkit::{HttpFake, wait_for};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use crate::helpers::*;

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:epistle-feedback";

fn fixture(name: &str) -> String {
    let path = format!("{}/../ingest/tests/fixtures/hooks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An SNS envelope as SNS would post it, signed (SignatureVersion 2) with
/// the test certificate's key.
fn sns_envelope(kind: &str, message: &str, cert_url: &str, extra: Value) -> Value {
    let mut v = json!({
        "Type": kind,
        "MessageId": format!("m-{:016x}", rand::random::<u64>()),
        "TopicArn": TOPIC,
        "Message": message,
        "Timestamp": "2027-01-15T08:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "",
        "SigningCertURL": cert_url,
    });
    if kind == "Notification" {
        v["Subject"] = json!("Amazon SES Email Event Notification");
    }
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    let env = sns::parse(v.to_string().as_bytes()).expect("a well-formed envelope");
    let pem = fixture("sns-test-key.pem");
    let der = STANDARD.decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let key = RsaKeyPair::from_pkcs8(&der).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), sns::string_to_sign(&env).as_bytes(), &mut sig).unwrap();
    v["Signature"] = json!(STANDARD.encode(sig));
    v
}

fn header_id(msg: &str) -> String {
    format!("<{}@shop.example>", msg.trim_start_matches("msg_").to_uppercase())
}

fn ses_bounce(msg: &str, email: &str) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2027-01-15T08:00:00.000Z",
                   "feedbackId": "fb-1", "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
                   "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
        "mail": {"timestamp": "2027-01-15T07:59:58.000Z", "source": "orders@shop.example", "messageId": "0102-ses",
                 "destination": [email], "headersTruncated": false,
                 "headers": [{"name": "Message-ID", "value": header_id(msg)}],
                 "commonHeaders": {"messageId": header_id(msg), "subject": "Your order #1042"}}
    })
    .to_string()
}

async fn post_json(t: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r =
        t.client.post(t.url(path)).header("content-type", "text/plain").body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ses_notifications_through_sns_are_verified_and_applied() {
    let cert = fixture("sns-test-cert.pem");
    let sns_fake = HttpFake::start(move |req| {
        if req.path.ends_with(".pem") {
            (200, vec![], cert.clone())
        } else {
            (200, vec![], "<ConfirmSubscriptionResponse/>".into())
        }
    })
    .await;
    let prefix = format!("{}/", sns_fake.url);
    let allowed = prefix.clone();
    let t = spawn(Options {
        configure: Some(Box::new(move |c| {
            c.hooks.ses_topic_arns = epistle::config::StringList::One(TOPIC.into());
            // The stand-in for SNS lives on loopback, not on sns.*.amazonaws.com.
            c.hooks.sns_cert_prefixes = epistle::config::StringList::One(allowed);
            c.hooks.sns_auto_confirm = true;
        })),
        ..Default::default()
    })
    .await;
    let cert_url = format!("{prefix}SimpleNotificationService-test.pem");
    let a = t.send(&message("gone@customer.example")).await;
    let b = t.send(&message("stays@customer.example")).await;
    t.wait_status(&a, "sent").await;
    t.wait_status(&b, "sent").await;

    // Subscribing: the confirmation is signed, and its SubscribeURL (on the
    // allowed host) is visited.
    let confirm = sns_envelope(
        "SubscriptionConfirmation",
        "You have chosen to subscribe to the topic.",
        &cert_url,
        json!({"SubscribeURL": format!("{prefix}?Action=ConfirmSubscription&Token=tok"), "Token": "tok"}),
    );
    let (status, v) = post_json(&t, "/hooks/ses", &confirm).await;
    assert_eq!((status, v["subscription"].as_str()), (200, Some("confirmed")), "{v}");
    assert!(sns_fake.requests().iter().any(|r| r.path == "/" && r.method == "GET"), "SubscribeURL visited");

    // A permanent bounce: bounced, the classifier's reason, suppressed.
    let bounce = sns_envelope("Notification", &ses_bounce(&a, "gone@customer.example"), &cert_url, json!({}));
    let (status, v) = post_json(&t, "/hooks/ses", &bounce).await;
    assert_eq!((status, v["matched"].as_u64()), (200, Some(1)), "{v}");
    t.wait_status(&a, "bounced").await;
    let m = t.get_json(&format!("/v1/messages/{a}")).await;
    let ev = m["events"].as_array().unwrap().iter().find(|e| e["type"] == "bounced").unwrap().clone();
    assert_eq!(
        (ev["data"]["reason"].as_str(), ev["data"]["provider"].as_str()),
        (Some("userunknown"), Some("ses")),
        "{ev}"
    );
    let s = t.get_json("/v1/suppressions?email=gone@customer.example").await;
    assert_eq!(
        (s["data"][0]["reason"].as_str(), s["data"][0]["source"].as_str()),
        (Some("hard_bounce"), Some("ses")),
        "{s}"
    );

    // Tampered: the Message changed after signing (b instead of a).
    let mut tampered = sns_envelope("Notification", &ses_bounce(&b, "stays@customer.example"), &cert_url, json!({}));
    tampered["Message"] = json!(ses_bounce(&b, "stays@customer.example").replace("Permanent", "Transient"));
    let (status, _) = post_json(&t, "/hooks/ses", &tampered).await;
    assert_eq!(status, 401);
    // A certificate anywhere else is not fetched, let alone trusted.
    let elsewhere = sns_envelope(
        "Notification",
        &ses_bounce(&b, "stays@customer.example"),
        "https://evil.example/x.pem",
        json!({}),
    );
    let (status, _) = post_json(&t, "/hooks/ses", &elsewhere).await;
    assert_eq!(status, 401);
    // Another topic, signed properly, is not ours.
    let mut other = sns_envelope("Notification", &ses_bounce(&b, "stays@customer.example"), &cert_url, json!({}));
    other["TopicArn"] = json!("arn:aws:sns:eu-west-1:999999999999:someone-else");
    let (status, _) = post_json(&t, "/hooks/ses", &other).await;
    assert_eq!(status, 401);
    assert_eq!(t.get_json(&format!("/v1/messages/{b}")).await["status"], "sent", "refused hooks changed nothing");
    assert_eq!(sns_fake.requests().iter().filter(|r| r.path.ends_with(".pem")).count(), 1, "the certificate is cached");
    t.stop().await;
}

/// DER header of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

#[tokio::test]
async fn sendgrid_events_are_verified_and_applied() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(key.public_key().as_ref());
    let public = STANDARD.encode(spki);
    let t = spawn(Options {
        configure: Some(Box::new(move |c| c.hooks.sendgrid_public_key = Some(public))),
        ..Default::default()
    })
    .await;
    let a = t.send(&message("jane@customer.example")).await;
    let b = t.send(&message("spam@customer.example")).await;
    t.wait_status(&a, "sent").await;
    t.wait_status(&b, "sent").await;
    let ts = (START_MS / 1000).to_string();
    let sign = |body: &[u8]| {
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(body);
        STANDARD.encode(key.sign(&rng, &signed).unwrap().as_ref())
    };
    let post = |body: Vec<u8>, sig: String, ts: String| {
        let req = t
            .client
            .post(t.url("/hooks/sendgrid"))
            .header("content-type", "application/json")
            .header("X-Twilio-Email-Event-Webhook-Signature", sig)
            .header("X-Twilio-Email-Event-Webhook-Timestamp", ts)
            .body(body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // SendGrid's batch, as its documentation shows it: our id comes back
    // as a custom argument or in smtp-id.
    let body = serde_json::to_vec(&json!([
        {"email": "jane@customer.example", "timestamp": START_MS / 1000, "smtp-id": header_id(&a),
         "event": "delivered", "response": "250 2.0.0 OK", "sg_event_id": "e1", "sg_message_id": "sg1.filter"},
        {"email": "spam@customer.example", "timestamp": START_MS / 1000, "epistle_id": b,
         "event": "spamreport", "sg_event_id": "e2", "sg_message_id": "sg2.filter"},
        {"email": "jane@customer.example", "timestamp": START_MS / 1000, "event": "processed", "sg_event_id": "e3"}
    ]))
    .unwrap();

    // Tampered first: one byte of the body changed.
    let mut forged = body.clone();
    let at = forged.iter().position(|c| *c == b'j').unwrap();
    forged[at] = b'J';
    assert_eq!(post(forged, sign(&body), ts.clone()).await, 401);
    // Stale: a signature over an old timestamp.
    let old = (START_MS / 1000 - 3600).to_string();
    assert_eq!(post(body.clone(), sign(&body), old).await, 401);
    assert_eq!(t.get_json(&format!("/v1/messages/{a}")).await["status"], "sent");

    let sig = sign(&body);
    assert_eq!(post(body.clone(), sig.clone(), ts.clone()).await, 200);
    t.wait_status(&a, "delivered").await;
    t.wait_status(&b, "complained").await;
    let s = t.get_json("/v1/suppressions?email=spam@customer.example").await;
    assert_eq!(s["data"][0]["reason"], "complaint", "{s}");
    // The same request again is a replay.
    assert_eq!(post(body, sig, ts).await, 401);
    wait_for("the complaint event", WAIT, || async {
        let v = t.get_json(&format!("/v1/messages/{b}")).await;
        v["events"].as_array().unwrap().iter().any(|e| e["type"] == "complained").then_some(())
    })
    .await;
    t.stop().await;
}
