//! Mailgun's MIME endpoint (`POST /v3/{domain}/messages.mime`): our
//! message goes as it is, with the envelope recipients beside it.

use async_trait::async_trait;

use super::{Verdict, deliveries, http_client, trim_endpoint, unreachable, verdict_for_status};
use crate::transport::{Delivery, Envelope, SessionError, Transport};

#[derive(Debug, Clone)]
pub struct MailgunSettings {
    /// Default `https://api.mailgun.net`; EU accounts use `https://api.eu.mailgun.net`.
    pub endpoint: Option<String>,
    pub api_key: String,
    /// The Mailgun sending domain; default: the envelope sender's domain.
    pub domain: Option<String>,
    pub timeout: std::time::Duration,
}

pub struct Mailgun {
    name: String,
    settings: MailgunSettings,
    endpoint: String,
    client: reqwest::Client,
}

impl Mailgun {
    pub fn new(name: impl Into<String>, settings: MailgunSettings) -> Self {
        let endpoint = trim_endpoint(settings.endpoint.as_deref().unwrap_or("https://api.mailgun.net"));
        let client = http_client(settings.timeout);
        Self { name: name.into(), settings, endpoint, client }
    }
}

#[async_trait]
impl Transport for Mailgun {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        let domain = match &self.settings.domain {
            Some(d) => d.clone(),
            None => envelope.from.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default(),
        };
        let mut form = reqwest::multipart::Form::new();
        for r in &envelope.rcpts {
            form = form.text("to", r.clone());
        }
        let part = reqwest::multipart::Part::bytes(raw.to_vec())
            .file_name("message.eml")
            .mime_str("message/rfc822")
            .expect("a valid MIME type");
        form = form.part("message", part);
        let url = format!("{}/v3/{}/messages.mime", self.endpoint, super::sigv4::uri_encode(&domain, false));
        let resp = self
            .client
            .post(url)
            .basic_auth("api", Some(&self.settings.api_key))
            .multipart(form)
            .send()
            .await
            .map_err(|e| unreachable(&self.name, e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let detail = match (json["id"].as_str(), json["message"].as_str()) {
            (Some(id), _) => format!("accepted, id {id}"),
            (None, Some(m)) => m.to_string(),
            _ => text,
        };
        let verdict = match verdict_for_status(status) {
            // Mailgun answers 404 for a domain it does not know: ours to fix,
            // and another transport may have it.
            Verdict::Permanent if status == 404 => Verdict::Session,
            v => v,
        };
        deliveries("mailgun", verdict, status, &detail, envelope.rcpts.len())
    }
}
