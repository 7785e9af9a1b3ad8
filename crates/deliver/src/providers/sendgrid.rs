//! SendGrid v3 `POST /v3/mail/send`. SendGrid takes JSON, not MIME, so the
//! message is taken apart; SendGrid signs it with the domain key set up in
//! its dashboard.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::parts::{Parts, split};
use super::{deliveries, http_client, trim_endpoint, unreachable, verdict_for_status};
use crate::transport::{Delivery, Envelope, SessionError, Transport};

#[derive(Debug, Clone)]
pub struct SendGridSettings {
    /// Default `https://api.sendgrid.com` (EU: `https://api.eu.sendgrid.com`).
    pub endpoint: Option<String>,
    pub api_key: String,
    pub timeout: std::time::Duration,
}

pub struct SendGrid {
    name: String,
    settings: SendGridSettings,
    endpoint: String,
    client: reqwest::Client,
}

impl SendGrid {
    pub fn new(name: impl Into<String>, settings: SendGridSettings) -> Self {
        let endpoint = trim_endpoint(settings.endpoint.as_deref().unwrap_or("https://api.sendgrid.com"));
        let client = http_client(settings.timeout);
        Self { name: name.into(), settings, endpoint, client }
    }
}

fn emails(list: &[String]) -> Value {
    Value::Array(list.iter().map(|e| json!({"email": e})).collect())
}

/// The v3 request body for a message.
pub fn body(p: &Parts) -> Value {
    let personalizations = if p.to.is_empty() {
        // All blind: one personalization each, so nobody sees the others.
        p.cc.iter().chain(&p.bcc).map(|r| json!({"to": [{"email": r}]})).collect()
    } else {
        let mut one = json!({"to": emails(&p.to)});
        if !p.cc.is_empty() {
            one["cc"] = emails(&p.cc);
        }
        if !p.bcc.is_empty() {
            one["bcc"] = emails(&p.bcc);
        }
        vec![one]
    };
    let mut from = json!({"email": p.from_email});
    if let Some(n) = &p.from_name {
        from["name"] = json!(n);
    }
    let mut content = Vec::new();
    if let Some(t) = &p.text {
        content.push(json!({"type": "text/plain", "value": t}));
    }
    if let Some(h) = &p.html {
        content.push(json!({"type": "text/html", "value": h}));
    }
    if content.is_empty() {
        content.push(json!({"type": "text/plain", "value": " "}));
    }
    let mut b = json!({
        "personalizations": personalizations,
        "from": from,
        "subject": p.subject,
        "content": content,
    });
    if let Some(r) = &p.reply_to {
        b["reply_to"] = json!({"email": r});
    }
    if !p.headers.is_empty() {
        b["headers"] = Value::Object(p.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect());
    }
    if !p.attachments.is_empty() {
        b["attachments"] = Value::Array(
            p.attachments
                .iter()
                .map(|a| {
                    let mut x = json!({"content": a.content_b64, "filename": a.filename, "type": a.content_type});
                    if let Some(cid) = &a.content_id {
                        x["disposition"] = json!("inline");
                        x["content_id"] = json!(cid);
                    }
                    x
                })
                .collect(),
        );
    }
    b
}

#[async_trait]
impl Transport for SendGrid {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        let parts = match split(envelope, raw) {
            Ok(p) => p,
            Err(e) => return deliveries("sendgrid", super::Verdict::Permanent, 554, &e, envelope.rcpts.len()),
        };
        let resp = self
            .client
            .post(format!("{}/v3/mail/send", self.endpoint))
            .bearer_auth(&self.settings.api_key)
            .json(&body(&parts))
            .send()
            .await
            .map_err(|e| unreachable(&self.name, e))?;
        let status = resp.status().as_u16();
        let id = resp.headers().get("x-message-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        let detail = match id {
            Some(id) if (200..300).contains(&status) => format!("accepted, X-Message-Id {id}"),
            _ => {
                let json: Value = serde_json::from_str(&text).unwrap_or_default();
                json["errors"]
                    .as_array()
                    .map(|e| e.iter().filter_map(|x| x["message"].as_str()).collect::<Vec<_>>().join("; "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or(text)
            }
        };
        deliveries("sendgrid", verdict_for_status(status), status, &detail, envelope.rcpts.len())
    }
}
