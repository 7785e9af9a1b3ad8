//! Amazon SES feedback delivered by SNS HTTP(S) subscriptions.
//!
//! SNS signs each envelope with RSA; the certificate is fetched from the
//! envelope's own `SigningCertURL`, so that URL must first be pinned to AWS
//! ([`check_cert_url`]) or an attacker could sign with a certificate of their
//! choosing. The caller's sequence for each POST is:
//!
//! 1. [`parse`] the body;
//! 2. [`check_cert_url`] on `signing_cert_url`, then fetch it (cache by URL);
//! 3. [`verify`] the envelope against that PEM;
//! 4. for `SubscriptionConfirmation`, GET `subscribe_url` once (if the topic
//!    is expected); for `Notification`, [`ses_events`] on `message`.
//!
//! To be matched back to our message, sends should carry an `X-Epistle-Id`
//! header (SES must be configured to include original headers); otherwise
//! the Message-ID header is used.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey, VerificationAlgorithm,
};
use serde_json::Value;
use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;

use super::{
    FeedbackEvent, FeedbackKind, HookError, MessageRef, bad_request, json, normalize_address, rfc3339_ms, str_field,
    strip_angles, unauthorized,
};

const PROVIDER: &str = "ses";

/// The `Type` of an SNS envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

/// An SNS HTTP message, fields as SNS names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsEnvelope {
    pub kind: SnsKind,
    pub message_id: String,
    pub topic_arn: String,
    pub message: String,
    pub subject: Option<String>,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    pub signing_cert_url: String,
    /// Present on (Un)SubscriptionConfirmation.
    pub subscribe_url: Option<String>,
    /// Present on (Un)SubscriptionConfirmation.
    pub token: Option<String>,
}

/// Reads an SNS envelope. Nothing is trusted yet: see [`verify`].
pub fn parse(body: &[u8]) -> Result<SnsEnvelope, HookError> {
    let doc = json(body)?;
    if !doc.is_object() {
        return Err(bad_request("SNS body is not a JSON object"));
    }
    let required = |key: &str| {
        doc.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad_request(format!("SNS field {key} missing")))
    };
    let optional = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
    let kind = match required("Type")?.as_str() {
        "Notification" => SnsKind::Notification,
        "SubscriptionConfirmation" => SnsKind::SubscriptionConfirmation,
        "UnsubscribeConfirmation" => SnsKind::UnsubscribeConfirmation,
        other => return Err(bad_request(format!("unknown SNS Type {other:?}"))),
    };
    let env = SnsEnvelope {
        kind,
        message_id: required("MessageId")?,
        topic_arn: required("TopicArn")?,
        message: required("Message")?,
        subject: optional("Subject"),
        timestamp: required("Timestamp")?,
        signature_version: required("SignatureVersion")?,
        signature: required("Signature")?,
        signing_cert_url: required("SigningCertURL")?,
        subscribe_url: optional("SubscribeURL"),
        token: optional("Token"),
    };
    if kind != SnsKind::Notification && (env.subscribe_url.is_none() || env.token.is_none()) {
        return Err(bad_request("SNS confirmation without SubscribeURL or Token"));
    }
    Ok(env)
}

/// Refuses a `SigningCertURL` that is not an AWS SNS certificate.
///
/// With no `allowed_prefixes`, the URL must be exactly
/// `https://sns.<region>.amazonaws.com/<path>.pem`: the host is compared as a
/// whole, so look-alike hosts, ports and `user@host` tricks fail. With
/// prefixes (tests, private deployments), it must start with one of them.
/// Either way it must end in `.pem`.
pub fn check_cert_url(url: &str, allowed_prefixes: &[String]) -> Result<(), HookError> {
    let refuse = || unauthorized(format!("untrusted SigningCertURL {url:?}"));
    if !url.ends_with(".pem") || url.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err(refuse());
    }
    if !allowed_prefixes.is_empty() {
        return if allowed_prefixes.iter().any(|p| !p.is_empty() && url.starts_with(p.as_str())) {
            Ok(())
        } else {
            Err(refuse())
        };
    }
    let rest = url.strip_prefix("https://").ok_or_else(refuse)?;
    let (host, path) = rest.split_once('/').ok_or_else(refuse)?;
    let region = host.strip_prefix("sns.").and_then(|h| h.strip_suffix(".amazonaws.com")).ok_or_else(refuse)?;
    let region_ok = !region.is_empty() && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let path_ok = path.len() > ".pem".len() && !path.contains(['?', '#']);
    if region_ok && path_ok { Ok(()) } else { Err(refuse()) }
}

