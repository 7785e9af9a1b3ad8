//! Mailgun webhooks (the JSON kind): `{"signature": {...}, "event-data": {...}}`.
//!
//! Mailgun signs `timestamp ‖ token` with HMAC-SHA256 under the account's
//! webhook signing key. The signature alone does not stop a captured request
//! from being sent again, so the timestamp must be recent and each token is
//! accepted once ([`ReplayGuard`]).
//!
//! To be matched back to our message, sends should carry the custom variable
//! `v:epistle_id` (it comes back as `user-variables.epistle_id`); otherwise the
//! Message-ID header is used.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{
    FeedbackEvent, FeedbackKind, HookError, MessageRef, ReplayGuard, bad_request, json, normalize_address, str_field,
    strip_angles, unauthorized, unix_seconds_fresh, unix_seconds_ms,
};

const PROVIDER: &str = "mailgun";

/// Longest token we will remember; Mailgun's are 50 characters.
const MAX_TOKEN_LEN: usize = 256;

/// Verifies a Mailgun webhook and returns its feedback (empty for events we
/// do not track, such as `accepted` or `stored`).
///
/// Checks, in order: the HMAC (so unauthenticated requests cannot poison the
/// replay memory), timestamp within ±5 minutes of `now_ms`, token unseen.
pub fn verify_and_parse(
    body: &[u8],
    signing_key: &str,
    now_ms: i64,
    replay: &ReplayGuard,
) -> Result<Vec<FeedbackEvent>, HookError> {
    let doc = json(body)?;
    let sig = doc.get("signature").ok_or_else(|| unauthorized("no signature block"))?;
    let timestamp = match sig.get("timestamp") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(unauthorized("no signature timestamp")),
    };
    let token = str_field(sig, "token").ok_or_else(|| unauthorized("no signature token"))?;
    let signature = str_field(sig, "signature").ok_or_else(|| unauthorized("no signature"))?;

    if signing_key.is_empty() {
        return Err(unauthorized("no signing key configured"));
    }
    let given = hex::decode(signature.trim()).map_err(|_| unauthorized("signature is not hex"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_key.as_bytes()).map_err(|_| unauthorized("unusable signing key"))?;
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&given).map_err(|_| unauthorized("signature mismatch"))?;

    let ts: i64 = timestamp.trim().parse().map_err(|_| unauthorized("timestamp is not an integer"))?;
    if !unix_seconds_fresh(ts, now_ms) {
        return Err(unauthorized("timestamp outside the allowed window"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(unauthorized("token too long"));
    }
    if !replay.check_and_remember(token, now_ms) {
        return Err(unauthorized("token already used (replay)"));
    }

    let data = doc.get("event-data").filter(|d| d.is_object()).ok_or_else(|| bad_request("no event-data"))?;
    Ok(parse_event(data)?.into_iter().collect())
}

/// Maps one `event-data` object; `Ok(None)` for events we do not track.
fn parse_event(data: &Value) -> Result<Option<FeedbackEvent>, HookError> {
    let event = str_field(data, "event").ok_or_else(|| bad_request("event-data.event missing"))?;
    let status = data.get("delivery-status");
    let kind = match event {
        "delivered" => FeedbackKind::Delivered,
        "failed" => failure_kind(data),
        "complained" => FeedbackKind::Complained,
        "opened" => FeedbackKind::Opened,
        "clicked" => FeedbackKind::Clicked { url: str_field(data, "url").unwrap_or_default().to_owned() },
        "unsubscribed" => FeedbackKind::Unsubscribed,
        _ => return Ok(None),
    };
    let recipient = str_field(data, "recipient").ok_or_else(|| bad_request("event-data.recipient missing"))?;
    Ok(Some(FeedbackEvent {
        provider: PROVIDER,
        message: message_ref(data),
        recipient: normalize_address(recipient),
        kind,
        detail: detail(status, str_field(data, "reason")),
        at: data.get("timestamp").and_then(unix_seconds_ms),
    }))
}

/// `failed` is a bounce when Mailgun has given up (severity permanent, a
/// 5xx answer, or a suppression), a deferral while it is still retrying.
fn failure_kind(data: &Value) -> FeedbackKind {
    let severity = str_field(data, "severity").unwrap_or_default();
    let reason = str_field(data, "reason").unwrap_or_default();
    let code = data.get("delivery-status").and_then(|s| s.get("code")).and_then(status_code);
    if severity == "temporary" {
        FeedbackKind::Deferred
    } else if severity == "permanent"
        || code.is_some_and(|c| (500..600).contains(&c))
        || reason.starts_with("suppress-")
    {
        FeedbackKind::Bounced { hard: true }
    } else {
        FeedbackKind::Bounced { hard: false }
    }
}

/// Mailgun sends the SMTP code as a number, occasionally as a string.
fn status_code(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn message_ref(data: &Value) -> Option<MessageRef> {
    if let Some(id) = data.get("user-variables").and_then(|v| str_field(v, "epistle_id")) {
        return Some(MessageRef::EpistleId(id.to_owned()));
    }
    let header = data.get("message")?.get("headers")?;
    let id = str_field(header, "message-id").map(strip_angles).filter(|s| !s.is_empty())?;
    Some(MessageRef::HeaderMessageId(id))
}

/// "code message" from delivery-status (falling back to its description,
/// then to Mailgun's reason).
fn detail(status: Option<&Value>, reason: Option<&str>) -> String {
    let code = status.and_then(|s| s.get("code")).and_then(status_code).filter(|c| *c != 0);
    let text = status.and_then(|s| str_field(s, "message").or_else(|| str_field(s, "description")));
    match (code, text) {
        (Some(c), Some(t)) => format!("{c} {t}"),
        (None, Some(t)) => t.to_owned(),
        (Some(c), None) => reason.map_or_else(|| c.to_string(), |r| format!("{c} {r}")),
        (None, None) => reason.unwrap_or_default().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
    const NOW_MS: i64 = 1_795_168_800_000;
    const TOKEN: &str = "f2a7c1e9b3d84056a1c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7";

    fn sign(key: &str, ts: &str, token: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("hmac key");
        mac.update(ts.as_bytes());
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn body_with(event_data: Value, key: &str, ts_s: i64, token: &str) -> Vec<u8> {
        let ts = ts_s.to_string();
        let doc = json!({
            "signature": {"timestamp": ts, "token": token, "signature": sign(key, &ts, token)},
            "event-data": event_data,
        });
        serde_json::to_vec(&doc).expect("json")
    }

    fn delivered() -> Value {
        json!({
            "event": "delivered",
            "timestamp": 1795168790.25,
            "recipient": "Alice@Example.com",
            "message": {"headers": {"message-id": "01jabc@shop.example"}},
            "delivery-status": {"code": 250, "message": "OK", "description": ""},
        })
    }

    fn parse_one(event_data: Value) -> Vec<FeedbackEvent> {
        let body = body_with(event_data, KEY, NOW_MS / 1000, TOKEN);
        verify_and_parse(&body, KEY, NOW_MS, &ReplayGuard::new()).expect("verifies")
    }

    #[test]
    fn signed_payload_parses() {
        let events = parse_one(delivered());
        assert_eq!(
            events,
            vec![FeedbackEvent {
                provider: "mailgun",
                message: Some(MessageRef::HeaderMessageId("01jabc@shop.example".into())),
                recipient: "alice@example.com".into(),
                kind: FeedbackKind::Delivered,
                detail: "250 OK".into(),
                at: Some(1_795_168_790_250),
            }]
        );
    }

    #[test]
    fn epistle_id_preferred_over_header() {
        let mut d = delivered();
        d["user-variables"] = json!({"epistle_id": "msg_01jxyz"});
        assert_eq!(parse_one(d)[0].message, Some(MessageRef::EpistleId("msg_01jxyz".into())));
    }

    #[test]
    fn wrong_key_is_unauthorized() {
        let body = body_with(delivered(), "key-someone-else", NOW_MS / 1000, TOKEN);
        let err = verify_and_parse(&body, KEY, NOW_MS, &ReplayGuard::new()).unwrap_err();
        assert!(matches!(err, HookError::Unauthorized(_)), "{err:?}");
    }

    #[test]
    fn tampered_token_is_unauthorized() {
        let mut doc: Value = serde_json::from_slice(&body_with(delivered(), KEY, NOW_MS / 1000, TOKEN)).unwrap();
        doc["signature"]["token"] = json!("x".repeat(50));
        let body = serde_json::to_vec(&doc).unwrap();
        assert!(matches!(verify_and_parse(&body, KEY, NOW_MS, &ReplayGuard::new()), Err(HookError::Unauthorized(_))));
    }

    #[test]
    fn stale_or_future_timestamp_is_unauthorized() {
        for ts in [NOW_MS / 1000 - 301, NOW_MS / 1000 + 301] {
            let body = body_with(delivered(), KEY, ts, TOKEN);
            let err = verify_and_parse(&body, KEY, NOW_MS, &ReplayGuard::new()).unwrap_err();
            assert!(matches!(err, HookError::Unauthorized(_)), "{err:?}");
        }
        let body = body_with(delivered(), KEY, NOW_MS / 1000 - 299, TOKEN);
        assert!(verify_and_parse(&body, KEY, NOW_MS, &ReplayGuard::new()).is_ok());
    }

    #[test]
    fn replayed_token_is_unauthorized() {
        let guard = ReplayGuard::new();
        let body = body_with(delivered(), KEY, NOW_MS / 1000, TOKEN);
        assert!(verify_and_parse(&body, KEY, NOW_MS, &guard).is_ok());
        let err = verify_and_parse(&body, KEY, NOW_MS + 1_000, &guard).unwrap_err();
        assert!(matches!(err, HookError::Unauthorized(_)), "{err:?}");
    }

    #[test]
    fn forged_requests_do_not_burn_tokens() {
        let guard = ReplayGuard::new();
        let forged = body_with(delivered(), "wrong", NOW_MS / 1000, TOKEN);
        assert!(verify_and_parse(&forged, KEY, NOW_MS, &guard).is_err());
        let genuine = body_with(delivered(), KEY, NOW_MS / 1000, TOKEN);
        assert!(verify_and_parse(&genuine, KEY, NOW_MS, &guard).is_ok());
    }

    #[test]
    fn maps_event_kinds() {
        let base = |event: &str, extra: Value| {
            let mut d = json!({"event": event, "recipient": "bob@example.org", "timestamp": 1795168799});
            if let (Some(obj), Some(more)) = (d.as_object_mut(), extra.as_object()) {
                obj.extend(more.clone());
            }
            d
        };
        let kind = |d: Value| parse_one(d).into_iter().next().map(|e| e.kind);

        assert_eq!(
            kind(base(
                "failed",
                json!({"severity": "permanent", "reason": "bounce",
                       "delivery-status": {"code": 550, "message": "5.1.1 No such user"}})
            )),
            Some(FeedbackKind::Bounced { hard: true })
        );
        assert_eq!(
            kind(base("failed", json!({"severity": "temporary", "delivery-status": {"code": 451}}))),
            Some(FeedbackKind::Deferred)
        );
        assert_eq!(
            kind(base("failed", json!({"reason": "suppress-bounce"}))),
            Some(FeedbackKind::Bounced { hard: true })
        );
        assert_eq!(
            kind(base("failed", json!({"delivery-status": {"code": "554"}}))),
            Some(FeedbackKind::Bounced { hard: true })
        );
        assert_eq!(kind(base("failed", json!({}))), Some(FeedbackKind::Bounced { hard: false }));
        assert_eq!(kind(base("complained", json!({}))), Some(FeedbackKind::Complained));
        assert_eq!(kind(base("opened", json!({}))), Some(FeedbackKind::Opened));
        assert_eq!(
            kind(base("clicked", json!({"url": "https://shop.example/track?x=1"}))),
            Some(FeedbackKind::Clicked { url: "https://shop.example/track?x=1".into() })
        );
        assert_eq!(kind(base("unsubscribed", json!({}))), Some(FeedbackKind::Unsubscribed));
        assert_eq!(kind(base("accepted", json!({}))), None);
        assert_eq!(kind(base("stored", json!({}))), None);
    }

    #[test]
    fn bounce_detail_comes_from_delivery_status() {
        let d = json!({"event": "failed", "severity": "permanent", "recipient": "bob@example.org",
                       "delivery-status": {"code": 550, "message": "", "description": "mailbox unavailable"}});
        assert_eq!(parse_one(d)[0].detail, "550 mailbox unavailable");
    }

    #[test]
    fn garbage_never_panics() {
        let guard = ReplayGuard::new();
        let samples: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"not json".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"[]".to_vec(),
            b"{}".to_vec(),
            br#"{"signature": 5}"#.to_vec(),
            br#"{"signature": {"timestamp": [], "token": 1, "signature": null}}"#.to_vec(),
            br#"{"signature": {"timestamp": "1", "token": "t", "signature": "zz"}}"#.to_vec(),
        ];
        for body in samples {
            let r = verify_and_parse(&body, KEY, NOW_MS, &guard);
            assert!(matches!(r, Err(HookError::BadRequest(_) | HookError::Unauthorized(_))), "{r:?}");
        }
        // Authentic but unreadable event data.
        let body = body_with(json!("nope"), KEY, NOW_MS / 1000, "tok-1");
        assert!(matches!(verify_and_parse(&body, KEY, NOW_MS, &guard), Err(HookError::BadRequest(_))));
        let body = body_with(json!({"event": "delivered"}), KEY, NOW_MS / 1000, "tok-2");
        assert!(matches!(verify_and_parse(&body, KEY, NOW_MS, &guard), Err(HookError::BadRequest(_))));
        // A huge timestamp is refused, not overflowed.
        let body = body_with(delivered(), KEY, i64::MAX, "tok-3");
        assert!(matches!(verify_and_parse(&body, KEY, NOW_MS, &guard), Err(HookError::Unauthorized(_))));
    }
}
