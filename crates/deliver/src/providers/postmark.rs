//! Postmark `POST /email`. Postmark takes JSON, not MIME, so the message is
//! taken apart; Postmark signs with the DKIM key set up in its account.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::parts::{Parts, split};
use super::{Verdict, deliveries, http_client, trim_endpoint, unreachable, verdict_for_status};
use crate::transport::{Delivery, Envelope, SessionError, Transport};

#[derive(Debug, Clone)]
pub struct PostmarkSettings {
    /// Default `https://api.postmarkapp.com`.
    pub endpoint: Option<String>,
    /// The server token.
    pub api_key: String,
    /// `outbound` (transactional) unless set, e.g. `broadcast`.
    pub message_stream: Option<String>,
    pub timeout: std::time::Duration,
}

pub struct Postmark {
    name: String,
    settings: PostmarkSettings,
    endpoint: String,
    client: reqwest::Client,
}

impl Postmark {
    pub fn new(name: impl Into<String>, settings: PostmarkSettings) -> Self {
        let endpoint = trim_endpoint(settings.endpoint.as_deref().unwrap_or("https://api.postmarkapp.com"));
        let client = http_client(settings.timeout);
        Self { name: name.into(), settings, endpoint, client }
    }
}

pub fn body(p: &Parts, stream: Option<&str>) -> Value {
    let mut b = json!({
        "From": p.from,
        "To": p.to.join(", "),
        "Subject": p.subject,
    });
    if !p.cc.is_empty() {
        b["Cc"] = json!(p.cc.join(", "));
    }
    if !p.bcc.is_empty() {
        b["Bcc"] = json!(p.bcc.join(", "));
    }
    if let Some(t) = &p.text {
        b["TextBody"] = json!(t);
    }
    if let Some(h) = &p.html {
        b["HtmlBody"] = json!(h);
    }
    if let Some(r) = &p.reply_to {
        b["ReplyTo"] = json!(r);
    }
    if let Some(s) = stream {
        b["MessageStream"] = json!(s);
    }
    if !p.headers.is_empty() {
        b["Headers"] = Value::Array(p.headers.iter().map(|(k, v)| json!({"Name": k, "Value": v})).collect());
    }
    if !p.attachments.is_empty() {
        b["Attachments"] = Value::Array(
            p.attachments
                .iter()
                .map(|a| {
                    let mut x = json!({"Name": a.filename, "Content": a.content_b64, "ContentType": a.content_type});
                    if let Some(cid) = &a.content_id {
                        x["ContentID"] = json!(format!("cid:{cid}"));
                    }
                    x
                })
                .collect(),
        );
    }
    b
}

/// Postmark's `ErrorCode`s (in a 422 body) that mean something else than
/// "this message is refused".
fn verdict(status: u16, code: i64) -> Verdict {
    match (status, code) {
        (422, 10) | (422, 412) | (422, 413) => Verdict::Session, // bad token, account pending/suspended
        (422, 429) => Verdict::Transient,
        _ => verdict_for_status(status),
    }
}

#[async_trait]
impl Transport for Postmark {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        let mut parts = match split(envelope, raw) {
            Ok(p) => p,
            Err(e) => return deliveries("postmark", Verdict::Permanent, 554, &e, envelope.rcpts.len()),
        };
        if parts.to.is_empty() {
            // All blind: one message each (in envelope order), so nobody sees the others.
            let mut out = Vec::with_capacity(envelope.rcpts.len());
            for r in &envelope.rcpts {
                parts.to = vec![r.clone()];
                parts.cc.clear();
                parts.bcc.clear();
                out.extend(self.post(&parts, 1).await?);
            }
            return Ok(out);
        }
        self.post(&parts, envelope.rcpts.len()).await
    }
}

impl Postmark {
    async fn post(&self, parts: &Parts, n: usize) -> Result<Vec<Delivery>, SessionError> {
        let resp = self
            .client
            .post(format!("{}/email", self.endpoint))
            .header("X-Postmark-Server-Token", &self.settings.api_key)
            .header("Accept", "application/json")
            .json(&body(parts, self.settings.message_stream.as_deref()))
            .send()
            .await
            .map_err(|e| unreachable(&self.name, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or_default();
        let code = json["ErrorCode"].as_i64().unwrap_or(0);
        let detail = if (200..300).contains(&status) && code == 0 {
            format!("accepted, MessageID {}", json["MessageID"].as_str().unwrap_or("?"))
        } else {
            format!("ErrorCode {code}: {}", json["Message"].as_str().unwrap_or(&text))
        };
        deliveries("postmark", verdict(status, code), status, &detail, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmark_codes() {
        assert_eq!(verdict(422, 406), Verdict::Permanent); // inactive recipient
        assert_eq!(verdict(422, 10), Verdict::Session);
        assert_eq!(verdict(429, 0), Verdict::Transient);
        assert_eq!(verdict(200, 0), Verdict::Sent);
    }
}
