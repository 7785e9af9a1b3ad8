//! Amazon SES v2 `SendEmail` with raw content, signed with SigV4.

use async_trait::async_trait;
use base64::Engine;

use super::sigv4::{self, Credentials};
use super::{Verdict, deliveries, http_client, trim_endpoint, unreachable, verdict_for_status};
use crate::transport::{Delivery, Envelope, SessionError, Transport};

#[derive(Debug, Clone)]
pub struct SesSettings {
    pub region: String,
    /// Default `https://email.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub configuration_set: Option<String>,
    pub timeout: std::time::Duration,
}

pub struct Ses {
    name: String,
    settings: SesSettings,
    endpoint: String,
    client: reqwest::Client,
}

impl Ses {
    pub fn new(name: impl Into<String>, settings: SesSettings) -> Self {
        let endpoint = trim_endpoint(
            &settings.endpoint.clone().unwrap_or_else(|| format!("https://email.{}.amazonaws.com", settings.region)),
        );
        let client = http_client(settings.timeout);
        Self { name: name.into(), settings, endpoint, client }
    }
}

/// SES error types (the `__type` of the body or `x-amzn-ErrorType`) that
/// say something other than the status does.
fn verdict(status: u16, error_type: &str) -> Verdict {
    let t = error_type.split([':', '#']).next_back().unwrap_or(error_type);
    match t {
        "TooManyRequestsException" | "LimitExceededException" | "Throttling" | "ThrottlingException" => {
            Verdict::Transient
        }
        "AccountSuspendedException"
        | "SendingPausedException"
        | "MailFromDomainNotVerifiedException"
        | "NotFoundException"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "AccessDeniedException"
        | "IncompleteSignature" => Verdict::Session,
        "MessageRejected" | "BadRequestException" => Verdict::Permanent,
        _ => verdict_for_status(status),
    }
}

/// Now, as SigV4 writes it (`20261122T143000Z`).
#[allow(clippy::disallowed_methods)] // SigV4 needs the wall clock: AWS refuses requests 5 minutes off.
pub fn amz_date() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[async_trait]
impl Transport for Ses {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        let mut body = serde_json::json!({
            "FromEmailAddress": envelope.from,
            "Destination": {"ToAddresses": envelope.rcpts},
            "Content": {"Raw": {"Data": base64::engine::general_purpose::STANDARD.encode(raw)}},
        });
        if let Some(cs) = &self.settings.configuration_set {
            body["ConfigurationSetName"] = serde_json::json!(cs);
        }
        let body = serde_json::to_vec(&body).expect("JSON of strings serializes");
        let path = "/v2/email/outbound-emails";
        let url = format!("{}{path}", self.endpoint);
        let host = reqwest::Url::parse(&url)
            .ok()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            })
            .ok_or_else(|| SessionError(format!("{}: endpoint `{}` is not a URL", self.name, self.endpoint)))?;
        let creds = Credentials {
            access_key_id: &self.settings.access_key_id,
            secret_access_key: &self.settings.secret_access_key,
            region: &self.settings.region,
            service: "ses",
        };
        let signed = sigv4::sign(
            &creds,
            "POST",
            path,
            "",
            &[("host", &host), ("content-type", "application/json")],
            &body,
            &amz_date(),
        );
        let mut req = self.client.post(&url).header("content-type", "application/json").body(body);
        for (k, v) in signed {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| unreachable(&self.name, e))?;
        let status = resp.status().as_u16();
        let header_type =
            resp.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = resp.text().await.unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let error_type = json["__type"].as_str().map(str::to_string).unwrap_or(header_type);
        let detail = if (200..300).contains(&status) {
            format!("accepted, MessageId {}", json["MessageId"].as_str().unwrap_or("?"))
        } else {
            let msg = json["message"].as_str().or(json["Message"].as_str()).unwrap_or(&text);
            format!("{error_type} {msg}")
        };
        deliveries("ses", verdict(status, &error_type), status, detail.trim(), envelope.rcpts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ses_errors_are_told_apart() {
        assert_eq!(verdict(429, "TooManyRequestsException"), Verdict::Transient);
        assert_eq!(verdict(400, "com.amazonaws#LimitExceededException"), Verdict::Transient);
        assert_eq!(verdict(400, "MessageRejected"), Verdict::Permanent);
        assert_eq!(verdict(403, "SignatureDoesNotMatch"), Verdict::Session);
        assert_eq!(verdict(400, "AccountSuspendedException"), Verdict::Session);
        assert_eq!(verdict(500, ""), Verdict::Session);
        assert_eq!(amz_date().len(), 16);
    }
}
