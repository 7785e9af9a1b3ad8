//! Mail that comes back to the bounce domain, over real SMTP: real-world
//! DSNs, ARF complaints and auto-replies from the bounce corpus (`tests/corpora/bounces`), sent to
//! the VERP return path each recipient went out with, move that recipient
//! and suppress where they should; `mailto:` unsubscribes work; forged
//! addresses are refused.

use std::time::Duration;

use epistle_deliver::smtp::client::{SmtpConnection, SmtpSettings, Timeouts, TlsMode};
use serde_json::{Value, json};

use crate::helpers::*;

const BOUNCE_DOMAIN: &str = "bounces.shop.example";

fn with_bounce_domain(cfg: &mut epistle::config::Config) {
    cfg.feedback.bounce_domain = Some(BOUNCE_DOMAIN.into());
}

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/../../tests/corpora/bounces/eml/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn client(t: &TestApp, password: Option<&str>) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port: t.app.as_ref().unwrap().smtp_addr.expect("smtp listener").port(),
        tls: TlsMode::None,
        username: password.map(|_| "k".to_string()),
        password: password.map(str::to_string),
        helo_name: "mx.receiver.example".into(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            command: Duration::from_secs(5),
            data: Duration::from_secs(5),
        },
        connector: None,
        connect_addr: None,
    }
}

/// An unauthenticated client, as a receiving mail system returning mail is.
async fn deliver(t: &TestApp, from: &str, to: &str, data: &[u8]) -> (u16, String) {
    let settings = client(t, None);
    let mut c = SmtpConnection::connect(&settings).await.unwrap();
    let r = c.send(from, &[to.to_string()], data).await.unwrap();
    if let Some(refused) = r.rcpt.iter().find(|r| !r.is_positive()) {
        return (refused.code, refused.text.clone());
    }
    let reply = r.data.expect("a DATA reply");
    (reply.code, reply.text)
}

fn broadcast(to: &str) -> Value {
    json!({
        "from": "Shop <news@shop.example>",
        "to": [to],
        "subject": "Autumn sale",
        "html": "<p>Hello!</p>",
        "text": "Hello!",
        "stream": "broadcast",
        "track_opens": false,
        "track_clicks": false
    })
}

async fn recipient_status(t: &TestApp, id: &str) -> String {
    t.get_json(&format!("/v1/messages/{id}")).await["recipients"][0]["status"].as_str().unwrap().to_string()
}

async fn event(t: &TestApp, id: &str, kind: &str) -> Option<Value> {
    let v = t.get_json(&format!("/v1/messages/{id}")).await;
    v["events"].as_array().unwrap().iter().find(|e| e["type"] == kind).cloned()
}

async fn suppression(t: &TestApp, email: &str) -> Option<Value> {
    let v = t.get_json(&format!("/v1/suppressions?email={email}")).await;
    v["data"].as_array().unwrap().first().cloned()
}

/// Sends a broadcast to each of `people`; their message ids, and what the
/// sink got once all were sent.
async fn send_to_all(t: &TestApp, people: &[&str]) -> (Vec<String>, Vec<epistle_testkit::sink::Received>) {
    let mut ids = vec![];
    for p in people {
        let id = t.send(&broadcast(p)).await;
        t.wait_status(&id, "sent").await;
        ids.push(id);
    }
    (ids, t.sink.wait_count(people.len(), WAIT).await)
}

