//! Amazon SES notifications that arrive as mail: an SNS topic with an email subscription
//! mails the notification JSON (`"notificationType": "Bounce"`, …), either bare or inside the
//! SNS envelope (`"Message": "{\"notificationType\": …}"`), followed by SNS's unsubscribe
//! footer. The fields are those of the SES notification contents documentation.

use serde_json::Value;

use super::Recipient;
use super::reason::Reason;

/// One recipient the notification reports on, before it is judged: address, status,
/// diagnostic (the remote reply), and the feedback type of a complaint.
pub(super) struct Reported {
    pub email: String,
    pub status: String,
    pub diagnostic: String,
    pub kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Bounce,
    Delay,
    Complaint,
    Delivery,
}

/// The SES notification in a mail body, if it holds one.
pub(super) fn ses_notification(body: &str) -> Option<Vec<Reported>> {
    if !body.contains("notificationType") && !body.contains("eventType") {
        return None;
    }
    // SNS appends "--\nIf you wish to stop receiving notifications …".
    let body = body.find("\n\n--\n").map_or(body, |i| &body[..i]);
    let doc = [body.to_string(), body.replace("!\n ", ""), body.replace('\n', "")]
        .iter()
        .find_map(|candidate| first_object(candidate))?;
    // The SNS envelope carries the notification as a JSON string in `Message`.
    let doc = match doc.get("Message").and_then(Value::as_str) {
        Some(inner) => serde_json::from_str::<Value>(inner).ok()?,
        None => doc,
    };
    let kind = match text(&doc, "notificationType").or_else(|| text(&doc, "eventType"))? {
        "Bounce" => Kind::Bounce,
        "DeliveryDelay" => Kind::Delay,
        "Complaint" => Kind::Complaint,
        "Delivery" => Kind::Delivery,
        _ => return None,
    };
    let list = |section: &str, key: &str| -> Vec<Value> {
        doc.get(section).and_then(|s| s.get(key)).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let out: Vec<Reported> = match kind {
        Kind::Bounce | Kind::Delay => {
            let (section, key) = if kind == Kind::Bounce {
                ("bounce", "bouncedRecipients")
            } else {
                ("deliveryDelay", "delayedRecipients")
            };
            list(section, key)
                .iter()
                .filter_map(|r| {
                    Some(Reported {
                        email: text(r, "emailAddress")?.to_string(),
                        status: text(r, "status").unwrap_or("").to_string(),
                        diagnostic: text(r, "diagnosticCode").unwrap_or("").to_string(),
                        kind,
                    })
                })
                .collect()
        }
        Kind::Complaint => {
            let feedback = doc.get("complaint").and_then(|c| text(c, "complaintFeedbackType")).unwrap_or("");
            list("complaint", "complainedRecipients")
                .iter()
                .filter_map(|r| {
                    Some(Reported {
                        email: text(r, "emailAddress")?.to_string(),
                        status: String::new(),
                        diagnostic: feedback.to_string(),
                        kind,
                    })
                })
                .collect()
        }
        Kind::Delivery => {
            let reply = doc.get("delivery").and_then(|d| text(d, "smtpResponse")).unwrap_or("");
            list("delivery", "recipients")
                .iter()
                .filter_map(|r| {
                    Some(Reported {
                        email: r.as_str()?.to_string(),
                        status: String::new(),
                        diagnostic: reply.to_string(),
                        kind,
                    })
                })
                .collect()
        }
    };
    (!out.is_empty()).then_some(out)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The first JSON object in `s` (text before it and after it is ignored).
fn first_object(s: &str) -> Option<Value> {
    let start = s.find('{')?;
    let mut values = serde_json::Deserializer::from_str(&s[start..]).into_iter::<Value>();
    match values.next() {
        Some(Ok(v)) if v.is_object() => Some(v),
        _ => None,
    }
}

/// A complaint or delivery as a recipient (bounces are judged by the caller).
pub(super) fn settled(r: &Reported) -> Option<Recipient> {
    let (reason, feedback_type) = match r.kind {
        Kind::Complaint => (Reason::Feedback, r.diagnostic.to_ascii_lowercase()),
        Kind::Delivery => (Reason::Delivered, String::new()),
        Kind::Bounce | Kind::Delay => return None,
    };
    Some(Recipient {
        email: r.email.clone(),
        status: if r.kind == Kind::Delivery {
            super::text::status_in(&r.diagnostic).unwrap_or_default()
        } else {
            String::new()
        },
        reply_code: String::new(),
        reason,
        hard_bounce: false,
        feedback_type,
        diagnostic: if r.kind == Kind::Delivery { r.diagnostic.clone() } else { String::new() },
        delayed: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_notification_bare_or_in_the_sns_envelope() {
        let bare = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General",
"bouncedRecipients":[{"emailAddress":"ann@example.org","action":"failed","status":"5.1.1",
"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"destination":["ann@example.org"]}}

--
If you wish to stop receiving notifications from this topic, please click the link below"#;
        let got = ses_notification(bare).expect("bare notification");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].email.as_str(), got[0].status.as_str(), got[0].kind),
            ("ann@example.org", "5.1.1", Kind::Bounce)
        );
        assert_eq!(got[0].diagnostic, "smtp; 550 5.1.1 user unknown");

        let inner = r#"{"notificationType":"Complaint","complaint":{"complaintFeedbackType":"abuse","complainedRecipients":[{"emailAddress":"bo@example.org"}]},"mail":{}}"#;
        let envelope = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        let got = ses_notification(&format!("Hello\n{envelope}\n")).expect("envelope");
        let r = settled(&got[0]).expect("complaint");
        assert_eq!(
            (r.email.as_str(), r.reason, r.feedback_type.as_str()),
            ("bo@example.org", Reason::Feedback, "abuse")
        );
    }

    #[test]
    fn a_line_broken_notification_is_joined() {
        let wrapped = "{\"notificationType\":\"Delivery\",\"delivery\":{\"recipients\":[\"cy@exa\nmple.org\"],\"smtpResponse\":\"250 2.6.0 ok\"}}";
        let got = ses_notification(wrapped).expect("joined");
        assert_eq!(got[0].email, "cy@example.org");
        assert_eq!(settled(&got[0]).map(|r| r.reason), Some(Reason::Delivered));
    }

    #[test]
    fn anything_else_is_not_a_notification() {
        for body in [
            "",
            "notificationType",
            "{\"notificationType\": 3}",
            "{\"eventType\":\"Open\"}",
            "{ broken notificationType",
        ] {
            assert!(ses_notification(body).is_none(), "{body}");
        }
    }
}
