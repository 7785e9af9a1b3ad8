//! SendGrid Signed Event Webhook.
//!
//! SendGrid signs `timestamp ‖ raw body` with ECDSA P-256 / SHA-256 and sends
//! the DER signature base64-encoded in `X-Twilio-Email-Event-Webhook-Signature`,
//! the timestamp in `X-Twilio-Email-Event-Webhook-Timestamp`. The verification
//! key is the base64 SubjectPublicKeyInfo shown in SendGrid's settings.
//!
//! The body must be the exact bytes received: any re-serialisation breaks the
//! signature. To be matched back to our message, sends should carry the
//! custom arg `epistle_id` (it comes back as a top-level event field);
//! otherwise `smtp-id` (our Message-ID) is used.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use serde_json::Value;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{
    FeedbackEvent, FeedbackKind, HookError, MessageRef, bad_request, json, normalize_address, str_field, strip_angles,
    unauthorized, unix_seconds_fresh, unix_seconds_ms,
};

const PROVIDER: &str = "sendgrid";

/// Header carrying the base64 ECDSA signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// Header carrying the signed Unix timestamp (seconds).
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Whether the signed timestamp header (Unix seconds) is within ±5 minutes of
/// `now_ms`. Kept separate from [`verify_and_parse`] because SendGrid retries
/// failed posts for hours with the original signature; a caller that answers
/// 2xx reliably can afford to insist on freshness.
pub fn timestamp_fresh(ts: &str, now_ms: i64) -> bool {
    ts.trim().parse::<i64>().is_ok_and(|s| unix_seconds_fresh(s, now_ms))
}

/// Verifies the signature over `timestamp ‖ body` with the account's public
/// key, then returns the feedback in the batch (events we do not track, such
/// as `processed`, and events without an address are skipped).
pub fn verify_and_parse(
    body: &[u8],
    signature_b64: &str,
    timestamp: &str,
    public_key_b64: &str,
) -> Result<Vec<FeedbackEvent>, HookError> {
    let point = p256_point(public_key_b64)?;
    let signature = STANDARD.decode(signature_b64.trim()).map_err(|_| unauthorized("signature is not base64"))?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
        .verify(&signed, &signature)
        .map_err(|_| unauthorized("signature mismatch"))?;

    let doc = json(body)?;
    let events = doc.as_array().ok_or_else(|| bad_request("body is not a JSON array"))?;
    Ok(events.iter().filter_map(parse_event).collect())
}

/// The uncompressed P-256 point inside a base64 DER SubjectPublicKeyInfo
/// (PEM armour tolerated, since that is how keys often get pasted).
fn p256_point(public_key_b64: &str) -> Result<Vec<u8>, HookError> {
    let bad = || unauthorized("configured SendGrid public key is not a P-256 SubjectPublicKeyInfo");
    let b64: String = public_key_b64
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let der = STANDARD.decode(b64).map_err(|_| bad())?;
    let (rest, spki) = SubjectPublicKeyInfo::from_der(&der).map_err(|_| bad())?;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
    if !rest.is_empty() || spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve != Some(OID_EC_P256) {
        return Err(bad());
    }
    let point = spki.subject_public_key.data.to_vec();
    if point.len() != 65 || point.first() != Some(&0x04) {
        return Err(bad());
    }
    Ok(point)
}