#[tokio::test]
async fn returned_mail_moves_the_recipient_its_return_path_names() {
    let t = spawn(Options { tweak: with_bounce_domain, ..Default::default() }).await;
    let people = [
        "hard@customer.example",
        "complains@customer.example",
        "away@customer.example",
        "slow@customer.example",
        "leaves@customer.example",
        "fbl@customer.example",
    ];
    let (ids, got) = send_to_all(&t, &people).await;
    // Each went out with its own signed return path on the bounce domain,
    // and a mailto: unsubscribe there too.
    let return_path = |email: &str| {
        let m = got.iter().find(|m| m.rcpts == vec![email.to_string()]).unwrap();
        assert!(m.from.starts_with("bounce+") && m.from.ends_with(&format!("@{BOUNCE_DOMAIN}")), "{}", m.from);
        m.from.clone()
    };
    let paths: Vec<String> = people.iter().map(|p| return_path(p)).collect();
    assert_eq!(paths.iter().collect::<std::collections::HashSet<_>>().len(), paths.len(), "one return path each");

    // A real Postfix "user unknown" DSN: bounced, hard, suppressed.
    let (code, text) = deliver(&t, "", &paths[0], &corpus("lhost-postfix-14.eml")).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(recipient_status(&t, &ids[0]).await, "bounced", "250 means stored: no waiting");
    let ev = event(&t, &ids[0], "bounced").await.expect("a bounced event");
    assert_eq!(ev["data"]["reason"], "userunknown", "{ev}");
    assert_eq!(ev["data"]["hard"], true, "{ev}");
    let s = suppression(&t, people[0]).await.expect("suppressed");
    assert_eq!((s["reason"].as_str(), s["scope"].as_str()), (Some("hard_bounce"), Some("all")), "{s}");

    // An ARF abuse report (Amazon SES's feedback loop): complained, suppressed.
    let (code, text) = deliver(&t, "", &paths[1], &corpus("arf-14.eml")).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(recipient_status(&t, &ids[1]).await, "complained");
    let ev = event(&t, &ids[1], "complained").await.expect("a complained event");
    assert_eq!(ev["data"]["feedback_type"], "abuse", "{ev}");
    assert_eq!(suppression(&t, people[1]).await.expect("suppressed")["reason"], "complaint");

    // An out-of-office reply (RFC 3834): recorded, and changes nothing.
    let (code, text) = deliver(&t, "kijitora@example.net", &paths[2], &corpus("rfc3834-01.eml")).await;
    assert_eq!(code, 250, "{text}");
    assert!(event(&t, &ids[2], "auto_replied").await.is_some());
    assert_eq!(recipient_status(&t, &ids[2]).await, "sent");
    assert!(suppression(&t, people[2]).await.is_none());

    // A "still trying" DSN (Action: delayed): deferred, not bounced.
    let (code, text) = deliver(&t, "", &paths[3], &corpus("lhost-sendmail-29.eml")).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(recipient_status(&t, &ids[3]).await, "deferred");
    assert!(suppression(&t, people[3]).await.is_none());

    // The mailto: of List-Unsubscribe: unsubscribed from the stream.
    // (The header is folded; the mailto: part is on its own line.)
    let text = got.iter().find(|m| m.rcpts == vec![people[4].to_string()]).unwrap().text();
    let mailto =
        text.split("<mailto:").nth(1).expect("a mailto: unsubscribe").split(['?', '>']).next().unwrap().to_string();
    assert!(mailto.starts_with("unsubscribe+") && mailto.ends_with(BOUNCE_DOMAIN), "{mailto}");
    let request = format!("From: {}\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n", people[4]);
    let (code, text) = deliver(&t, people[4], &mailto, request.as_bytes()).await;
    assert_eq!(code, 250, "{text}");
    let s = suppression(&t, people[4]).await.expect("unsubscribed");
    assert_eq!(
        (s["reason"].as_str(), s["scope"].as_str(), s["source"].as_str()),
        (Some("unsubscribe"), Some("stream:broadcast"), Some("mailto")),
        "{s}"
    );
    assert!(event(&t, &ids[4], "unsubscribed").await.is_some());

    // A feedback-loop report sent to the role address fbl@: matched through
    // our return path quoted in the original it carries.
    let arf = String::from_utf8(corpus("arf-15.eml")).unwrap();
    let quoted = match arf.find("Content-Type: message/rfc822") {
        Some(i) => {
            let (head, tail) = arf.split_at(i);
            let cut = tail.find("\r\n\r\n").unwrap() + 4;
            format!("{head}{}Return-Path: <{}>\r\n{}", &tail[..cut], paths[5], &tail[cut..])
        }
        None => panic!("arf-15 carries the original message"),
    };
    let (code, text) = deliver(&t, "", &format!("fbl@{BOUNCE_DOMAIN}"), quoted.as_bytes()).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(recipient_status(&t, &ids[5]).await, "complained");

    // Mail the classifier cannot read is taken, and changes nothing.
    let (code, text) = deliver(
        &t,
        "someone@else.example",
        &format!("postmaster@{BOUNCE_DOMAIN}"),
        b"Subject: hello\r\n\r\nJust saying hi.\r\n",
    )
    .await;
    assert_eq!((code, text.contains("names no recipient")), (250, true), "{text}");

    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("epistle_returned_mail_total{outcome=\"bounced\"} 1"), "{metrics}");
    assert!(metrics.contains("epistle_returned_mail_total{outcome=\"unreadable\"} 1"), "{metrics}");

    // The hard-bounced and complaining addresses get nothing more.
    for p in &people[..2] {
        let r = t.post("/v1/messages", &message(p)).await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["recipients"][0]["status"], "suppressed", "{v}");
    }
    t.stop().await;
}

