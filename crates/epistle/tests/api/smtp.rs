//! The SMTP submission listener, spoken to by a real SMTP client (ours,
//! with pipelining, STARTTLS and AUTH) and by a raw line client for the
//! error paths.

use std::time::Duration;

use epistle_deliver::smtp::client::{SmtpConnection, SmtpSettings, Timeouts, TlsMode};
use epistle_deliver::smtp::tls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::*;

const MAIL: &[u8] = b"From: Shop <orders@shop.example>\r\nTo: Jane <jane@example.com>\r\nBcc: secret@example.com\r\nSubject: Via SMTP\r\n\r\nHello.\r\n.leading dot\r\n..two\r\n";

fn settings(port: u16, tls_mode: TlsMode, password: Option<&str>, ca: Option<&str>) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port,
        tls: tls_mode,
        username: password.map(|_| "anything".into()),
        password: password.map(str::to_string),
        helo_name: "client.test".into(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data: Duration::from_secs(5),
        },
        connector: ca.map(|pem| tls::connector(Some(pem)).unwrap()),
        connect_addr: None,
    }
}

fn smtp_port(app: &TestApp) -> u16 {
    app.app.as_ref().unwrap().smtp_addr.expect("smtp listener").port()
}

#[tokio::test]
async fn authenticated_submission_is_relayed_intact() {
    let app = spawn_app().await;
    let mut c = SmtpConnection::connect(&settings(smtp_port(&app), TlsMode::None, Some(KEY), None)).await.unwrap();
    let rcpts = vec!["jane@example.com".to_string(), "secret@example.com".to_string()];
    let r = c.send("orders@shop.example", &rcpts, MAIL).await.unwrap();
    let reply = r.data.expect("DATA reply");
    assert_eq!(reply.code, 250, "{reply}");
    let id = reply.text.split_whitespace().last().unwrap().to_string();
    assert!(id.starts_with("msg_"), "{reply}");

    // 250 means committed: the message is there at once.
    let v = app.get_json(&format!("/v1/messages/{id}")).await;
    assert_eq!(v["subject"], "Via SMTP");
    assert_eq!(v["from"], "Shop <orders@shop.example>");
    let kinds: Vec<_> =
        v["recipients"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, vec!["to", "bcc"]);

    let got = app.sink.wait_count(1, WAIT).await;
    let text = got[0].text();
    assert!(text.starts_with("Received: from client.test (127.0.0.1)"), "{text}");
    assert!(text.contains("with ESMTPA"), "{text}");
    assert!(text.contains("\r\nMessage-ID: <") && text.contains("\r\nDate: "), "added when missing: {text}");
    assert!(!text.contains("secret@example.com"), "the Bcc header is removed");
    assert!(text.ends_with("Hello.\r\n.leading dot\r\n..two\r\n"), "dot-stuffing undone and redone: {text:?}");
    app.wait_status(&id, "sent").await;
    app.stop().await;
}

/// Mail taken over SMTP is checked against the suppression list before it
/// goes (the SMTP path has no check at accept): a suppressed address, in
/// any case, is not sent to; the other recipient is.
#[tokio::test]
async fn suppressed_addresses_are_not_sent_mail_taken_over_smtp() {
    let app = spawn_app().await;
    let r = app.post("/v1/suppressions", &serde_json::json!({"email": "gone@example.com"})).await;
    assert_eq!(r.status(), 201);
    let mut c = SmtpConnection::connect(&settings(smtp_port(&app), TlsMode::None, Some(KEY), None)).await.unwrap();
    let rcpts = vec!["Gone@Example.com".to_string(), "jane@example.com".to_string()];
    let r = c.send("orders@shop.example", &rcpts, MAIL).await.unwrap();
    let reply = r.data.expect("DATA reply");
    assert_eq!(reply.code, 250, "{reply}");
    let id = reply.text.split_whitespace().last().unwrap().to_string();
    let v = app.wait_status(&id, "suppressed").await;
    let status = |email: &str| {
        v["recipients"].as_array().unwrap().iter().find(|r| r["email"] == email).expect("recipient")["status"].clone()
    };
    // (The domain is kept in lower case, the local part as given.)
    assert_eq!(status("Gone@example.com"), "suppressed", "{v}");
    assert_eq!(status("jane@example.com"), "sent", "{v}");
    let sent_to: Vec<String> = app.sink.received().iter().flat_map(|r| r.rcpts.clone()).collect();
    assert_eq!(sent_to, vec!["jane@example.com".to_string()]);
    app.stop().await;
}

#[tokio::test]
async fn starttls_then_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let ca = ck.cert.pem();
    let app = spawn(Options { smtp_tls: Some((cert, key)), ..Default::default() }).await;
    let mut c =
        SmtpConnection::connect(&settings(smtp_port(&app), TlsMode::StartTls, Some(KEY), Some(&ca))).await.unwrap();
    let r = c.send("orders@shop.example", &["jane@example.com".into()], MAIL).await.unwrap();
    assert_eq!(r.data.unwrap().code, 250);
    let got = app.sink.wait_count(1, WAIT).await;
    assert!(got[0].text().contains("with ESMTPSA"));
    app.stop().await;
}

/// A raw SMTP line client for the error paths.
struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(port: u16) -> Self {
        let (r, w) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
        let mut raw = Self { r: BufReader::new(r), w };
        assert!(raw.reply().await.starts_with("220 "));
        raw
    }
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).await.unwrap();
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }
    async fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }
}

