//! Postmark webhooks. Postmark does not sign its posts; the webhook URL is
//! configured with HTTP Basic credentials (`https://user:pass@…`), which we
//! check in constant time on every request.
//!
//! To be matched back to our message, sends should carry the metadata key
//! `epistle_id`. Postmark's own `MessageID` is not ours; when no `epistle_id`
//! is present it is put in `detail` so the event can still be traced.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::{
    FeedbackEvent, FeedbackKind, HookError, MessageRef, bad_request, json, normalize_address, rfc3339_ms, secret_eq,
    str_field, unauthorized,
};

const PROVIDER: &str = "postmark";

/// Checks the `Authorization` header against the configured credentials,
/// then maps the single record in the body (an empty Vec for records we do
/// not track). Empty configured credentials refuse everything rather than
/// accept anyone.
pub fn verify_and_parse(
    body: &[u8],
    authorization_header: Option<&str>,
    user: &str,
    password: &str,
) -> Result<Vec<FeedbackEvent>, HookError> {
    check_basic_auth(authorization_header, user, password)?;
    let record = json(body)?;
    if !record.is_object() {
        return Err(bad_request("body is not a JSON object"));
    }
    Ok(parse_record(&record)?.into_iter().collect())
}

fn check_basic_auth(header: Option<&str>, user: &str, password: &str) -> Result<(), HookError> {
    if user.is_empty() && password.is_empty() {
        return Err(unauthorized("no webhook credentials configured"));
    }
    let header = header.ok_or_else(|| unauthorized("no Authorization header"))?.trim();
    let (scheme, encoded) = header.split_once(' ').ok_or_else(|| unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized("Authorization is not Basic"));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| unauthorized("malformed Basic credentials"))?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or_else(|| unauthorized("malformed Basic credentials"))?;
    let (given_user, given_password) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both halves are always compared, so timing does not reveal which was wrong.
    let user_ok = secret_eq(given_user, user.as_bytes());
    let password_ok = secret_eq(given_password, password.as_bytes());
    if user_ok & password_ok { Ok(()) } else { Err(unauthorized("wrong credentials")) }
}

fn parse_record(r: &Value) -> Result<Option<FeedbackEvent>, HookError> {
    let record_type = str_field(r, "RecordType").ok_or_else(|| bad_request("RecordType missing"))?;
    let (kind, recipient_key, detail, at_key) = match record_type {
        "Delivery" => (FeedbackKind::Delivered, "Recipient", str_field(r, "Details"), "DeliveredAt"),
        "Bounce" => {
            let Some(kind) = bounce_kind(str_field(r, "Type").unwrap_or_default()) else { return Ok(None) };
            let detail = str_field(r, "Details").or_else(|| str_field(r, "Description"));
            (kind, "Email", detail, "BouncedAt")
        }
        "SpamComplaint" => (FeedbackKind::Complained, "Email", str_field(r, "Details"), "BouncedAt"),
        "Open" => (FeedbackKind::Opened, "Recipient", None, "ReceivedAt"),
        "Click" => {
            let url = str_field(r, "OriginalLink").unwrap_or_default().to_owned();
            (FeedbackKind::Clicked { url }, "Recipient", None, "ReceivedAt")
        }
        "SubscriptionChange" => {
            // SuppressSending false is a re-subscription: nothing to record.
            if r.get("SuppressSending").and_then(Value::as_bool) != Some(true) {
                return Ok(None);
            }
            (FeedbackKind::Unsubscribed, "Recipient", str_field(r, "SuppressionReason"), "ChangedAt")
        }
        _ => return Ok(None),
    };
    let recipient = str_field(r, recipient_key).ok_or_else(|| bad_request(format!("{recipient_key} missing")))?;
    let message =
        r.get("Metadata").and_then(|m| str_field(m, "epistle_id")).map(|id| MessageRef::EpistleId(id.to_owned()));
    let mut detail = detail.unwrap_or_default().to_owned();
    if message.is_none()
        && let Some(theirs) = str_field(r, "MessageID")
    {
        let sep = if detail.is_empty() { "" } else { " " };
        detail = format!("{detail}{sep}(postmark MessageID {theirs})");
    }
    Ok(Some(FeedbackEvent {
        provider: PROVIDER,
        message,
        recipient: normalize_address(recipient),
        kind,
        detail,
        at: str_field(r, at_key).and_then(rfc3339_ms),
    }))
}