#[tokio::test]
async fn forged_and_unknown_bounce_addresses_are_refused_and_change_nothing() {
    let t = spawn(Options { tweak: with_bounce_domain, ..Default::default() }).await;
    let id = t.send(&broadcast("jane@customer.example")).await;
    t.wait_status(&id, "sent").await;
    let path = t.sink.wait_count(1, WAIT).await[0].from.clone();

    // One hex digit changed: nobody here.
    let mut forged = path.clone().into_bytes();
    forged[10] = if forged[10] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let (code, text) = deliver(&t, "", &forged, &corpus("lhost-postfix-14.eml")).await;
    assert_eq!(code, 550, "{text}");
    let (code, _) = deliver(&t, "", &format!("bounce+00@{BOUNCE_DOMAIN}"), &corpus("lhost-postfix-14.eml")).await;
    assert_eq!(code, 550);
    let (code, _) = deliver(&t, "", &format!("info@{BOUNCE_DOMAIN}"), &corpus("lhost-postfix-14.eml")).await;
    assert_eq!(code, 550);
    assert_eq!(recipient_status(&t, &id).await, "sent");
    assert!(suppression(&t, "jane@customer.example").await.is_none());

    // Without AUTH, other domains are still not relayed.
    let (code, text) = deliver(&t, "", "someone@elsewhere.example", b"Subject: x\r\n\r\nx\r\n").await;
    assert_eq!(code, 554, "{text}");

    // Bounce-domain mail and submitted mail do not share a transaction.
    let mut c = SmtpConnection::connect(&client(&t, Some(KEY))).await.unwrap();
    let r =
        c.send("", &[path.clone(), "other@customer.example".into()], &corpus("lhost-postfix-14.eml")).await.unwrap();
    assert_eq!(r.rcpt[0].code, 250);
    assert_eq!(r.rcpt[1].code, 452, "{:?}", r.rcpt[1]);
    assert_eq!(r.data.expect("DATA for the first").code, 250);
    assert_eq!(recipient_status(&t, &id).await, "bounced");
    t.stop().await;
}

/// An ARF report of `Feedback-Type` `type` about mail to `rcpt`, as a
/// receiving system writes one (RFC 5965; RFC 6591 for `auth-failure`).
fn report(kind: &str, rcpt: &str) -> Vec<u8> {
    let extra = if kind == "auth-failure" { "Auth-Failure: signature\r\nDKIM-Domain: shop.example\r\n" } else { "" };
    format!(
        "From: reports@receiver.example\r\nTo: postmaster@shop.example\r\nSubject: report\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nA report about a message from your domain.\r\n\
         --b1\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: {kind}\r\nUser-Agent: Receiver/1.0\r\nVersion: 1\r\n{extra}\
         Original-Rcpt-To: <{rcpt}>\r\n\r\n\
         --b1\r\nContent-Type: message/rfc822\r\n\r\n\
         From: news@shop.example\r\nTo: {rcpt}\r\nSubject: Autumn sale\r\n\r\nHello!\r\n\
         --b1--\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn reports_that_are_not_complaints_are_recorded_and_suppress_nobody() {
    let t = spawn(Options { tweak: with_bounce_domain, ..Default::default() }).await;
    let people = ["dmarc@customer.example", "rescued@customer.example", "objects@customer.example"];
    let (ids, got) = send_to_all(&t, &people).await;
    let path = |email: &str| got.iter().find(|m| m.rcpts == vec![email.to_string()]).unwrap().from.clone();

    // A receiver saying our DKIM signature failed (RFC 6591), and a
    // recipient taking the mail out of the spam folder: logged, nothing more.
    for (i, kind) in [(0, "auth-failure"), (1, "not-spam")] {
        let (code, text) = deliver(&t, "", &path(people[i]), &report(kind, people[i])).await;
        assert_eq!(code, 250, "{text}");
        let ev = event(&t, &ids[i], "feedback").await.unwrap_or_else(|| panic!("a feedback event for {kind}"));
        assert_eq!(ev["data"]["feedback_type"], kind, "{ev}");
        assert_eq!(recipient_status(&t, &ids[i]).await, "sent", "{kind}");
        assert!(event(&t, &ids[i], "complained").await.is_none(), "{kind}");
        assert!(suppression(&t, people[i]).await.is_none(), "{kind}");
    }
    // The same report saying `abuse` is a complaint.
    let (code, text) = deliver(&t, "", &path(people[2]), &report("abuse", people[2])).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(recipient_status(&t, &ids[2]).await, "complained");
    assert_eq!(suppression(&t, people[2]).await.expect("suppressed")["reason"], "complaint");

    // The new event type can be asked for.
    let v = t.get_json("/v1/messages?event=feedback").await;
    let listed: Vec<&str> = v["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(listed.contains(&ids[0].as_str()) && listed.contains(&ids[1].as_str()), "{v}");
    assert!(!listed.contains(&ids[2].as_str()), "{v}");
    t.stop().await;
}