/// Maps one event object; None for events we do not track or cannot use.
fn parse_event(e: &Value) -> Option<FeedbackEvent> {
    let kind = match str_field(e, "event")? {
        "delivered" => FeedbackKind::Delivered,
        "deferred" => FeedbackKind::Deferred,
        // `type` is "bounce" for a hard bounce, "blocked" for a soft one.
        "bounce" => FeedbackKind::Bounced { hard: str_field(e, "type") != Some("blocked") },
        "dropped" => {
            let reason = str_field(e, "reason").unwrap_or_default();
            FeedbackKind::Bounced { hard: reason.contains("Bounced Address") || reason.contains("Invalid") }
        }
        "spamreport" => FeedbackKind::Complained,
        "open" => FeedbackKind::Opened,
        "click" => FeedbackKind::Clicked { url: str_field(e, "url").unwrap_or_default().to_owned() },
        "unsubscribe" | "group_unsubscribe" => FeedbackKind::Unsubscribed,
        _ => return None,
    };
    let message = match str_field(e, "epistle_id") {
        Some(id) => Some(MessageRef::EpistleId(id.to_owned())),
        None => str_field(e, "smtp-id").map(strip_angles).filter(|s| !s.is_empty()).map(MessageRef::HeaderMessageId),
    };
    let detail = ["reason", "response", "status"].iter().find_map(|k| str_field(e, k)).unwrap_or_default();
    Some(FeedbackEvent {
        provider: PROVIDER,
        message,
        recipient: normalize_address(str_field(e, "email")?),
        kind,
        detail: detail.to_owned(),
        at: e.get("timestamp").and_then(unix_seconds_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    /// DER header of a P-256 SubjectPublicKeyInfo, up to the point:
    /// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }.
    const P256_SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];

    struct Signer {
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).expect("key");
            Self { key, rng }
        }

        fn public_b64(&self) -> String {
            let mut spki = P256_SPKI_PREFIX.to_vec();
            spki.extend_from_slice(self.key.public_key().as_ref());
            STANDARD.encode(spki)
        }

        fn sign(&self, ts: &str, body: &[u8]) -> String {
            let mut msg = ts.as_bytes().to_vec();
            msg.extend_from_slice(body);
            STANDARD.encode(self.key.sign(&self.rng, &msg).expect("sign").as_ref())
        }
    }

    const TS: &str = "1795168800";

    fn sample_body() -> Vec<u8> {
        serde_json::to_vec(&json!([
            {"email": "Carol@Example.com", "timestamp": 1795168790, "smtp-id": "<01jabc@shop.example>",
             "event": "delivered", "response": "250 2.0.0 OK", "sg_message_id": "abc.filter"},
            {"email": "dave@example.com", "timestamp": 1795168791, "event": "processed"},
        ]))
        .expect("json")
    }

    #[test]
    fn signed_batch_verifies_and_parses() {
        let s = Signer::new();
        let body = sample_body();
        let events = verify_and_parse(&body, &s.sign(TS, &body), TS, &s.public_b64()).expect("verifies");
        assert_eq!(
            events,
            vec![FeedbackEvent {
                provider: "sendgrid",
                message: Some(MessageRef::HeaderMessageId("01jabc@shop.example".into())),
                recipient: "carol@example.com".into(),
                kind: FeedbackKind::Delivered,
                detail: "250 2.0.0 OK".into(),
                at: Some(1_795_168_790_000),
            }]
        );
    }

    #[test]
    fn pem_armoured_key_is_accepted() {
        let s = Signer::new();
        let body = sample_body();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", s.public_b64());
        assert!(verify_and_parse(&body, &s.sign(TS, &body), TS, &pem).is_ok());
    }

    #[test]
    fn flipped_body_byte_is_unauthorized() {
        let s = Signer::new();
        let body = sample_body();
        let sig = s.sign(TS, &body);
        let mut tampered = body.clone();
        let i = tampered.iter().position(|b| *b == b'C').expect("a C");
        tampered[i] = b'X';
        assert!(matches!(verify_and_parse(&tampered, &sig, TS, &s.public_b64()), Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn signature_for_other_timestamp_is_unauthorized() {
        let s = Signer::new();
        let body = sample_body();
        let sig = s.sign("1795168700", &body);
        assert!(matches!(verify_and_parse(&body, &sig, TS, &s.public_b64()), Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn other_key_is_unauthorized() {
        let (s, other) = (Signer::new(), Signer::new());
        let body = sample_body();
        let r = verify_and_parse(&body, &s.sign(TS, &body), TS, &other.public_b64());
        assert!(matches!(r, Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn garbage_never_panics() {
        let s = Signer::new();
        let body = sample_body();
        let sig = s.sign(TS, &body);
        for key in ["", "!!!", "AAAA", &STANDARD.encode([0x30, 0x03, 0x02, 0x01, 0x00])] {
            assert!(matches!(verify_and_parse(&body, &sig, TS, key), Err(HookError::Unauthorized(_))));
        }
        for sig in ["", "not base64!", "AAAA"] {
            assert!(matches!(verify_and_parse(&body, sig, TS, &s.public_b64()), Err(HookError::Unauthorized(_))));
        }
        // Authentic but not an array of events.
        for body in [b"{}".as_slice(), b"not json", b""] {
            let r = verify_and_parse(body, &s.sign(TS, body), TS, &s.public_b64());
            assert!(matches!(r, Err(HookError::BadRequest(_))), "{r:?}");
        }
        // Elements that are not usable events are skipped.
        let body = br#"[1, "x", null, {"event": "bounce"}, {"email": 5, "event": "open"}]"#;
        assert_eq!(verify_and_parse(body, &s.sign(TS, body), TS, &s.public_b64()), Ok(vec![]));
    }

    #[test]
    fn timestamp_freshness() {
        let now = 1_795_168_800_000;
        assert!(timestamp_fresh("1795168800", now));
        assert!(timestamp_fresh(" 1795168500 ", now));
        assert!(!timestamp_fresh("1795168499", now));
        assert!(!timestamp_fresh("1795169101", now));
        assert!(!timestamp_fresh("soon", now));
        assert!(!timestamp_fresh("99999999999999999", now));
    }

    #[test]
    fn maps_event_kinds() {
        let one = |extra: Value| {
            let mut e = json!({"email": "x@example.com", "timestamp": 1795168790});
            if let (Some(obj), Some(more)) = (e.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            parse_event(&e)
        };
        let kind = |extra: Value| one(extra).map(|e| e.kind);
        assert_eq!(kind(json!({"event": "delivered"})), Some(FeedbackKind::Delivered));
        assert_eq!(kind(json!({"event": "deferred", "response": "421 try later"})), Some(FeedbackKind::Deferred));
        assert_eq!(
            kind(json!({"event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown user", "status": "5.1.1"})),
            Some(FeedbackKind::Bounced { hard: true })
        );
        assert_eq!(kind(json!({"event": "bounce", "type": "blocked"})), Some(FeedbackKind::Bounced { hard: false }));
        assert_eq!(
            kind(json!({"event": "dropped", "reason": "Bounced Address"})),
            Some(FeedbackKind::Bounced { hard: true })
        );
        assert_eq!(kind(json!({"event": "dropped", "reason": "Invalid"})), Some(FeedbackKind::Bounced { hard: true }));
        assert_eq!(
            kind(json!({"event": "dropped", "reason": "Unsubscribed Address"})),
            Some(FeedbackKind::Bounced { hard: false })
        );
        assert_eq!(kind(json!({"event": "spamreport"})), Some(FeedbackKind::Complained));
        assert_eq!(kind(json!({"event": "open"})), Some(FeedbackKind::Opened));
        assert_eq!(
            kind(json!({"event": "click", "url": "https://shop.example/a"})),
            Some(FeedbackKind::Clicked { url: "https://shop.example/a".into() })
        );
        assert_eq!(kind(json!({"event": "unsubscribe"})), Some(FeedbackKind::Unsubscribed));
        assert_eq!(kind(json!({"event": "group_unsubscribe"})), Some(FeedbackKind::Unsubscribed));
        assert_eq!(kind(json!({"event": "processed"})), None);

        let e = one(json!({"event": "bounce", "type": "bounce", "reason": "550 unknown user", "status": "5.1.1",
                            "epistle_id": "msg_01jq", "smtp-id": "<a@b>"}))
        .expect("event");
        assert_eq!(e.message, Some(MessageRef::EpistleId("msg_01jq".into())));
        assert_eq!(e.detail, "550 unknown user");
        assert_eq!(e.at, Some(1_795_168_790_000));
        assert_eq!(one(json!({"event": "open"})).expect("event").message, None);
    }
}