/// Postmark bounce `Type` → our kind; None for notices that are not a
/// delivery failure (auto-replies and other informational mail).
fn bounce_kind(t: &str) -> Option<FeedbackKind> {
    Some(match t {
        "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" => FeedbackKind::Bounced { hard: true },
        "SpamComplaint" => FeedbackKind::Complained,
        "Transient" | "SoftBounce" | "DnsError" => FeedbackKind::Deferred,
        "AutoResponder" | "AddressChange" | "Subscribe" | "ChallengeVerification" => return None,
        _ => FeedbackKind::Bounced { hard: false },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "postmark-hook";
    const PASS: &str = "s3cret-Pa55";

    fn auth(user: &str, pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
    }

    fn parse(record: Value) -> Vec<FeedbackEvent> {
        let body = serde_json::to_vec(&record).expect("json");
        verify_and_parse(&body, Some(&auth(USER, PASS)), USER, PASS).expect("accepted")
    }

    fn delivery() -> Value {
        json!({
            "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Recipient": "Erin@Example.com",
            "Tag": "welcome", "DeliveredAt": "2026-11-20T10:00:01.5Z",
            "Details": "smtp;250 2.0.0 OK", "Metadata": {"epistle_id": "msg_01jpm"}
        })
    }

    #[test]
    fn right_credentials_accept() {
        assert_eq!(
            parse(delivery()),
            vec![FeedbackEvent {
                provider: "postmark",
                message: Some(MessageRef::EpistleId("msg_01jpm".into())),
                recipient: "erin@example.com".into(),
                kind: FeedbackKind::Delivered,
                detail: "smtp;250 2.0.0 OK".into(),
                at: Some(1_795_168_801_500),
            }]
        );
        // The scheme name is case-insensitive; a colon in the password is kept.
        let body = serde_json::to_vec(&delivery()).unwrap();
        let pass = "a:b";
        let header = format!("basic {}", STANDARD.encode(format!("{USER}:{pass}")));
        assert!(verify_and_parse(&body, Some(&header), USER, pass).is_ok());
    }

    #[test]
    fn wrong_or_missing_credentials_refuse() {
        let body = serde_json::to_vec(&delivery()).unwrap();
        let unauthorized = |h: Option<&str>, u: &str, p: &str| {
            matches!(verify_and_parse(&body, h, u, p), Err(HookError::Unauthorized(_)))
        };
        assert!(unauthorized(None, USER, PASS));
        assert!(unauthorized(Some(&auth(USER, "wrong")), USER, PASS));
        assert!(unauthorized(Some(&auth("someone", PASS)), USER, PASS));
        assert!(unauthorized(Some(&auth(USER, &format!("{PASS}x"))), USER, PASS));
        assert!(unauthorized(Some("Bearer abc"), USER, PASS));
        assert!(unauthorized(Some("Basic"), USER, PASS));
        assert!(unauthorized(Some("Basic !!!"), USER, PASS));
        assert!(unauthorized(Some(&format!("Basic {}", STANDARD.encode("nocolon"))), USER, PASS));
        // Unconfigured credentials never match, not even empty ones.
        assert!(unauthorized(Some(&auth("", "")), "", ""));
    }

    #[test]
    fn garbage_with_good_credentials_is_bad_request() {
        for body in [b"".as_slice(), b"nope", b"[]", b"{}", br#"{"RecordType": "Bounce", "Type": "HardBounce"}"#] {
            let r = verify_and_parse(body, Some(&auth(USER, PASS)), USER, PASS);
            assert!(matches!(r, Err(HookError::BadRequest(_))), "{r:?}");
        }
    }

    #[test]
    fn bounces() {
        let bounce = |t: &str| {
            json!({"RecordType": "Bounce", "ID": 42, "Type": t, "TypeCode": 1, "MessageID": "pm-1",
                   "Email": "frank@example.com", "BouncedAt": "2026-11-20T10:00:00Z",
                   "Description": "The server was unable to deliver your message", "Details": "smtp;550 5.1.1 unknown"})
        };
        let kind = |t: &str| parse(bounce(t)).into_iter().next().map(|e| e.kind);
        assert_eq!(kind("HardBounce"), Some(FeedbackKind::Bounced { hard: true }));
        assert_eq!(kind("BadEmailAddress"), Some(FeedbackKind::Bounced { hard: true }));
        assert_eq!(kind("ManuallyDeactivated"), Some(FeedbackKind::Bounced { hard: true }));
        assert_eq!(kind("Transient"), Some(FeedbackKind::Deferred));
        assert_eq!(kind("SoftBounce"), Some(FeedbackKind::Deferred));
        assert_eq!(kind("DnsError"), Some(FeedbackKind::Deferred));
        assert_eq!(kind("Blocked"), Some(FeedbackKind::Bounced { hard: false }));
        assert_eq!(kind("Unknown"), Some(FeedbackKind::Bounced { hard: false }));
        assert_eq!(kind("SpamNotification"), Some(FeedbackKind::Bounced { hard: false }));
        assert_eq!(kind("SpamComplaint"), Some(FeedbackKind::Complained));
        assert_eq!(kind("AutoResponder"), None);

        let e = parse(bounce("HardBounce")).remove(0);
        assert_eq!(e.recipient, "frank@example.com");
        assert_eq!(e.message, None);
        assert_eq!(e.detail, "smtp;550 5.1.1 unknown (postmark MessageID pm-1)");
        assert_eq!(e.at, Some(1_795_168_800_000));
    }

    #[test]
    fn other_record_types() {
        let one = |v: Value| parse(v).into_iter().next();
        let complaint = one(json!({"RecordType": "SpamComplaint", "Type": "SpamComplaint", "Email": "g@example.com",
                                   "BouncedAt": "2026-11-20T10:00:00Z", "Metadata": {"epistle_id": "msg_1"}}))
        .expect("event");
        assert_eq!(complaint.kind, FeedbackKind::Complained);
        assert_eq!(complaint.message, Some(MessageRef::EpistleId("msg_1".into())));

        let open = one(json!({"RecordType": "Open", "FirstOpen": true, "Recipient": "h@example.com",
                              "ReceivedAt": "2026-11-20T11:00:00-01:00"}))
        .expect("event");
        assert_eq!(open.kind, FeedbackKind::Opened);
        assert_eq!(open.at, Some(1_795_168_800_000 + 2 * 3_600_000));

        let click = one(json!({"RecordType": "Click", "Recipient": "i@example.com",
                               "OriginalLink": "https://shop.example/sale", "ReceivedAt": "2026-11-20T10:00:00Z"}))
        .expect("event");
        assert_eq!(click.kind, FeedbackKind::Clicked { url: "https://shop.example/sale".into() });

        let unsub = one(json!({"RecordType": "SubscriptionChange", "Recipient": "j@example.com",
                               "SuppressSending": true, "SuppressionReason": "ManualSuppression",
                               "ChangedAt": "2026-11-20T10:00:00Z"}))
        .expect("event");
        assert_eq!(unsub.kind, FeedbackKind::Unsubscribed);
        assert_eq!(unsub.detail, "ManualSuppression");

        assert_eq!(
            one(json!({"RecordType": "SubscriptionChange", "Recipient": "j@example.com",
                              "SuppressSending": false})),
            None
        );
        assert_eq!(one(json!({"RecordType": "Inbound", "From": "k@example.com"})), None);
    }
}