/// The canonical text SNS signs: selected `Key\nvalue\n` pairs in byte order
/// of the key names.
pub fn string_to_sign(env: &SnsEnvelope) -> String {
    let ty = match env.kind {
        SnsKind::Notification => "Notification",
        SnsKind::SubscriptionConfirmation => "SubscriptionConfirmation",
        SnsKind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
    };
    let mut pairs: Vec<(&str, &str)> = vec![("Message", &env.message), ("MessageId", &env.message_id)];
    match env.kind {
        SnsKind::Notification => {
            if let Some(subject) = &env.subject {
                pairs.push(("Subject", subject));
            }
            pairs.extend([("Timestamp", env.timestamp.as_str()), ("TopicArn", &env.topic_arn), ("Type", ty)]);
        }
        SnsKind::SubscriptionConfirmation | SnsKind::UnsubscribeConfirmation => {
            pairs.extend([
                ("SubscribeURL", env.subscribe_url.as_deref().unwrap_or_default()),
                ("Timestamp", &env.timestamp),
                ("Token", env.token.as_deref().unwrap_or_default()),
                ("TopicArn", &env.topic_arn),
                ("Type", ty),
            ]);
        }
    }
    pairs.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect()
}

/// Verifies the envelope's RSA PKCS#1 v1.5 signature with the certificate at
/// its `SigningCertURL` (already checked with [`check_cert_url`] and fetched
/// by the caller). SignatureVersion "1" is SHA-1, "2" is SHA-256; the
/// certificate must be valid at `now_ms`.
pub fn verify(env: &SnsEnvelope, cert_pem: &[u8], now_ms: i64) -> Result<(), HookError> {
    let alg: &'static dyn VerificationAlgorithm = match env.signature_version.as_str() {
        "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        "2" => &RSA_PKCS1_2048_8192_SHA256,
        other => return Err(unauthorized(format!("unsupported SignatureVersion {other:?}"))),
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem).map_err(|_| unauthorized("signing certificate is not PEM"))?;
    if pem.label != "CERTIFICATE" {
        return Err(unauthorized("signing PEM is not a certificate"));
    }
    let cert = pem.parse_x509().map_err(|_| unauthorized("signing certificate is not X.509"))?;
    let validity = cert.validity();
    let now_s = now_ms.div_euclid(1000);
    if now_s < validity.not_before.timestamp() || now_s > validity.not_after.timestamp() {
        return Err(unauthorized("signing certificate is not valid now"));
    }
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
        return Err(unauthorized("signing certificate key is not RSA"));
    }
    let signature = STANDARD.decode(env.signature.trim()).map_err(|_| unauthorized("Signature is not base64"))?;
    // For rsaEncryption the BIT STRING holds the PKCS#1 RSAPublicKey ring expects.
    UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(string_to_sign(env).as_bytes(), &signature)
        .map_err(|_| unauthorized("SNS signature mismatch"))
}

