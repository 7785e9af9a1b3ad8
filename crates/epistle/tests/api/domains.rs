//! Sending domains and DKIM: the records to publish, verification against
//! a real DNS server, keys sealed at rest, and signatures that an
//! independent verifier (Python's dkimpy) accepts.

use std::collections::HashMap;
use std::process::Command;

use epistle_core::secret::MasterKey;
use epistle_testkit::wait_for;
use serde_json::{Value, json};

use crate::helpers::*;

fn record<'a>(d: &'a Value, purpose: &str) -> &'a Value {
    d["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["purpose"] == purpose)
        .unwrap_or_else(|| panic!("{purpose}: {d}"))
}

fn dkim_records(d: &Value) -> Vec<&Value> {
    d["records"].as_array().unwrap().iter().filter(|r| r["purpose"] == "dkim").collect()
}

async fn add(t: &TestApp, body: Value) -> Value {
    let r = t.post("/v1/domains", &body).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

/// Runs dkimpy over `raw` with the records of `domains` as DNS; returns
/// one entry per signature.
fn dkimpy(raw: &[u8], domains: &[&Value]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("message.eml");
    std::fs::write(&msg, raw).unwrap();
    let mut records = HashMap::new();
    for d in domains {
        for r in dkim_records(d) {
            records.insert(r["name"].as_str().unwrap().to_string(), r["value"].as_str().unwrap().to_string());
        }
    }
    let recs = dir.path().join("records.json");
    std::fs::write(&recs, serde_json::to_vec(&records).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkim_verify.py");
    let out = Command::new("python3").arg(script).arg(&msg).arg(&recs).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "dkimpy failed (install it with `pip install dkimpy pynacl`; .ci/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn relayed(t: &TestApp, n: usize) -> Vec<u8> {
    wait_for("the relay to receive the message", WAIT, || async {
        let got = t.sink.received();
        (got.len() >= n).then(|| got[n - 1].data.clone())
    })
    .await
}

#[tokio::test]
async fn adding_a_domain_answers_the_records_to_publish() {
    let t = spawn_app().await;
    let d = add(&t, json!({"name": "Shop.Example"})).await;
    assert_eq!(d["name"], "shop.example");
    assert_eq!(d["status"], "unverified");
    let selector = d["dkim"]["selector"].as_str().unwrap();
    assert_eq!(d["dkim"]["algorithm"], "rsa");
    let dkim = record(&d, "dkim");
    assert_eq!(dkim["type"], "TXT");
    assert_eq!(dkim["name"], format!("{selector}._domainkey.shop.example"));
    let value = dkim["value"].as_str().unwrap();
    assert!(value.starts_with("v=DKIM1; k=rsa; p=MII"), "{value}");
    // A 2048-bit key: its public key is about 390 base64 characters.
    assert!(value.len() > 380, "{value}");
    assert_eq!(dkim["status"], "unverified");
    assert_eq!(record(&d, "spf")["name"], "shop.example");
    assert_eq!(record(&d, "spf")["value"], "v=spf1 a mx ~all");
    assert_eq!(record(&d, "dmarc")["name"], "_dmarc.shop.example");
    assert!(!d.to_string().contains("PRIVATE"), "no private key in answers");

    // The same in GET and in the list.
    assert_eq!(t.get_json("/v1/domains/shop.example").await["records"], d["records"]);
    let list = t.get_json("/v1/domains").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // IDN: stored and published in punycode.
    let idn = add(&t, json!({"name": "bücher.example"})).await;
    assert_eq!(idn["name"], "xn--bcher-kva.example");
    t.stop().await;
}

#[tokio::test]
async fn the_private_key_is_sealed_with_the_master_key() {
    let t = spawn_app().await;
    add(&t, json!({"name": "shop.example", "dkim": {"algorithms": ["ed25519"]}})).await;
    let db = sqlx_any(&t).await;
    let (id, sealed): (String, Vec<u8>) =
        sqlx::query_as("SELECT id, private_key FROM dkim_keys").fetch_one(&db).await.unwrap();
    let master = MasterKey::parse(MASTER_KEY).unwrap();
    let der = master.open(&id, &sealed).expect("opens with the master key and its row id");
    // PKCS#8 DER in clear starts with a SEQUENCE; the stored form does not.
    assert_eq!(der[0], 0x30);
    assert_ne!(sealed[0], 0x30);
    assert!(!sealed.windows(16).any(|w| der.windows(16).any(|x| x == w)), "no run of the key in clear");
    let other = MasterKey::parse(&"ff".repeat(32)).unwrap();
    assert!(other.open(&id, &sealed).is_err());
    t.stop().await;
}

async fn sqlx_any(t: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&t._db.url).await.unwrap()
}

#[tokio::test]
async fn verify_reports_each_record_against_dns() {
    let t = spawn_app().await;
    let d = add(&t, json!({"name": "shop.example"})).await;
    let dkim = record(&d, "dkim").clone();

    // Nothing published yet.
    let r = t.post("/v1/domains/shop.example/verify", &json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "unverified");
    for purpose in ["dkim", "spf", "dmarc"] {
        assert_eq!(record(&v, purpose)["status"], "missing", "{purpose}: {v}");
    }
    assert!(v["checked_at"].is_string());

    // A stale DKIM key and an SPF record lacking our mechanisms.
    t.dns.txt(dkim["name"].as_str().unwrap(), "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAstale");
    t.dns.txt("shop.example", "v=spf1 include:_spf.other.example -all");
    t.dns.txt("shop.example", "google-site-verification=abc");
    let v: Value = t.post("/v1/domains/shop.example/verify", &json!({})).await.json().await.unwrap();
    let k = record(&v, "dkim");
    assert_eq!(k["status"], "mismatch", "{v}");
    assert!(k["found"][0].as_str().unwrap().ends_with("stale"));
    let spf = record(&v, "spf");
    assert_eq!(spf["status"], "mismatch");
    assert_eq!(spf["found"], json!(["v=spf1 include:_spf.other.example -all"]));
    assert!(spf["detail"].as_str().unwrap().contains("lacks a mx"), "{spf}");

    // Published right (DMARC is recommended, not required).
    t.dns.remove(dkim["name"].as_str().unwrap());
    t.dns.txt(dkim["name"].as_str().unwrap(), dkim["value"].as_str().unwrap());
    t.dns.remove("shop.example");
    t.dns.txt("shop.example", "v=spf1 ip4:192.0.2.1 a mx ~all");
    let v: Value = t.post("/v1/domains/shop.example/verify", &json!({})).await.json().await.unwrap();
    assert_eq!(record(&v, "dkim")["status"], "verified", "{v}");
    assert_eq!(record(&v, "spf")["status"], "verified");
    assert_eq!(record(&v, "dmarc")["status"], "missing");
    assert_eq!(v["status"], "verified");
    assert!(v["verified_at"].is_string());
    // The result is kept.
    assert_eq!(t.get_json("/v1/domains/shop.example").await["records"], v["records"]);

    // A DNS failure is neither verified nor missing.
    t.dns.servfail("_dmarc.shop.example");
    let v: Value = t.post("/v1/domains/shop.example/verify", &json!({})).await.json().await.unwrap();
    assert_eq!(record(&v, "dmarc")["status"], "error", "{v}");
    assert_eq!(v["status"], "verified", "DMARC is not required");
    t.stop().await;
}

#[tokio::test]
async fn mail_from_a_domain_is_signed_and_dkimpy_verifies_it() {
    let t = spawn_app().await;
    let d = add(&t, json!({"name": "shop.example", "dkim": {"algorithms": ["rsa", "ed25519"]}})).await;
    assert_eq!(dkim_records(&d).len(), 2);

    let mut body = message("jane@customer.example");
    body["cc"] = json!(["boss@customer.example"]);
    body["reply_to"] = json!("help@shop.example");
    body["headers"] = json!({"List-Unsubscribe": "<https://shop.example/u/1>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"});
    body["text"] = json!("Thanks for your order.\n\nLines with trailing space   \n\n\n");
    let id = t.send(&body).await;
    t.wait_status(&id, "sent").await;
    let raw = relayed(&t, 1).await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
    let sigs = dkimpy(&raw, &[&d]);
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    for s in &sigs {
        assert_eq!(s["ok"], true, "{s}");
        assert_eq!(s["d"], "shop.example");
    }
    let algs: Vec<&str> = sigs.iter().map(|s| s["a"].as_str().unwrap()).collect();
    assert!(algs.contains(&"rsa-sha256") && algs.contains(&"ed25519-sha256"), "{algs:?}");
    // The signed headers include those the issue lists, when present.
    let h = text.split("h=").nth(1).unwrap().split(';').next().unwrap().replace(['\r', '\n', '\t', ' '], "");
    for name in ["From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Reply-To"] {
        assert!(h.split(':').any(|x| x.eq_ignore_ascii_case(name)), "{name} not signed: h={h}");
    }
    assert!(h.split(':').any(|x| x.eq_ignore_ascii_case("List-Unsubscribe-Post")), "h={h}");

    // A tampered copy fails: the verifier is really checking.
    let tampered = text.replace("Your order #1042", "Your order #1043");
    let sigs = dkimpy(tampered.as_bytes(), &[&d]);
    assert!(sigs.iter().all(|s| s["ok"] == false), "{sigs:?}");

    // `GET …/raw` keeps what the sender gave us; signing happens on the way out.
    let stored = t.get(&format!("/v1/messages/{id}/raw")).await.bytes().await.unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("DKIM-Signature"));

    // Mail from a domain without keys goes unsigned.
    let mut other = message("jane@customer.example");
    other["from"] = json!("news@elsewhere.example");
    let id = t.send(&other).await;
    t.wait_status(&id, "sent").await;
    assert!(!String::from_utf8_lossy(&relayed(&t, 2).await).contains("DKIM-Signature"));
    t.stop().await;
}