#[tokio::test]
async fn refusals_have_the_right_codes() {
    let app = spawn(Options {
        tweak: |c| {
            c.smtp.max_message_bytes = 2048;
            c.smtp.max_recipients = 2;
        },
        ..Default::default()
    })
    .await;
    let port = smtp_port(&app);
    let mut s = Raw::connect(port).await;
    assert!(s.cmd("MAIL FROM:<a@shop.example>").await.starts_with("503 5.5.1"), "EHLO first");
    let ehlo = s.cmd("EHLO client.test").await;
    for cap in ["PIPELINING", "8BITMIME", "SIZE 2048", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"] {
        assert!(ehlo.contains(cap), "{cap} in {ehlo}");
    }
    assert!(s.cmd("RCPT TO:<jane@example.com>").await.starts_with("503 5.5.1"), "MAIL first");
    assert!(s.cmd("MAIL FROM:<a@shop.example> SIZE=999999").await.starts_with("552 5.3.4"));
    assert!(s.cmd("MAIL FROM:<not an address>").await.starts_with("501 5.1.7"));
    assert!(s.cmd("MAIL FROM:a@shop.example").await.starts_with("501 5.5.4"));
    assert!(s.cmd("MAIL FROM:<a@shop.example>").await.starts_with("250 2.1.0"));
    assert!(s.cmd("RCPT TO:<jane@example.com>").await.starts_with("554 5.7.1"), "no AUTH, not trusted: relay denied");
    let bad = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "\0u\0ep_wrong");
    assert!(s.cmd("RSET").await.starts_with("250"));
    assert!(s.cmd(&format!("AUTH PLAIN {bad}")).await.starts_with("535 5.7.8"));
    let good = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("\0u\0{KEY}"));
    assert!(s.cmd(&format!("AUTH PLAIN {good}")).await.starts_with("235 2.7.0"));
    assert!(s.cmd("MAIL FROM:<a@shop.example>").await.starts_with("250"));
    assert!(s.cmd("RCPT TO:<bad@>").await.starts_with("501 5.1.3"));
    assert!(s.cmd("RCPT TO:<one@example.com>").await.starts_with("250"));
    assert!(s.cmd("RCPT TO:<two@example.com>").await.starts_with("250"));
    assert!(s.cmd("RCPT TO:<three@example.com>").await.starts_with("452 4.5.3"));
    assert!(s.cmd("DATA").await.starts_with("354"));
    s.send_raw(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(3000)).as_bytes()).await;
    assert!(s.reply().await.starts_with("552 5.3.4"), "too big after DATA");
    assert!(s.cmd("DATA").await.starts_with("503"), "the transaction was reset");
    assert!(s.cmd("BOGUS").await.starts_with("500 5.5.2"));
    assert!(s.cmd("STARTTLS").await.starts_with("502 5.5.1"), "no certificate configured");
    assert!(s.cmd("BDAT 10 LAST").await.starts_with("502 5.5.1"));
    assert!(s.cmd("AUTH PLAIN x").await.starts_with("503 5.5.1"), "already authenticated");
    assert!(s.cmd("EHLO").await.starts_with("501 5.5.4"), "EHLO needs a name");
    assert!(s.cmd(&format!("NOOP {}", "x".repeat(10_000))).await.starts_with("500 5.5.6"), "overlong line");
    assert!(s.cmd("NOOP").await.starts_with("250"), "and the session goes on");

    // AUTH errors on a fresh session.
    let mut s = Raw::connect(port).await;
    s.cmd("EHLO client.test").await;
    assert!(s.cmd("AUTH CRAM-MD5").await.starts_with("504 5.5.4"));
    assert!(s.cmd("AUTH PLAIN !!!notbase64").await.starts_with("501 5.5.2"));
    assert!(s.cmd("AUTH PLAIN dXNlcm5hbWU=").await.starts_with("501 5.5.2"), "base64 without the two NULs");
    assert!(s.cmd("AUTH LOGIN").await.starts_with("334"));
    assert!(s.cmd("dXNlcg==").await.starts_with("334"));
    assert!(s.cmd("!!!").await.starts_with("501 5.5.2"));
    assert!(s.cmd("AUTH LOGIN").await.starts_with("334"));
    assert!(s.cmd("dXNlcg==").await.starts_with("334"));
    let wrong = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ep_wrong");
    assert!(s.cmd(&wrong).await.starts_with("535 5.7.8"));
    assert!(s.cmd("QUIT").await.starts_with("221"));
    assert_eq!(app.sink.count(), 0);
    let list = app.get_json("/v1/messages").await;
    assert_eq!(list["data"], serde_json::json!([]), "nothing refused was stored");
    app.stop().await;
}

#[tokio::test]
async fn trusted_networks_relay_without_auth_and_pipelining_works() {
    let app = spawn(Options {
        tweak: |c| c.smtp.trusted_networks = epistle::config::StringList::One("127.0.0.0/8".into()),
        ..Default::default()
    })
    .await;
    let mut s = Raw::connect(smtp_port(&app)).await;
    s.cmd("EHLO client.test").await;
    // One write with the whole transaction, as a pipelining client does.
    s.send_raw(b"MAIL FROM:<a@shop.example>\r\nRCPT TO:<jane@example.com>\r\nDATA\r\n").await;
    assert!(s.reply().await.starts_with("250 2.1.0"));
    assert!(s.reply().await.starts_with("250 2.1.5"));
    assert!(s.reply().await.starts_with("354"));
    s.send_raw(b"Subject: trusted\r\n\r\nhi\r\n.\r\n").await;
    let done = s.reply().await;
    assert!(done.starts_with("250 2.0.0 Ok: queued as msg_"), "{done}");
    app.sink.wait_count(1, WAIT).await;
    app.stop().await;
}