/// Maps the SES notification carried in a verified envelope's `Message`
/// (identity notifications use `notificationType`, configuration-set event
/// publishing uses `eventType`). Types we do not track give an empty Vec;
/// recipients without an address are skipped.
pub fn ses_events(message: &str) -> Result<Vec<FeedbackEvent>, HookError> {
    let doc = json(message.as_bytes())?;
    let ty = str_field(&doc, "notificationType")
        .or_else(|| str_field(&doc, "eventType"))
        .ok_or_else(|| bad_request("SES notification without a type"))?;
    let mail = doc.get("mail").filter(|m| m.is_object()).ok_or_else(|| bad_request("SES notification without mail"))?;
    let message_ref = message_ref(mail);
    let section =
        |key: &str| doc.get(key).filter(|s| s.is_object()).ok_or_else(|| bad_request(format!("{key} missing")));
    let event = |recipient: &str, kind: FeedbackKind, detail: Option<&str>, at: Option<i64>| FeedbackEvent {
        provider: PROVIDER,
        message: message_ref.clone(),
        recipient: normalize_address(recipient),
        kind,
        detail: detail.unwrap_or_default().to_owned(),
        at,
    };
    let entries =
        |v: &Value, key: &str| -> Vec<Value> { v.get(key).and_then(Value::as_array).cloned().unwrap_or_default() };

    let events = match ty {
        "Bounce" => {
            let b = section("bounce")?;
            // Transient and Undetermined arrive after SES stopped trying: soft, but final.
            let hard = str_field(b, "bounceType") == Some("Permanent");
            let at = str_field(b, "timestamp").and_then(rfc3339_ms);
            let sub_type = str_field(b, "bounceSubType");
            entries(b, "bouncedRecipients")
                .iter()
                .filter_map(|r| {
                    let detail = str_field(r, "diagnosticCode").or_else(|| str_field(r, "status")).or(sub_type);
                    Some(event(str_field(r, "emailAddress")?, FeedbackKind::Bounced { hard }, detail, at))
                })
                .collect()
        }
        "Complaint" => {
            let c = section("complaint")?;
            let at = str_field(c, "timestamp").and_then(rfc3339_ms);
            let detail = str_field(c, "complaintFeedbackType");
            entries(c, "complainedRecipients")
                .iter()
                .filter_map(|r| {
                    let kind = match detail {
                        Some(t) if !epistle_mail::bounce::is_complaint(t) => {
                            FeedbackKind::Feedback { feedback_type: t.to_string() }
                        }
                        _ => FeedbackKind::Complained,
                    };
                    Some(event(str_field(r, "emailAddress")?, kind, detail, at))
                })
                .collect()
        }
        "Delivery" => {
            let d = section("delivery")?;
            let at = str_field(d, "timestamp").and_then(rfc3339_ms);
            let detail = str_field(d, "smtpResponse");
            entries(d, "recipients")
                .iter()
                .filter_map(|r| Some(event(r.as_str()?, FeedbackKind::Delivered, detail, at)))
                .collect()
        }
        "DeliveryDelay" => {
            let d = section("deliveryDelay")?;
            let at = str_field(d, "timestamp").and_then(rfc3339_ms);
            let delay_type = str_field(d, "delayType");
            entries(d, "delayedRecipients")
                .iter()
                .filter_map(|r| {
                    let detail = str_field(r, "diagnosticCode").or_else(|| str_field(r, "status")).or(delay_type);
                    Some(event(str_field(r, "emailAddress")?, FeedbackKind::Deferred, detail, at))
                })
                .collect()
        }
        "Open" | "Click" => {
            let (key, kind) = if ty == "Open" {
                ("open", FeedbackKind::Opened)
            } else {
                let url = doc.get("click").and_then(|c| str_field(c, "link")).unwrap_or_default();
                ("click", FeedbackKind::Clicked { url: url.to_owned() })
            };
            let at = section(key)?.get("timestamp").and_then(Value::as_str).and_then(rfc3339_ms);
            entries(mail, "destination")
                .iter()
                .filter_map(|r| Some(event(r.as_str()?, kind.clone(), None, at)))
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(events)
}

/// `X-Epistle-Id` from the original headers, else the Message-ID.
fn message_ref(mail: &Value) -> Option<MessageRef> {
    let ours = mail.get("headers").and_then(Value::as_array).and_then(|headers| {
        headers.iter().find_map(|h| {
            let name = str_field(h, "name")?;
            name.eq_ignore_ascii_case("X-Epistle-Id").then(|| str_field(h, "value")).flatten()
        })
    });
    if let Some(id) = ours {
        return Some(MessageRef::EpistleId(id.trim().to_owned()));
    }
    let id = mail.get("commonHeaders").and_then(|c| str_field(c, "messageId")).map(strip_angles)?;
    (!id.is_empty()).then_some(MessageRef::HeaderMessageId(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    use serde_json::json;

    const CERT: &[u8] = include_bytes!("../../tests/fixtures/hooks/sns-test-cert.pem");
    const KEY: &str = include_str!("../../tests/fixtures/hooks/sns-test-key.pem");
    /// Signed with `openssl dgst -sha1 -sign sns-test-key.pem` (SignatureVersion 1).
    const NOTIFICATION_V1: &[u8] = include_bytes!("../../tests/fixtures/hooks/sns-notification-v1.json");
    const SUBSCRIPTION_V1: &[u8] = include_bytes!("../../tests/fixtures/hooks/sns-subscription-v1.json");
    /// 2026-12-01, inside the test certificate's validity (2026-11-22 to 2126).
    const NOW_MS: i64 = 1_796_083_200_000;

    fn sign_v2(env: &mut SnsEnvelope) {
        let b64: String = KEY.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(b64).expect("key base64");
        let key = RsaKeyPair::from_pkcs8(&der).expect("pkcs8 key");
        let mut sig = vec![0; key.public().modulus_len()];
        env.signature_version = "2".into();
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), string_to_sign(env).as_bytes(), &mut sig).expect("sign");
        env.signature = STANDARD.encode(sig);
    }

    fn is_unauthorized<T: std::fmt::Debug>(r: Result<T, HookError>) -> bool {
        matches!(r, Err(HookError::Unauthorized(_)))
    }

    #[test]
    fn cert_url_accepts_aws() {
        for url in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
            "https://sns.eu-central-1.amazonaws.com/a/b.pem",
        ] {
            assert_eq!(check_cert_url(url, &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn cert_url_refuses_lookalikes() {
        for url in [
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
            "https://evil.example@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.us_east.amazonaws.com/x.pem",
            "https://sns.us.east.amazonaws.com/x.pem",
            "https://evilsns.us-east-1.amazonaws.com/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem?x=.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com/.pem",
            "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
            "https://sns.us-east-1.amazonaws.com",
            "",
        ] {
            assert!(is_unauthorized(check_cert_url(url, &[])), "{url}");
        }
    }

    #[test]
    fn cert_url_with_prefixes() {
        let allowed = vec!["http://127.0.0.1:9911/certs/".to_string()];
        assert_eq!(check_cert_url("http://127.0.0.1:9911/certs/sns.pem", &allowed), Ok(()));
        assert!(is_unauthorized(check_cert_url("http://127.0.0.1:9911/certs/sns.txt", &allowed)));
        assert!(is_unauthorized(check_cert_url("http://127.0.0.1:9912/certs/sns.pem", &allowed)));
        // The list replaces the AWS rule.
        assert!(is_unauthorized(check_cert_url("https://sns.us-east-1.amazonaws.com/x.pem", &allowed)));
    }

    #[test]
    fn string_to_sign_notification() {
        let mut env = parse(NOTIFICATION_V1).expect("parses");
        env.message = "hello".into();
        let expected = format!(
            "Message\nhello\nMessageId\n{}\nSubject\n{}\nTimestamp\n{}\nTopicArn\n{}\nType\nNotification\n",
            env.message_id,
            env.subject.as_deref().unwrap_or_default(),
            env.timestamp,
            env.topic_arn
        );
        assert_eq!(string_to_sign(&env), expected);
        env.subject = None;
        assert!(!string_to_sign(&env).contains("Subject"));
    }

    #[test]
    fn string_to_sign_subscription() {
        let env = parse(SUBSCRIPTION_V1).expect("parses");
        assert_eq!(env.kind, SnsKind::SubscriptionConfirmation);
        let expected = format!(
            "Message\n{}\nMessageId\n{}\nSubscribeURL\n{}\nTimestamp\n{}\nToken\n{}\nTopicArn\n{}\nType\nSubscriptionConfirmation\n",
            env.message,
            env.message_id,
            env.subscribe_url.as_deref().unwrap_or_default(),
            env.timestamp,
            env.token.as_deref().unwrap_or_default(),
            env.topic_arn
        );
        assert_eq!(string_to_sign(&env), expected);
        let unsub = SnsEnvelope { kind: SnsKind::UnsubscribeConfirmation, ..env };
        assert!(string_to_sign(&unsub).ends_with("Type\nUnsubscribeConfirmation\n"));
    }

    #[test]
    fn verifies_openssl_signed_v1_fixtures() {
        let env = parse(NOTIFICATION_V1).expect("parses");
        assert_eq!(env.signature_version, "1");
        assert_eq!(verify(&env, CERT, NOW_MS), Ok(()));
        let sub = parse(SUBSCRIPTION_V1).expect("parses");
        assert_eq!(verify(&sub, CERT, NOW_MS), Ok(()));
    }

    #[test]
    fn verifies_v2() {
        let mut env = parse(NOTIFICATION_V1).expect("parses");
        sign_v2(&mut env);
        assert_eq!(verify(&env, CERT, NOW_MS), Ok(()));
        // The same signature presented as version 1 does not verify.
        let as_v1 = SnsEnvelope { signature_version: "1".into(), ..env.clone() };
        assert!(is_unauthorized(verify(&as_v1, CERT, NOW_MS)));
    }

    #[test]
    fn tampering_is_unauthorized() {
        let good = parse(NOTIFICATION_V1).expect("parses");
        let mut v2 = good.clone();
        sign_v2(&mut v2);
        for base in [good, v2] {
            let tampered = SnsEnvelope { message: base.message.replace("Permanent", "Transient"), ..base.clone() };
            assert!(is_unauthorized(verify(&tampered, CERT, NOW_MS)));
            let other_topic = SnsEnvelope { topic_arn: format!("{}x", base.topic_arn), ..base.clone() };
            assert!(is_unauthorized(verify(&other_topic, CERT, NOW_MS)));
            let no_subject = SnsEnvelope { subject: None, ..base.clone() };
            assert!(is_unauthorized(verify(&no_subject, CERT, NOW_MS)));
            let bad_version = SnsEnvelope { signature_version: "3".into(), ..base.clone() };
            assert!(is_unauthorized(verify(&bad_version, CERT, NOW_MS)));
            let bad_b64 = SnsEnvelope { signature: "***".into(), ..base.clone() };
            assert!(is_unauthorized(verify(&bad_b64, CERT, NOW_MS)));
        }
    }

    #[test]
    fn certificate_must_be_valid_and_parseable() {
        let env = parse(NOTIFICATION_V1).expect("parses");
        // Before the certificate's notBefore (2026-11-22T16:08Z) and far after notAfter.
        assert!(is_unauthorized(verify(&env, CERT, 1_700_000_000_000)));
        assert!(is_unauthorized(verify(&env, CERT, 5_000_000_000_000)));
        for pem in [
            b"".as_slice(),
            b"garbage",
            KEY.as_bytes(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(is_unauthorized(verify(&env, pem, NOW_MS)));
        }
    }

    #[test]
    fn parse_refuses_garbage() {
        for body in [b"".as_slice(), b"[]", b"{}", b"\xff", br#"{"Type": "Other"}"#] {
            assert!(matches!(parse(body), Err(HookError::BadRequest(_))));
        }
        let mut doc: Value = serde_json::from_slice(SUBSCRIPTION_V1).unwrap();
        doc.as_object_mut().unwrap().remove("Token");
        assert!(matches!(parse(&serde_json::to_vec(&doc).unwrap()), Err(HookError::BadRequest(_))));
    }

    fn ses(kind: &str, section: Value) -> String {
        let key = match kind {
            "DeliveryDelay" => "deliveryDelay".to_string(),
            k => k.to_lowercase(),
        };
        json!({
            "notificationType": kind,
            key: section,
            "mail": {
                "timestamp": "2026-11-20T09:59:58.000Z",
                "source": "Shop <shop@shop.example>",
                "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/shop.example",
                "messageId": "0100018f-ses-internal-id",
                "destination": ["Ann@Example.com", "ben@example.com"],
                "headersTruncated": false,
                "headers": [
                    {"name": "From", "value": "Shop <shop@shop.example>"},
                    {"name": "Message-ID", "value": "<01jses@shop.example>"}
                ],
                "commonHeaders": {"from": ["Shop <shop@shop.example>"], "to": ["Ann@Example.com"],
                                  "messageId": "<01jses@shop.example>", "subject": "Receipt"}
            }
        })
        .to_string()
    }

    #[test]
    fn ses_permanent_bounce() {
        let events = ses_events(&ses(
            "Bounce",
            json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-20T10:00:01.500Z",
            "feedbackId": "fb-1", "reportingMTA": "dsn; mta.example",
            "bouncedRecipients": [
                {"emailAddress": "Ann@Example.com", "action": "failed", "status": "5.1.1",
                 "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                {"emailAddress": "ben@example.com"},
                {"status": "5.0.0"}
            ]}),
        ))
        .expect("parses");
        assert_eq!(
            events[0],
            FeedbackEvent {
                provider: "ses",
                message: Some(MessageRef::HeaderMessageId("01jses@shop.example".into())),
                recipient: "ann@example.com".into(),
                kind: FeedbackKind::Bounced { hard: true },
                detail: "smtp; 550 5.1.1 user unknown".into(),
                at: Some(1_795_168_801_500),
            }
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].detail, "General");
    }

    #[test]
    fn ses_transient_and_undetermined_bounces_are_soft() {
        for bounce_type in ["Transient", "Undetermined"] {
            let events = ses_events(&ses(
                "Bounce",
                json!({"bounceType": bounce_type, "bounceSubType": "MailboxFull", "timestamp": "2026-11-20T10:00:00Z",
                       "bouncedRecipients": [{"emailAddress": "ben@example.com", "status": "4.2.2"}]}),
            ))
            .expect("parses");
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].kind, FeedbackKind::Bounced { hard: false });
            assert_eq!(events[0].detail, "4.2.2");
        }
    }

    #[test]
    fn ses_complaint() {
        let events = ses_events(&ses(
            "Complaint",
            json!({"complainedRecipients": [{"emailAddress": "ann@example.com"}], "timestamp": "2026-11-20T10:00:00Z",
                   "feedbackId": "fb-2", "complaintFeedbackType": "abuse", "userAgent": "ExampleFBL/1.0"}),
        ))
        .expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, FeedbackKind::Complained);
        assert_eq!(events[0].detail, "abuse");
        assert_eq!(events[0].at, Some(1_795_168_800_000));
        // SES passes on the FBL's type: "not-spam" and "auth-failure" are
        // not the recipient objecting.
        for t in ["not-spam", "auth-failure"] {
            let events = ses_events(&ses(
                "Complaint",
                json!({"complainedRecipients": [{"emailAddress": "ann@example.com"}], "complaintFeedbackType": t}),
            ))
            .expect("parses");
            assert_eq!(events[0].kind, FeedbackKind::Feedback { feedback_type: t.into() });
        }
        let events =
            ses_events(&ses("Complaint", json!({"complainedRecipients": [{"emailAddress": "ann@example.com"}]})))
                .expect("parses");
        assert_eq!(events[0].kind, FeedbackKind::Complained, "no type is a complaint");
    }

    #[test]
    fn ses_delivery_and_delay() {
        let delivered = ses_events(&ses(
            "Delivery",
            json!({"timestamp": "2026-11-20T10:00:00Z", "processingTimeMillis": 812,
                   "recipients": ["Ann@Example.com", "ben@example.com"],
                   "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "a8-1.smtp-out.example"}),
        ))
        .expect("parses");
        assert_eq!(delivered.len(), 2);
        assert!(
            delivered.iter().all(|e| e.kind == FeedbackKind::Delivered && e.detail == "250 2.6.0 Message received")
        );
        assert_eq!(delivered[0].recipient, "ann@example.com");

        let delayed = ses_events(&ses(
            "DeliveryDelay",
            json!({"timestamp": "2026-11-20T10:05:00Z", "delayType": "TransientCommunicationFailure",
                   "expirationTime": "2026-11-21T10:00:00Z",
                   "delayedRecipients": [{"emailAddress": "ben@example.com", "status": "4.4.1",
                                          "diagnosticCode": "smtp; 421 4.4.1 try again later"}]}),
        ))
        .expect("parses");
        assert_eq!(delayed.len(), 1);
        assert_eq!(delayed[0].kind, FeedbackKind::Deferred);
        assert_eq!(delayed[0].detail, "smtp; 421 4.4.1 try again later");
        assert_eq!(delayed[0].at, Some(1_795_168_800_000 + 300_000));
    }

    #[test]
    fn ses_open_click_and_others() {
        let mut doc: Value = serde_json::from_str(&ses("Open", json!({"timestamp": "2026-11-20T10:00:00Z"}))).unwrap();
        // Event publishing names the type eventType.
        let ty = doc.as_object_mut().unwrap().remove("notificationType").unwrap();
        doc["eventType"] = ty;
        let opened = ses_events(&doc.to_string()).expect("parses");
        assert_eq!(opened.len(), 2);
        assert!(opened.iter().all(|e| e.kind == FeedbackKind::Opened));

        let clicked =
            ses_events(&ses("Click", json!({"timestamp": "2026-11-20T10:00:00Z", "link": "https://shop.example/x"})))
                .expect("parses");
        assert_eq!(clicked[0].kind, FeedbackKind::Clicked { url: "https://shop.example/x".into() });

        assert_eq!(ses_events(&ses("Send", json!({}))), Ok(vec![]));
        assert!(matches!(ses_events(&ses("Bounce", json!("x"))), Err(HookError::BadRequest(_))));
        for garbage in ["", "null", "[]", "{}", r#"{"notificationType": "Bounce"}"#] {
            assert!(matches!(ses_events(garbage), Err(HookError::BadRequest(_))), "{garbage}");
        }
    }

    #[test]
    fn ses_epistle_id_header_preferred() {
        let mut doc: Value = serde_json::from_str(&ses(
            "Delivery",
            json!({"timestamp": "2026-11-20T10:00:00Z", "recipients": ["ann@example.com"]}),
        ))
        .unwrap();
        doc["mail"]["headers"].as_array_mut().unwrap().push(json!({"name": "x-epistle-id", "value": "msg_01jses"}));
        let events = ses_events(&doc.to_string()).expect("parses");
        assert_eq!(events[0].message, Some(MessageRef::EpistleId("msg_01jses".into())));
    }

    #[test]
    fn fixture_message_maps() {
        let env = parse(NOTIFICATION_V1).expect("parses");
        let events = ses_events(&env.message).expect("parses");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].recipient, "gone@example.net");
        assert_eq!(events[0].message, Some(MessageRef::HeaderMessageId("01jtest@shop.example".into())));
    }
}