#[tokio::test]
async fn mail_submitted_over_smtp_is_signed_too() {
    let t = spawn(Options {
        tweak: |c| c.smtp.trusted_networks = epistle::config::StringList::One("127.0.0.0/8".into()),
        ..Default::default()
    })
    .await;
    let d = add(&t, json!({"name": "shop.example"})).await;
    let addr = t.app.as_ref().unwrap().smtp_addr.unwrap();
    let data = "From: Shop <orders@shop.example>\r\nTo: jane@customer.example\r\nSubject: Over SMTP\r\n\
                Date: Thu, 14 Jan 2027 10:00:00 +0000\r\nMessage-ID: <smtp-1@shop.example>\r\n\r\nHello over SMTP.\r\n\
                \tTabbed  and  doubled \r\n  two leading, trailing tab\t\r\n\r\nlast words   \r\n \t \r\n\r\n \r\n";
    // The body has what relaxed canonicalization changes (RFC 6376 §3.4.4):
    // tabs, runs of spaces, spaces ending lines, and lines of nothing but
    // spaces and tabs at its end, which count as empty lines and go.
    smtp_send(addr, "orders@shop.example", "jane@customer.example", data).await;
    let raw = relayed(&t, 1).await;
    let sigs = dkimpy(&raw, &[&d]);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0]["ok"], true, "{sigs:?}");
    t.stop().await;
}

async fn smtp_send(addr: std::net::SocketAddr, from: &str, to: &str, data: &str) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }
    assert!(reply(&mut r).await.starts_with("220"));
    for (cmd, want) in [
        ("EHLO test.example".to_string(), "250"),
        (format!("MAIL FROM:<{from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let got = reply(&mut r).await;
        assert!(got.starts_with(want), "{cmd}: {got}");
    }
    w.write_all(format!("{data}.\r\n").as_bytes()).await.unwrap();
    let got = reply(&mut r).await;
    assert!(got.starts_with("250"), "{got}");
    w.write_all(b"QUIT\r\n").await.unwrap();
}

#[tokio::test]
async fn rotation_waits_for_the_new_record_then_switches_and_keeps_the_old_one_listed() {
    let t = spawn_app().await;
    let d = add(&t, json!({"name": "shop.example"})).await;
    let old = d["dkim"]["selector"].as_str().unwrap().to_string();
    t.advance(std::time::Duration::from_secs(86_400));
    let r = t.post("/v1/domains/shop.example/rotate", &json!({})).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    let keys = d["dkim"]["keys"].as_array().unwrap().clone();
    let new = keys.iter().find(|k| k["state"] == "pending").unwrap()["selector"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(d["dkim"]["selector"], old.as_str(), "the old key signs until the new record is seen");
    let pending_rec =
        dkim_records(&d).into_iter().find(|r| r["name"].as_str().unwrap().starts_with(&new)).unwrap().clone();
    assert_eq!(pending_rec["required"], false);
    assert!(pending_rec["detail"].as_str().unwrap().contains("once verify sees it"));

    // Meanwhile mail is signed with the old key.
    let id = t.send(&message("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let sigs = dkimpy(&relayed(&t, 1).await, &[&d]);
    assert_eq!((sigs[0]["s"].as_str(), sigs[0]["ok"].as_bool()), (Some(old.as_str()), Some(true)));

    // Verify without the new record: still pending. With it: the new key signs.
    let v: Value = t.post("/v1/domains/shop.example/verify", &json!({})).await.json().await.unwrap();
    assert_eq!(v["dkim"]["selector"], old.as_str());
    t.dns.txt(pending_rec["name"].as_str().unwrap(), pending_rec["value"].as_str().unwrap());
    let v: Value = t.post("/v1/domains/shop.example/verify", &json!({})).await.json().await.unwrap();
    assert_eq!(v["dkim"]["selector"], new.as_str(), "{v}");
    let old_key = v["dkim"]["keys"].as_array().unwrap().iter().find(|k| k["selector"] == old.as_str()).unwrap().clone();
    assert_eq!((old_key["state"].as_str(), old_key["signing"].as_bool()), (Some("retired"), Some(false)));
    assert!(old_key["retired_at"].is_string());
    let recs = dkim_records(&v);
    assert_eq!(recs.len(), 2, "the old record stays listed");
    let old_rec = recs.iter().find(|r| r["name"].as_str().unwrap().starts_with(&old)).unwrap();
    assert_eq!(old_rec["required"], false);
    assert!(old_rec["detail"].as_str().unwrap().contains("retired"));

    let id = t.send(&message("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let sigs = dkimpy(&relayed(&t, 2).await, &[&v]);
    assert_eq!(sigs.len(), 1);
    assert_eq!((sigs[0]["s"].as_str(), sigs[0]["ok"].as_bool()), (Some(new.as_str()), Some(true)));

    // The retired key can then be removed; a signing key cannot.
    let r = t.delete(&format!("/v1/domains/shop.example/keys/{new}")).await;
    assert_eq!(r.status(), 409);
    let r = t.delete(&format!("/v1/domains/shop.example/keys/{old}")).await;
    assert_eq!(r.status(), 204);
    assert_eq!(dkim_records(&t.get_json("/v1/domains/shop.example").await).len(), 1);

    // An immediate rotation switches at once.
    t.advance(std::time::Duration::from_secs(86_400));
    let v: Value = t.post("/v1/domains/shop.example/rotate", &json!({"immediate": true})).await.json().await.unwrap();
    assert_ne!(v["dkim"]["selector"], new.as_str());
    assert!(v["dkim"]["keys"].as_array().unwrap().iter().all(|k| k["state"] != "pending"), "{v}");

    // Deleting the domain stops signing.
    assert_eq!(t.delete("/v1/domains/shop.example").await.status(), 204);
    assert_eq!(t.get("/v1/domains/shop.example").await.status(), 404);
    let id = t.send(&message("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    assert!(!String::from_utf8_lossy(&relayed(&t, 3).await).contains("DKIM-Signature"));
    t.stop().await;
}

#[tokio::test]
async fn bad_domain_requests_get_clear_errors() {
    let t = spawn_app().await;
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (json!({}), 422, Some("name")),
        (json!({"name": ""}), 422, Some("name")),
        (json!({"name": "localhost"}), 422, Some("name")),
        (json!({"name": "shop .example"}), 422, Some("name")),
        (json!({"name": "shop.example\r\nX: y"}), 422, Some("name")),
        (json!({"name": "[192.0.2.1]"}), 422, Some("name")),
        (json!({"name": 42}), 422, Some("name")),
        (json!({"name": "shop.example", "dkim": {"algorithms": ["dsa"]}}), 422, Some("dkim.algorithms[0]")),
        (json!({"name": "shop.example", "dkim": {"algorithm": "rsa"}}), 422, Some("dkim.algorithm")),
        (json!({"name": "shop.example", "selector": "x"}), 422, None),
    ];
    for (body, status, field) in cases {
        let r = t.post("/v1/domains", &body).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        if let Some(f) = field {
            assert_eq!(v["error"]["field"], f, "{body}: {v}");
        }
    }
    let r = t
        .client
        .post(t.url("/v1/domains"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    add(&t, json!({"name": "shop.example"})).await;
    let r = t.post("/v1/domains", &json!({"name": "SHOP.example"})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(t.post("/v1/domains/nowhere.example/verify", &json!({})).await.status(), 404);
    assert_eq!(t.post("/v1/domains/nowhere.example/rotate", &json!({})).await.status(), 404);
    assert_eq!(t.get("/v1/domains/nowhere.example").await.status(), 404);
    assert_eq!(t.delete("/v1/domains/nowhere.example").await.status(), 404);
    let r = t.post("/v1/domains/shop.example/rotate", &json!({"algorithm": "dsa"})).await;
    assert_eq!(r.status(), 422);
    // Without the scope.
    let r = t.client.get(t.url("/v1/domains")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    t.stop().await;
}
